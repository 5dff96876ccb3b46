"""Threshold honesty: per run, the test value with τ picked on test (oracle) beside τ picked on val, and
the BoxAcc curves with both τ marked.

The oracle value is the run's oracle-test entry on test; the val-selected value is its val-policy test
entry when the run was evaluated that way, else it is recomputed from the run's per-image results at
the τ of its val entry (the same numbers, bit for bit). A run without a val split gets '–'.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from wsolbench.metrics.per_image import PER_IMAGE_FILE
from wsolbench.stats.bootstrap import point_values
from wsolbench.stats.runs import CompareError, load_scored, val_thresholds

from . import plots
from .runs import runs_of
from .tables import Cell, Row, Table, TableStyle, metric_name

METRICS = ("maxboxaccv2", "top1_loc")
PARTS = ("oracle τ", "val τ", "gap")
STYLE = TableStyle("thresholds", None, display_names=True, bold=False)


def run_values(entries: pd.DataFrame, run: Path, eval_protocol: str) -> dict[str, tuple[float, float | None]]:
    """metric → (oracle-test value, val-selected value or None) on test for one run, from its rows of
    load_run_frame (`entries`)."""
    test = entries[(entries["split"] == "test") & (entries["eval_protocol"] == eval_protocol)]
    oracle = _first_entry(test, "oracle-test") or {}
    chosen = _first_entry(test, "val")
    if chosen is None and (run / PER_IMAGE_FILE).is_file():
        try:
            chosen = point_values(load_scored(run, "val"))
        except CompareError:
            chosen = None
    return {key: (float(value), None if chosen is None or key not in chosen else float(chosen[key]))
            for key, value in oracle.items()}


def _first_entry(test: pd.DataFrame, policy: str) -> dict[str, object] | None:
    """metric → value of the run's first test entry under `policy` (rows in metrics.json order); None without one."""
    rows = test[test["threshold_policy"] == policy].drop_duplicates("metric")
    return dict(zip(rows["metric"], rows["value"], strict=True)) if len(rows) else None


def threshold_table(selected: pd.DataFrame, frame: pd.DataFrame) -> Table | None:
    """Rows = runs (method, backbone, variant, seed); per dataset and metric: oracle, val, gap. `frame` is
    load_run_frame's (every entry of the runs; `selected` holds one per run)."""
    rows, present = [], set()
    runs = runs_of(selected)
    several = runs["experiment"].nunique() > 1
    by_run = dict(tuple(frame.groupby("run_dir", sort=False)))
    for run in runs.itertuples(index=False):
        values = run_values(by_run[run.run_dir], Path(run.run_dir), run.eval_protocol)
        labels = [plots.label(run.method, run.backbone, run.variant), str(run.seed)]
        labels = [str(run.experiment), *labels] if several else labels
        row = Row(run.method, None, labels=labels)
        for metric in METRICS:
            if metric not in values:
                continue
            oracle, chosen = values[metric]
            name = metric_name(metric, STYLE)
            row.cells[(run.dataset, f"{name} {PARTS[0]}")] = Cell(oracle)
            if chosen is not None:
                row.cells[(run.dataset, f"{name} {PARTS[1]}")] = Cell(chosen)
                row.cells[(run.dataset, f"{name} {PARTS[2]}")] = Cell(oracle - chosen)
        present.update(row.cells)
        rows.append(row)
    if not any(key[1].endswith(PARTS[1]) for key in present):
        return None
    order = {f"{metric_name(m, STYLE)} {p}": (i, j) for i, m in enumerate(METRICS) for j, p in enumerate(PARTS)}
    columns = sorted(present, key=lambda c: (c[0], order[c[1]]))
    headers = (["Experiment"] if several else []) + ["Run", "Seed"]
    return Table(columns, rows, STYLE, label_columns=headers, notes=[
        "Test split. oracle τ: τ chosen on the test images themselves (what papers report); val τ: τ chosen "
        "on the val split (train-fullsup) and applied to test; gap = oracle − val, the optimism of choosing "
        "τ on the evaluated images."])


def threshold_curves(selected: pd.DataFrame, curves: pd.DataFrame, out_dir: Path, max_runs: int = 6
                     ) -> list[Path]:
    """Per dataset: the test BoxAcc curve at IoU ≥ 50 % (the MaxBoxAcc curve) of each run (up to
    `max_runs`, lowest seeds first), with the oracle τ (solid) and the val-chosen τ (dashed) marked.
    `curves` is runs.load_curves(selected)."""
    written = []
    if curves.empty:
        return written
    boxacc = curves[(curves["curve"] == "boxacc") & (curves["iou_threshold"] == 50)]
    runs = runs_of(selected).sort_values(["seed"], kind="stable").drop_duplicates(
        ["experiment", "dataset", "method", "backbone", "variant"])
    for dataset, group in runs.groupby("dataset"):
        fig, ax = plots.subplots(figsize=(5.6, 3.8))
        drawn = 0
        for run in group.head(max_runs).itertuples(index=False):
            path = Path(run.run_dir)
            curve = boxacc[boxacc["run_dir"] == run.run_dir]
            if curve.empty:
                continue
            line = ax.plot(curve["threshold"], curve["value"], label=plots.label(run.method, run.backbone,
                                                                                 run.variant))[0]
            best = curve["value"].to_numpy().argmax()
            ax.axvline(curve["threshold"].iloc[best], color=line.get_color(), linewidth=1)
            try:
                ax.axvline(val_thresholds(path)["maxboxacc"], color=line.get_color(), linewidth=1, linestyle="--")
            except (CompareError, KeyError):
                pass  # no val split: only the oracle τ is marked
            drawn += 1
        if not drawn:
            continue
        ax.set_xlabel("threshold τ")
        ax.set_ylabel("BoxAcc at IoU ≥ 50 % (%)")
        ax.set_title(f"{plots._dataset(dataset)}: τ on test (solid) vs τ from val (dashed)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
        written.append(plots.save(fig, out_dir, f"thresholds_{dataset}"))
    return written
