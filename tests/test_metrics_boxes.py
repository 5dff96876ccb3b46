"""Box extraction and IoU: the hand-checkable cases C1–C14 of docs/metrics.md, per convention."""

from __future__ import annotations

import numpy as np
import pytest
from reference_metrics import reference_boxes, reference_ious

from wsolbench.annotations import EvalFrame
from wsolbench.metrics.boxes import box_iou, sweep_boxes, sweep_ious
from wsolbench.metrics.maps import normalize_maps
from wsolbench.metrics.protocols import get_protocol, threshold_list


def boxes_at(convention: str, scoremap: np.ndarray, tau: float) -> tuple[tuple, set]:
    """(V1 box, set of V2 boxes) of a normalized map at τ under a protocol's box rule."""
    boxes, v1, inverse = sweep_boxes(get_protocol(convention), np.asarray(scoremap, float), np.array([tau]))
    level = inverse[0]
    return tuple(v1[level].tolist()), {tuple(b) for b in boxes[level].tolist()}


def grid(height: int, width: int, cells: dict) -> np.ndarray:
    m = np.zeros((height, width))
    for (y, x), value in cells.items():
        m[y, x] = value
    return m


def test_c1_c2_c3_iou():
    assert box_iou([[0, 0, 4, 4]], [[4, 0, 8, 4]])[0, 0] == pytest.approx(5 / 45)
    assert box_iou([[1, 2, 5, 6]], [[3, 1, 4, 5]])[0, 0] == pytest.approx(8 / 27)
    assert box_iou([[0, 0, 0, 0]], [[0, 0, 0, 0]])[0, 0] == 1.0
    assert box_iou([[0, 0, 0, 0]], [[10, 10, 20, 20]])[0, 0] == 0.0
    np.testing.assert_array_equal(box_iou(np.zeros((3, 4)), np.zeros((5, 4))), np.ones((3, 5)))
    np.testing.assert_array_equal(
        box_iou([[1, 1, 3, 3], [4, 4, 5, 5]], [[1, 1, 3, 3], [4, 4, 5, 5]]), np.eye(2)
    )


def test_inverted_or_negative_box_raises():
    with pytest.raises(RuntimeError, match="not"):
        box_iou([[1, 1, 0, 0]], [[0, 0, 1, 1]])
    with pytest.raises(RuntimeError):
        box_iou([[-1, 0, 2, 2]], [[0, 0, 1, 1]])


def test_c4_box_scaling():
    # (1,2,4,3) from 10x20 to 35x10 gives (3,1,14,1); EvalFrame is square, so check each axis alone
    assert EvalFrame(35, 35).box((1, 2, 4, 3), 10, 20)[0::2] == (3, 14)
    assert EvalFrame(10, 10).box((1, 2, 4, 3), 10, 20)[1::2] == (1, 1)
    assert EvalFrame(224, 224).box((60, 27, 385, 331), 500, 335) == (26, 18, 172, 221)
    assert EvalFrame(224, 224).box((0, 0, 0, 0), 224, 224) == (0, 0, 0, 0)


BLOCK_5 = grid(5, 5, {(y, x): 1.0 for y in (1, 2) for x in (1, 2)})
BORDER_4 = grid(4, 4, {(y, x): 1.0 for y in (2, 3) for x in (2, 3)})
SINGLE_5 = grid(5, 5, {(2, 2): 1.0})
C9 = np.array(
    [
        [0.4, 0.0, 0.2, 0.2, 0.2],
        [0.4, 0.4, 0.0, 0.4, 0.0],
        [0.0, 0.0, 0.0, 0.4, 0.0],
        [1.0, 0.6, 0.8, 0.2, 0.2],
    ]
)
C10 = grid(6, 10, {**{(0, x): 1.0 for x in range(8)}, **{(y, x): 1.0 for y in (3, 4) for x in (7, 8)}})
C11 = grid(3, 5, {(1, 0): 1.0, (1, 3): 1.0})
C13 = grid(7, 7, {(y, x): 1.0 for y in range(1, 6) for x in range(1, 6) if (y, x) != (3, 3)})


@pytest.mark.parametrize(
    "case, scoremap, tau, v1, v2, sat, ts_cam",
    [
        ("C5", BLOCK_5, 0.5, (1, 1, 3, 3), {(1, 1, 3, 3)}, (1, 1, 3, 3), (1, 1, 3, 3)),
        ("C6", BORDER_4, 0.5, (2, 2, 3, 3), {(2, 2, 3, 3)}, (2, 2, 4, 4), (2, 2, 4, 4)),
        ("C7", SINGLE_5, 0.5, (2, 2, 3, 3), {(2, 2, 3, 3)}, (2, 2, 3, 3), (2, 2, 3, 3)),
        ("C9", C9, 0.2, (0, 0, 2, 2), {(0, 1, 4, 3), (0, 0, 2, 2)}, (0, 1, 4, 4), (0, 0, 2, 2)),
        ("C10", C10, 0.5, (7, 3, 9, 5), {(7, 3, 9, 5), (0, 0, 8, 1)}, (0, 0, 8, 1), (7, 3, 9, 5)),
        ("C11", C11, 0.5, (3, 1, 4, 2), {(3, 1, 4, 2), (0, 1, 1, 2)}, (0, 1, 1, 2), (3, 1, 4, 2)),
        ("C12", np.zeros((4, 4)), 0.3, (0, 0, 0, 0), {(0, 0, 0, 0)}, (0, 0, 4, 4), (0, 0, 1, 1)),
        ("C13", C13, 0.5, (1, 1, 6, 6), {(1, 1, 6, 6), (2, 2, 5, 5)}, None, None),
    ],
)
def test_box_cases(case, scoremap, tau, v1, v2, sat, ts_cam):
    assert boxes_at("wsolevaluation", scoremap, tau) == (v1, v2), case
    assert boxes_at("scm", scoremap, tau)[0] == v1, case  # SCM's test_cam.py uses wsolevaluation's box rule
    if sat is not None:
        assert boxes_at("sat", scoremap, tau) == (sat, {sat}), case
        assert boxes_at("ts_cam", scoremap, tau)[0] == ts_cam, case
    for convention, expected in [("wsolevaluation", v1), ("sat", sat), ("ts_cam", ts_cam)]:
        if expected is not None:
            assert reference_boxes(scoremap, tau, convention, False) == [expected], (case, convention)
    assert set(reference_boxes(scoremap, tau, "wsolevaluation", True)) == v2


def test_c5_overshoot_fails_delta_half():
    box, _ = boxes_at("wsolevaluation", BLOCK_5, 0.5)
    assert box_iou([box], [[1, 1, 2, 2]])[0, 0] == pytest.approx(4 / 9)


def test_c8_quantization_and_clipping():
    m = grid(3, 7, {(1, 0): 1.0, (1, 2): 0.5, (1, 4): 0.5019, (1, 6): 0.503})
    assert boxes_at("wsolevaluation", m, 0.5)[1] == {(6, 1, 6, 2), (0, 1, 1, 2)}


def test_c9_full_v1_sweep():
    _, v1, inverse = sweep_boxes(get_protocol("wsolevaluation"), C9, np.array([0, 0.2, 0.4, 0.6, 0.8]))
    assert [tuple(b) for b in v1[inverse].tolist()] == [
        (0, 0, 4, 3),
        (0, 0, 2, 2),
        (0, 3, 3, 3),
        (2, 3, 3, 3),
        (0, 3, 1, 3),
    ]


def test_reference_suite_zero_map():
    taus = np.array([0, 0.2, 0.4, 0.6, 0.8])
    _, v1, inverse = sweep_boxes(get_protocol("wsolevaluation"), np.zeros((3, 3)), taus)
    assert v1[inverse].tolist() == [[0, 0, 0, 0]] * 5


def test_c14_threshold_relative_to_map_max():
    m = grid(5, 5, {(y, x): 0.25 for y in (1, 2, 3) for x in (1, 2, 3)})
    m[2, 2] = 0.5
    assert boxes_at("wsolevaluation", m, 0.4)[0] == (1, 1, 4, 4)
    assert boxes_at("wsolevaluation", m, 0.6)[0] == (2, 2, 3, 3)


@pytest.mark.parametrize("convention", ["wsolevaluation", "ts_cam", "sat", "scm"])
def test_fast_sweep_equals_plain_reference(convention):
    rng = np.random.default_rng(7)
    protocol = get_protocol(convention, crop_size=48, resize_size=56)
    raw = rng.random((6, 7, 7)) ** 3  # blobby maps with several components and holes
    maps = normalize_maps(protocol, raw)
    thresholds = threshold_list(0.01) if convention != "sat" else np.array([0.3, 0.35, 0.4, 0.45, 0.9])
    gt = np.array([[5, 6, 30, 40], [20, 1, 47, 22]])
    reference_convention = "wsolevaluation" if convention == "scm" else convention
    for scoremap in maps:
        v1, v2 = sweep_ious(protocol, scoremap, thresholds, gt)
        np.testing.assert_array_equal(
            v1, reference_ious(scoremap, thresholds, gt, reference_convention, False)
        )
        if convention != "sat":
            np.testing.assert_array_equal(
                v2, reference_ious(scoremap, thresholds, gt, reference_convention, True)
            )
        else:
            np.testing.assert_array_equal(v2, v1)


def test_sat_component_order_matches_scipy_at_full_size():
    # OpenCV may label large images with a parallel algorithm; ties must still go to raster order
    rng = np.random.default_rng(1)
    protocol = get_protocol("sat")
    maps = normalize_maps(protocol, rng.random((3, 14, 14)) ** 2)
    thresholds = np.linspace(0.05, 0.95, 10)
    gt = np.array([[20, 30, 150, 200], [100, 100, 223, 223]])
    for scoremap in maps:
        v1, _ = sweep_ious(protocol, scoremap, thresholds, gt)
        np.testing.assert_array_equal(v1, reference_ious(scoremap, thresholds, gt, "sat", False))
