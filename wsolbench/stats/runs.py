"""Run directories → scored per-image results, grouped into arms of seeds; the `bench.py compare` table.

A run is scored under a threshold policy: 'oracle-test' re-selects τ on the test images (inside every
resample), 'val' holds the τ the run's own val-policy test entry in metrics.json used (fixed). By
default each run is scored under its own `eval.threshold_policy`. Runs whose folder names differ only in
`-seed<k>` form one arm (several seeds of one configuration).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wsolbench.errors import WsolbenchError
from wsolbench.metrics import per_image
from wsolbench.metrics.per_image import PER_IMAGE_FILE
from wsolbench.results import find_runs, saved_config

from .bootstrap import RESAMPLES, Difference, Interval, Scored, arm_draws, difference, intervals

METRIC_ORDER = ("maxboxaccv2", "maxboxacc", "gt_known_loc", "top1_loc", "top5_loc", "top1_cls", "top5_cls",
                "maxboxaccv2_iou30", "maxboxaccv2_iou50", "maxboxaccv2_iou70")
SEED_SUFFIX = re.compile(r"-seed\d+$")


class CompareError(WsolbenchError, ValueError):
    """Runs that cannot be compared (no per-image results, different test images, ...)."""


@dataclass
class Arm:
    """One configuration: its label (run folder without the seed) and its seeds' scored results."""

    label: str
    runs: list[Path]
    scored: list[Scored]
    policies: list[str]


def own_policy(run: Path) -> str:
    """The run's eval.threshold_policy from config.yaml ('oracle-test' when the file does not say)."""
    config = saved_config(run) or {}
    return (config.get("eval") or {}).get("threshold_policy", "oracle-test")


def entry_for(run: Path, policy: str) -> dict:
    """The test-split entry of metrics.json scored under `policy`; CompareError when there is none."""
    path = run / "metrics.json"
    data = json.loads(path.read_text())
    for entry in data.get("results", []):
        if entry.get("split") == "test" and entry.get("threshold_policy") == policy:
            return entry
    raise CompareError(f"{path}: no test entry with threshold policy {policy!r}")


def val_thresholds(run: Path) -> dict[str, float]:
    """The τ per metric chosen on val (the val entry of metrics.json); CompareError without a val split."""
    path = run / "metrics.json"
    for entry in json.loads(path.read_text()).get("results", []):
        if entry.get("split") == "val":
            return {key: float(tau) for key, tau in entry["thresholds"].items()}
    raise CompareError(f"{path}: no val entry, so no val-chosen thresholds")


def load_scored(run: Path, policy: str | None = None) -> Scored:
    """The run's per-image test results under `policy` ('oracle-test', 'val', 'fixed'; None: its own)."""
    policy = policy or own_policy(run)
    path = run / PER_IMAGE_FILE
    if not path.is_file():
        raise CompareError(
            f"{path}: missing; per-image results are written for box datasets by runs of this version "
            "(PxAP and mask datasets have no per-image intervals)"
        )
    results = per_image.load(path)
    if policy == "oracle-test":
        return Scored(results, source=str(run))
    if policy == "val":
        return Scored(results, "fixed", val_thresholds(run), str(run))
    if policy == "fixed":
        return Scored(results, "fixed", {k: float(v) for k, v in entry_for(run, "fixed")["thresholds"].items()},
                      str(run))
    raise CompareError(f"unknown threshold policy {policy!r}; valid: oracle-test, val, fixed")


def run_intervals(run: Path, policy: str | None = None, resamples: int = RESAMPLES, seed: int = 0
                  ) -> dict[str, Interval] | None:
    """Every metric of the run with its 95 % bootstrap interval; None when it has no per-image results."""
    if not (run / PER_IMAGE_FILE).is_file():
        return None
    return intervals(load_scored(run, policy), resamples=resamples, seed=seed)


def arms_from_paths(paths: list[str | Path], policy: str | None = None) -> list[Arm]:
    """One arm per argument: the runs at or below it, grouped by folder name without `-seed<k>`.

    Arguments that name several seeds of one configuration (e.g. a shell glob) merge into one arm.
    """
    arms: dict[str, Arm] = {}
    for path in paths:
        runs = find_runs([path])
        if not runs:
            raise CompareError(f"{path}: no run (a folder with metrics.json) at or below it")
        labels = {str(run.parent / SEED_SUFFIX.sub("", run.name)) for run in runs}
        if len(labels) > 1:
            raise CompareError(f"{path}: holds several configurations ({', '.join(sorted(labels))}); "
                               "name one run folder (or its seeds) per argument")
        label = labels.pop()
        arm = arms.setdefault(label, Arm(label, [], [], []))
        for run in runs:
            if run not in arm.runs:
                run_policy = policy or own_policy(run)
                arm.runs.append(run)
                arm.scored.append(load_scored(run, run_policy))
                arm.policies.append(run_policy)
    if len(arms) < 2:
        raise CompareError("compare needs at least two configurations (runs that differ in more than the seed)")
    return list(arms.values())


@dataclass
class Comparison:
    """The first arm against every other: per arm point values, seed std, and A − B differences."""

    arms: list[Arm]
    points: list[dict[str, float]]
    seed_std: list[dict[str, float]]
    differences: list[dict[str, Difference]]  # differences[k - 1]: arm 0 − arm k
    resamples: int
    seed: int


def compare_arms(arms: list[Arm], resamples: int = RESAMPLES, seed: int = 0) -> Comparison:
    """Paired bootstrap of arm 0 against each other arm (same image resamples for all)."""
    try:
        points, draws, run_points = arm_draws([arm.scored for arm in arms], resamples, seed)
    except per_image.PerImageFileError as error:
        raise CompareError(str(error)) from None
    seed_std = []
    for values in run_points:
        seed_std.append({key: float(np.std([v[key] for v in values], ddof=1)) if len(values) > 1 else float("nan")
                         for key in points[0]})
    diffs = [difference(points[0], draws[0], points[k], draws[k]) for k in range(1, len(arms))]
    return Comparison(arms, points, seed_std, diffs, resamples, seed)


def format_comparison(result: Comparison) -> str:
    """Markdown: one table per pair (metric, A, B, Δ, 95 % interval, p) and a note on the method."""
    blocks = []
    a = result.arms[0]
    for k, diffs in enumerate(result.differences, start=1):
        b = result.arms[k]
        lines = [f"A = {a.label} ({_seeds(a)}), B = {b.label} ({_seeds(b)})", "",
                 "| metric | A | B | Δ (A − B) | 95 % interval of Δ | p |", "|---|---:|---:|---:|---:|---:|"]
        for key in [m for m in METRIC_ORDER if m in diffs] + sorted(set(diffs) - set(METRIC_ORDER)):
            d = diffs[key]
            lines.append(f"| {key} | {_cell(result, 0, key)} | {_cell(result, k, key)} | {d.value:+.2f} | "
                         f"[{d.low:+.2f}, {d.high:+.2f}] | {_p(d.p_value)} |")
        blocks.append("\n".join(lines))
    several = any(len(arm.runs) > 1 for arm in result.arms)
    note = (f"Paired bootstrap over the test images ({result.resamples} resamples, seed {result.seed}; the same "
            "images drawn for A and B); thresholds re-selected in every resample under oracle-test, held "
            "fixed under val. p: two-sided, for no difference.")
    if several:
        note += " With several seeds: A and B are seed means ± sample std, and each resample also redraws " \
                "the seeds of each side, so interval and p combine seed and image variation."
    return "\n\n".join(blocks) + "\n\n" + note + "\n"


def _seeds(arm: Arm) -> str:
    policies = "/".join(sorted(set(arm.policies)))
    return f"{len(arm.runs)} seed{'s' if len(arm.runs) > 1 else ''}, τ policy {policies}"


def _cell(result: Comparison, k: int, key: str) -> str:
    std = result.seed_std[k].get(key, float("nan"))
    value = f"{result.points[k][key]:.2f}"
    return value if np.isnan(std) else f"{value} ± {std:.2f}"


def _p(p: float) -> str:
    return f"{p:.3f}" if p >= 0.001 else "< 0.001"
