"""Bootstrap uncertainty for report tables: interval half-widths and which differences to the best row
are not significant, from the runs' per-image results (wsolbench.stats).

Per dataset, every row of our runs is one arm (its seeds), scored under the threshold policy of the
results entry the table shows; all arms share the same resampled test images (paired). A cell is
marked as tied when the paired two-sided p-value of (best row − this row) is at least ALPHA. Rows
whose runs have no per-image results (older runs, mask datasets) get neither marks nor intervals,
and the table says so.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wsolbench.metrics.per_image import PER_IMAGE_FILE
from wsolbench.stats.bootstrap import RESAMPLES, Scored, arm_draws, p_value, percentiles
from wsolbench.stats.bootstrap import intervals as bootstrap_intervals
from wsolbench.stats.runs import load_scored

from .tables import TIE_MARK, Table

ALPHA = 0.05


def _row_key(experiment: object, method: object, backbone: object, variant: object) -> tuple:
    return (experiment, method, None if backbone is None or pd.isna(backbone) else backbone, variant or "")


def _arms(selected: pd.DataFrame) -> dict[tuple, dict[tuple, list[Scored]]]:
    """dataset → row key → the row's runs scored under their selected entry's policy (None: no data)."""
    frame = selected.drop_duplicates("run_dir").copy()
    if "variant" not in frame:
        frame["variant"] = ""
    out: dict = {}
    for rec in frame.itertuples(index=False):
        key = _row_key(rec.experiment, rec.method, rec.backbone, rec.variant)
        arm = out.setdefault(rec.dataset, {}).setdefault(key, [])
        if arm is None:
            continue
        run = Path(rec.run_dir)
        if not (run / PER_IMAGE_FILE).is_file():
            out[rec.dataset][key] = None
            continue
        arm.append(load_scored(run, rec.threshold_policy))
    return out


def annotate(table: Table, selected: pd.DataFrame, intervals: bool, resamples: int = RESAMPLES,
             seed: int = 0) -> None:
    """Fill `half_width` and `tied` of our rows' cells in place, set `table.intervals`, add the notes."""
    table.intervals = intervals
    missing = False
    for dataset, arms in _arms(selected).items():
        usable = {key: arm for key, arm in arms.items() if arm}
        missing |= len(usable) < len(arms)
        if not usable:
            continue
        keys = list(usable)
        points, draws, _ = arm_draws([usable[k] for k in keys], resamples, seed)
        rows = {(r.experiment, r.method, r.backbone, r.variant): r for r in table.rows if r.kind == "ours"}
        for column in [c for c in table.columns if c[0] == dataset]:
            metric = column[1]
            present = [k for k, key in enumerate(keys) if metric in draws[k] and key in rows
                       and column in rows[key].cells]
            if not present:
                continue
            best = max(present, key=lambda k: round(points[k][metric], table.decimals))
            for k in present:
                cell = rows[keys[k]].cells[column]
                low, high = percentiles(draws[k][metric])
                cell.half_width = (high - low) / 2
                if k != best:
                    cell.tied = p_value(draws[best][metric] - draws[k][metric]) >= ALPHA
    notes = [f"{TIE_MARK}: not significantly different from the best value of its column (paired bootstrap over "
             f"the test images, {resamples} resamples, two-sided p ≥ {ALPHA})."]
    if intervals:
        table.notes = [note.replace("Mean ± sample std over seeds", "Mean over seeds") for note in table.notes]
        notes.append("± : half-width of the 95 % bootstrap interval (over test images, and over seeds where "
                     "several exist); τ re-selected in each resample under oracle-test, held under val.")
    if missing:
        notes.append("Runs without per-image results (mask datasets, older runs) have no marks or intervals.")
    table.notes.extend(notes)


def half_width(runs: list[str | Path], metric: str, policies: list[str | None] | None = None,
               resamples: int = RESAMPLES, seed: int = 0) -> float | None:
    """Half-width of the 95 % bootstrap interval of `metric` over these runs (seeds of one configuration)
    and their test images; None when a run has no per-image results or the metric is not box-based."""
    runs = [Path(r) for r in runs]
    if not runs or not all((r / PER_IMAGE_FILE).is_file() for r in runs):
        return None
    policies = policies or [None] * len(runs)
    arm = [load_scored(run, policy) for run, policy in zip(runs, policies, strict=True)]
    interval = bootstrap_intervals(arm, resamples, seed).get(metric)
    return None if interval is None else interval.half_width
