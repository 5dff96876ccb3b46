"""Bootstrap intervals and paired tests: zero width, brute-force p-value, seeding, 1/sqrt(n) widths."""

from __future__ import annotations

import numpy as np
import pytest

from wsolbench.metrics.per_image import NO_CLASS, PerImage, encode_iou
from wsolbench.stats.bootstrap import (
    Scored,
    compare,
    intervals,
    p_value,
    point_values,
    resample_counts,
    resample_indices,
)

THRESHOLDS = np.array([0.2, 0.4, 0.6])


def make(iou_v1: np.ndarray, iou_v2: np.ndarray | None = None, labels=None, top1=None, selection="per_metric"
         ) -> PerImage:
    """Per-image results from float IoUs (N, T) and optional top-1 predictions."""
    n = len(iou_v1)
    labels = np.zeros(n, np.int32) if labels is None else np.asarray(labels, np.int32)
    top5 = np.full((n, 5), NO_CLASS, np.int32)
    if top1 is not None:
        top5[:, 0] = top1
        top5[:, 1:] = 99
    return PerImage(np.array([f"i{k}" for k in range(n)]), labels, top5, THRESHOLDS, encode_iou(iou_v1),
                    encode_iou(iou_v1 if iou_v2 is None else iou_v2), (30, 50, 70), "wsolevaluation", False,
                    selection)


def test_counts_are_the_drawn_indices():
    indices = resample_indices(7, 130, seed=4)
    counts = resample_counts(7, 130, seed=4)
    assert indices.shape == (130, 7) and counts.shape == (130, 7)
    for row, drawn in zip(counts, indices, strict=True):
        np.testing.assert_array_equal(row, np.bincount(drawn, minlength=7))


def test_equal_images_give_zero_width():
    iou = np.tile([[0.9, 0.55, 0.1]], (40, 1))
    scored = Scored(make(iou, labels=np.arange(40) % 3, top1=np.arange(40) % 3))
    for interval in intervals(scored, resamples=300, seed=1).values():
        assert interval.low == interval.high == interval.value
        assert interval.half_width == 0


def test_seeded_and_reproducible():
    rng = np.random.default_rng(0)
    scored = Scored(make(rng.random((50, 3))))
    assert intervals(scored, resamples=200, seed=5) == intervals(scored, resamples=200, seed=5)
    assert intervals(scored, resamples=200, seed=5) != intervals(scored, resamples=200, seed=6)


def _oracle_maxboxacc(iou: np.ndarray, sample: np.ndarray) -> float:
    """MaxBoxAcc of the images `sample` (indices, repeats allowed): best τ of the share with IoU ≥ 0.5."""
    best = 0.0
    for t in range(iou.shape[1]):
        best = max(best, 100 * sum(1 for i in sample if iou[i, t] >= 0.5) / len(sample))
    return best


def test_paired_p_value_matches_brute_force():
    a = np.array([[0.6, 0.7, 0.2], [0.1, 0.5, 0.6], [0.55, 0.4, 0.3], [0.9, 0.8, 0.6], [0.2, 0.3, 0.1],
                  [0.6, 0.45, 0.3], [0.7, 0.2, 0.5], [0.51, 0.52, 0.1]])
    b = np.array([[0.4, 0.3, 0.2], [0.1, 0.5, 0.2], [0.55, 0.4, 0.3], [0.3, 0.8, 0.6], [0.2, 0.3, 0.1],
                  [0.1, 0.45, 0.3], [0.3, 0.2, 0.5], [0.51, 0.2, 0.1]])
    resamples, seed = 400, 11
    result = compare(Scored(make(a)), Scored(make(b)), resamples=resamples, seed=seed)["maxboxacc"]
    deltas = [_oracle_maxboxacc(a, s) - _oracle_maxboxacc(b, s) for s in resample_indices(8, resamples, seed)]
    below = sum(d <= 0 for d in deltas)
    above = sum(d >= 0 for d in deltas)
    expected_p = min(1.0, 2 * min(below + 1, above + 1) / (resamples + 1))
    assert result.p_value == pytest.approx(expected_p, abs=1e-12)
    assert result.value == pytest.approx(_oracle_maxboxacc(a, range(8)) - _oracle_maxboxacc(b, range(8)))
    assert (result.low, result.high) == pytest.approx(tuple(np.quantile(deltas, [0.025, 0.975])))
    assert 0 < result.p_value < 1


def test_p_value_rule_by_hand():
    assert p_value(np.zeros(9)) == 1.0
    assert p_value(np.ones(9)) == pytest.approx(2 / 10)  # no draw ≤ 0: 2 · (0 + 1) / (9 + 1)
    assert p_value(np.array([-1.0, 1, 2, 3])) == pytest.approx(2 * 2 / 5)


def test_width_shrinks_like_one_over_sqrt_n():
    rng = np.random.default_rng(2)
    widths = {}
    for n in (400, 6400):
        correct = rng.random(n) < 0.5
        iou = np.tile([[0.9, 0.9, 0.9]], (n, 1))
        scored = Scored(make(iou, labels=np.zeros(n), top1=np.where(correct, 0, 1)))
        widths[n] = intervals(scored, resamples=1000, seed=0)["top1_cls"].half_width
    # 16 times the images: a quarter of the width (binomial: 1.96 · 50 / sqrt(n) percent points)
    assert widths[400] / widths[6400] == pytest.approx(4, rel=0.15)
    assert widths[400] == pytest.approx(1.96 * 50 / np.sqrt(400), rel=0.15)


def test_oracle_interval_includes_threshold_choice_and_fixed_policy_holds_tau():
    rng = np.random.default_rng(7)
    iou = rng.random((60, 3))
    oracle = Scored(make(iou))
    fixed = Scored(make(iou), "fixed", {key: 0.4 for key in point_values(oracle) if "cls" not in key})
    assert point_values(fixed)["maxboxacc"] == pytest.approx(100 * (iou[:, 1] >= 0.5).mean())
    assert point_values(oracle)["maxboxacc"] == pytest.approx(100 * (iou >= 0.5).mean(0).max())
    with pytest.raises(ValueError, match="not among the recorded"):
        point_values(Scored(make(iou), "fixed", {"maxboxacc": 0.5}))


def test_seeds_add_their_spread():
    rng = np.random.default_rng(1)
    base = rng.random((200, 3))
    seeds_a = [Scored(make(np.clip(base + shift, 0, 1))) for shift in (0.0, 0.3)]
    one = compare(seeds_a[:1], [Scored(make(base))], resamples=300)["maxboxacc"]
    both = compare(seeds_a, [Scored(make(base))], resamples=300)["maxboxacc"]
    assert both.high - both.low > one.high - one.low
    with pytest.raises(ValueError, match="same images"):
        compare(Scored(make(base)), Scored(make(base[:10])))


def test_runs_in_another_image_order_are_aligned_to_the_first():
    rng = np.random.default_rng(2)
    a, b = rng.random((80, 3)), rng.random((80, 3))
    order = rng.permutation(80)
    shuffled = Scored(make(b).subset(order))
    assert compare(Scored(make(a)), shuffled, resamples=200) == compare(Scored(make(a)), Scored(make(b)),
                                                                        resamples=200)
    with pytest.raises(ValueError, match=r"^run-b: evaluated on other images .*same images"):
        compare(Scored(make(a)), Scored(make(b[:79]), source="run-b"))
