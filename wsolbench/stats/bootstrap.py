"""Bootstrap intervals and paired tests for the box metrics, computed from per-image results.

A resample draws n test images with replacement; it is represented by its count vector (how often
each image was drawn), so a metric curve over all thresholds for B resamples is one matrix product
`counts (B, n) @ hits (n, T)`. Under 'oracle-test' the threshold is re-selected inside every resample
by the protocol's rule (best τ per metric and per δ, or SAT's single τ maximizing GT-known + Top-1
Loc), so an interval includes the optimism of choosing τ on the evaluated images; under 'fixed' the
τ of each metric is held (this is how a val-chosen τ is treated). Resampling is seeded: the same
seed, n and number of resamples give the same draws.

Intervals are percentile intervals of the resampled values. A paired comparison draws the same
images for both sides; its p-value is two-sided,
`p = min(1, 2 · min(1 + #{Δ* ≤ 0}, 1 + #{Δ* ≥ 0}) / (B + 1))`, for the null of no difference.
With several seeds per side, each resample also redraws the seeds of each side with replacement
(the metric is averaged over the drawn seeds), so the test combines seed and image variation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np

from wsolbench.metrics.accumulators import threshold_index
from wsolbench.metrics.per_image import PerImage, PerImageFileError, above, at_least

POLICIES = ("oracle-test", "fixed")
BLOCK = 64  # resamples drawn per block (bounds memory for ILSVRC-size inputs)
LEVEL = 0.95
RESAMPLES = 1000


@dataclass(frozen=True)
class Scored:
    """Per-image results with the threshold policy to score them under ('fixed': τ per metric), and where
    they come from (a run folder; named in errors)."""

    per_image: PerImage
    policy: str = "oracle-test"
    thresholds: dict[str, float] | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; valid: {', '.join(POLICIES)}")
        if (self.policy == "fixed") != (self.thresholds is not None):
            raise ValueError("policy 'fixed' needs thresholds (metric → τ); 'oracle-test' takes none")


@dataclass(frozen=True)
class Interval:
    """A point value with its percentile bootstrap interval (percent)."""

    value: float
    low: float
    high: float

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


@dataclass(frozen=True)
class Difference:
    """A − B: the point difference, its paired bootstrap interval and two-sided p-value."""

    value: float
    low: float
    high: float
    p_value: float


# --------------------------------------------------------------------------- resampling


def _index_blocks(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    if n < 1 or resamples < 1:
        raise ValueError(f"need at least one image and one resample, got n={n}, resamples={resamples}")
    rng = np.random.default_rng(seed)
    for start in range(0, resamples, BLOCK):
        yield rng.integers(0, n, size=(min(BLOCK, resamples - start), n))


def resample_indices(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n) image indices drawn with replacement: the resamples `resample_counts` counts."""
    return np.concatenate(list(_index_blocks(n, resamples, seed)))


def resample_counts(n: int, resamples: int, seed: int = 0) -> np.ndarray:
    """(resamples, n) float32: how often each image is drawn in each resample (rows sum to n)."""
    blocks = []
    for block in _index_blocks(n, resamples, seed):
        offsets = (np.arange(len(block)) * n)[:, None]
        blocks.append(np.bincount((block + offsets).ravel(), minlength=len(block) * n).reshape(len(block), n))
    return np.concatenate(blocks).astype(np.float32)


# --------------------------------------------------------------------------- metrics of weighted images


def _hit_matrices(per_image: PerImage) -> dict[str, np.ndarray]:
    """metric → (n, T) bool: the image counts as a hit at τ (the curves of the box accumulator)."""
    located = at_least(per_image.iou_v1, 50)
    hits = {"maxboxacc": located}
    hits.update({f"maxboxaccv2_iou{d}": at_least(per_image.iou_v2, d) for d in per_image.iou_thresholds})
    if per_image.classified:
        loc = above(per_image.iou_v1, 50) if per_image.strict_topk else located
        hits["top1_loc"] = loc & per_image.top1_correct()[:, None]
        hits["top5_loc"] = loc & per_image.top5_correct()[:, None]
    return hits


def metric_values(scored: Scored, counts: np.ndarray) -> dict[str, np.ndarray]:
    """metric → (B,) values in percent for image weights `counts` (B, n), rows summing to n.

    The keys and values equal BoxAccumulator.result for the same images, policy and τ (a row of
    ones gives exactly the full-set result).
    """
    return _metric_values(scored, counts, _hit_matrices(scored.per_image))


def _metric_values(scored: Scored, counts: np.ndarray, hits: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """metric_values with the run's hit matrices already built."""
    per_image = scored.per_image
    n = len(per_image)
    if counts.ndim != 2 or counts.shape[1] != n:
        raise ValueError(f"counts must have shape (B, {n}), got {counts.shape}")
    weights = counts.astype(np.float32, copy=False)

    def percent(hits: np.ndarray) -> np.ndarray:  # float32 sums of 0/1 weights < 2**24 are exact integers
        return 100 * (weights @ hits.astype(np.float32)).astype(np.float64) / n

    curves = {key: percent(hit) for key, hit in hits.items()}
    curves["gt_known_loc"] = curves["maxboxacc"]
    if scored.policy == "fixed":
        index = {key: _tau_index(per_image, scored.thresholds, key) for key in curves}
        values = {key: curve[:, index[key]] for key, curve in curves.items()}
    elif per_image.selection == "sat":
        score = curves["gt_known_loc"] + curves.get("top1_loc", 0)
        best = np.argmax(score, axis=1)
        values = {key: np.take_along_axis(curve, best[:, None], 1)[:, 0] for key, curve in curves.items()}
    else:
        values = {key: curve.max(axis=1) for key, curve in curves.items()}
    values["maxboxaccv2"] = np.mean([values[f"maxboxaccv2_iou{d}"] for d in per_image.iou_thresholds], axis=0)
    if per_image.classified:
        values["top1_cls"] = percent(per_image.top1_correct())
        values["top5_cls"] = percent(per_image.top5_correct())
    return values


def _tau_index(per_image: PerImage, thresholds: dict[str, float], key: str) -> int:
    if key not in thresholds:
        raise ValueError(f"fixed thresholds have no τ for {key}")
    return threshold_index(per_image.thresholds, thresholds[key], among=f"the recorded thresholds ({key})")


def point_values(scored: Scored) -> dict[str, float]:
    """The metrics on the full set of images (percent)."""
    return _point_values(scored, _hit_matrices(scored.per_image))


def _point_values(scored: Scored, hits: dict[str, np.ndarray]) -> dict[str, float]:
    ones = np.ones((1, len(scored.per_image)), np.float32)
    return {key: float(value[0]) for key, value in _metric_values(scored, ones, hits).items()}


# --------------------------------------------------------------------------- intervals and tests


def percentiles(draws: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The percentile interval (low, high) of bootstrap draws at `level`."""
    low, high = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)


def p_value(differences: np.ndarray) -> float:
    """Two-sided bootstrap p-value for 'no difference' (formula in the module docstring)."""
    below = int((differences <= 0).sum())
    above_zero = int((differences >= 0).sum())
    return min(1.0, 2 * min(below + 1, above_zero + 1) / (len(differences) + 1))


def _aligned(arms: Sequence[Sequence[Scored]]) -> list[list[Scored]]:
    """Every run reordered to the first run's image ids; PerImageFileError naming a run evaluated on other images."""
    ids = arms[0][0].per_image.image_ids
    try:
        return [[replace(scored, per_image=scored.per_image.aligned_to(ids, scored.source or f"arm {a}, run {r}"))
                 for r, scored in enumerate(arm)] for a, arm in enumerate(arms)]
    except PerImageFileError as error:
        raise PerImageFileError(f"{error}; paired resampling needs every run evaluated on the same images") from None


def arm_draws(
    arms: Sequence[Sequence[Scored]], resamples: int = RESAMPLES, seed: int = 0
) -> tuple[list[dict[str, float]], list[dict[str, np.ndarray]], list[list[dict[str, float]]]]:
    """Per arm (one or more seeds of one configuration): point values (mean over seeds), (B,) draws, and
    the point values of each of its runs.

    All arms share the same image resamples (every run aligned to the first run's image order); each arm's
    seeds are redrawn with replacement per resample.
    """
    if not arms or any(not arm for arm in arms):
        raise ValueError("every arm needs at least one run")
    arms = _aligned(arms)
    n = len(arms[0][0].per_image)
    counts = resample_counts(n, resamples, seed)
    seed_rng = np.random.default_rng([seed, 1])
    points, draws, run_points = [], [], []
    for arm in arms:
        per_run, runs_points = [], []
        for scored in arm:  # one run's hit matrices at a time, for its draws and its point values
            hits = _hit_matrices(scored.per_image)
            per_run.append(_metric_values(scored, counts, hits))
            runs_points.append(_point_values(scored, hits))
        keys = [key for key in per_run[0] if all(key in run for run in per_run)]
        picks = seed_rng.integers(0, len(arm), size=(resamples, len(arm))) if len(arm) > 1 else None
        arm_draw = {}
        for key in keys:
            stacked = np.stack([run[key] for run in per_run], axis=1)  # (B, S)
            arm_draw[key] = stacked.mean(1) if picks is None else np.take_along_axis(stacked, picks, 1).mean(1)
        points.append({key: float(np.mean([p[key] for p in runs_points])) for key in keys})
        draws.append(arm_draw)
        run_points.append(runs_points)
    return points, draws, run_points


def intervals(scored: Scored | Sequence[Scored], resamples: int = RESAMPLES, seed: int = 0,
              level: float = LEVEL) -> dict[str, Interval]:
    """Every metric with its bootstrap interval (one run, or several seeds of one configuration)."""
    arm = [scored] if isinstance(scored, Scored) else list(scored)
    (points,), (draws,), _ = arm_draws([arm], resamples, seed)
    return {key: Interval(points[key], *percentiles(draws[key], level)) for key in points}


def difference(points_a: dict[str, float], draws_a: dict[str, np.ndarray], points_b: dict[str, float],
               draws_b: dict[str, np.ndarray], level: float = LEVEL) -> dict[str, Difference]:
    """A − B for every metric both sides have, from draws made on the same resamples."""
    out = {}
    for key in points_a:
        if key in points_b:
            delta = draws_a[key] - draws_b[key]
            out[key] = Difference(points_a[key] - points_b[key], *percentiles(delta, level), p_value(delta))
    return out


def compare(a: Scored | Sequence[Scored], b: Scored | Sequence[Scored], resamples: int = RESAMPLES, seed: int = 0,
            level: float = LEVEL) -> dict[str, Difference]:
    """Paired bootstrap of A − B per metric (each side one run or several seeds)."""
    arms = [[x] if isinstance(x, Scored) else list(x) for x in (a, b)]
    points, draws, _ = arm_draws(arms, resamples, seed)
    return difference(points[0], draws[0], points[1], draws[1], level)
