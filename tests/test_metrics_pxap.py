"""PxAP: cases P1–P6 of docs/metrics.md and wsolevaluation's mask-evaluator cases on the shipped masks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from reference_metrics import reference_pxap

from wsolbench.annotations import EvalFrame, mask_label_map, read_metadata
from wsolbench.metrics.accumulators import MaskAccumulator
from wsolbench.metrics.protocols import get_protocol, threshold_list

ROOT = Path(__file__).resolve().parents[1]
MASK_ROOT = ROOT / "tests" / "data" / "openimages_masks"
VAL = ROOT / "datasets" / "wsolevaluation" / "metadata" / "OpenImages" / "val"


def pxap(scores, labels, interval: float = 0.01) -> float:
    acc = MaskAccumulator(get_protocol("wsolevaluation"), threshold_list(interval))
    acc.update_normalized(
        np.asarray(scores, float).reshape(1, 1, -1), np.asarray(labels, np.uint8).reshape(1, 1, -1)
    )
    return acc.result().metrics["pxap"]


@pytest.mark.parametrize(
    "case, scores, labels, interval, expected",
    [
        ("P1", [0.9, 0.6, 0.4, 0.1], [1, 0, 1, 0], 0.01, 100 * (0.5 + 0.5 * 2 / 3)),
        ("P2", [0.905, 0.901, 0.4, 0.1], [1, 0, 1, 0], 0.01, 58.333333),
        ("P2", [0.905, 0.901, 0.4, 0.1], [1, 0, 1, 0], 0.001, 83.333333),
        ("P3", [0.5] * 4, [1, 0, 0, 0], 0.01, 25.0),
        ("P4", [1, 1, 0, 0], [1, 1, 0, 0], 0.01, 100.0),
        ("P5", [0.9, 0.6, 0.4, 0.1, 0.95], [1, 0, 1, 0, 255], 0.01, 83.333333),
        ("P6", [1.0, 0.995], [1, 0], 0.01, 100.0),
        ("P6", [0.995, 1.0], [1, 0], 0.01, 50.0),
    ],
)
def test_pxap_cases(case, scores, labels, interval, expected):
    assert pxap(scores, labels, interval) == pytest.approx(expected, abs=1e-4), case
    assert reference_pxap(np.array(scores), np.array(labels), threshold_list(interval)) == pytest.approx(
        expected, abs=1e-4
    ), case


def test_pr_curve_and_errors():
    acc = MaskAccumulator(get_protocol("wsolevaluation"), threshold_list(0.01))
    acc.update_normalized(np.array([[[0.9, 0.6, 0.4, 0.1]]]), np.array([[[1, 0, 1, 0]]], np.uint8))
    res = acc.result()
    curve = res.curves
    assert set(curve.curve) == {"pxprec_pxrec"} and len(curve) == 102
    assert curve.recall.iloc[-1] == 1.0 and curve.precision.iloc[-1] == 0.5 and res.thresholds == {}
    with pytest.raises(RuntimeError, match="No positive ground truth"):
        pxap([0.5, 0.2], [0, 0])
    with pytest.raises(ValueError, match="0, 1 or 255"):
        pxap([0.5, 0.2], [1, 2])


def test_shards_sum_to_one_pass():
    rng = np.random.default_rng(0)
    scores, labels = rng.random((4, 8, 8)), rng.choice(np.array([0, 1, 255], np.uint8), (4, 8, 8))
    protocol, thresholds = get_protocol("wsolevaluation"), threshold_list(0.01)
    whole, a, b = (MaskAccumulator(protocol, thresholds) for _ in range(3))
    whole.update_normalized(scores, labels)
    a.update_normalized(scores[:1], labels[:1])
    b.update_normalized(scores[1:], labels[1:])
    a.merge(b)
    assert a.result().metrics == whole.result().metrics
    assert whole.result().metrics["pxap"] == pytest.approx(
        reference_pxap(scores, labels, thresholds), abs=1e-9
    )


def label_map(image_id: str) -> np.ndarray:
    metadata = read_metadata(VAL)
    return mask_label_map(metadata.masks[image_id], MASK_ROOT, EvalFrame(224, 224))


MIXED = "val/0bt_c3/1cd9ac0169ec7df0.jpg"  # 43031 positive, 7145 negative pixels
SMALL = "val/0bt_c3/3a29f0b33894d4a6.jpg"  # 833 positive pixels
IGNORED = "val/0bt_c3/3b3b9931325d65c9.jpg"  # 347 positive, 35919 ignored
EMPTY = "val/0by6g/490365f63135f3e0.jpg"
FULL = "val/0by6g/b4d953e7105da1d8.jpg"


def mask_pxap(labels: np.ndarray, scores: np.ndarray) -> float:
    acc = MaskAccumulator(get_protocol("wsolevaluation"), threshold_list(0.01))
    acc.update_normalized(scores[None], labels[None])
    return acc.result().metrics["pxap"]


@pytest.mark.parametrize(
    "image_id, fraction",
    [
        (MIXED, 100 * 43031 / (43031 + 7145)),
        (SMALL, 100 * 833 / 224**2),
        (IGNORED, 100 * 347 / (347 + 13909)),
    ],
)
def test_constant_maps_give_positive_fraction(image_id, fraction):
    labels = label_map(image_id)
    for value in (0.0, 0.5, 1.0):
        assert mask_pxap(labels, np.full((224, 224), value)) == pytest.approx(fraction, abs=0.1)


@pytest.mark.parametrize("image_id", [MIXED, SMALL, IGNORED])
def test_perfect_maps_give_100(image_id):
    labels = label_map(image_id)
    for ignore_score in (0.0, 1.0):
        scores = (labels == 1).astype(float)
        scores[labels == 255] = ignore_score
        assert mask_pxap(labels, scores) == 100.0


def test_empty_and_full_masks():
    assert label_map(IGNORED)[label_map(IGNORED) == 255].size == 35919
    with pytest.raises(RuntimeError, match="No positive ground truth"):
        mask_pxap(label_map(EMPTY), np.full((224, 224), 0.5))
    assert mask_pxap(label_map(FULL), np.full((224, 224), 0.5)) == 100.0
