"""The one-pass box sweep equals per-threshold OpenCV extraction, box for box and IoU for IoU.

The sweep reads every level off two component trees (wsolbench.metrics.component_trees): outer
contours are 8-connected blobs, hole contours 4-connected holes grown by a pixel, V1's contourArea
comes from cell counts summed up the blob/hole nesting, and SAT ties go to raster order. Every check
here compares it with tests/reference_metrics (findContours / scipy labelling at each τ) on maps
built to hit thin lines, single pixels, plateaus, nested holes, border-touching blobs, per-pixel
noise and constant maps. benchmarks/metrics_equivalence.py runs the same comparison on 20,000+ maps.
"""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from reference_metrics import reference_boxes, reference_ious

from wsolbench.metrics import boxes as boxes_module
from wsolbench.metrics.boxes import sweep_boxes, sweep_ious
from wsolbench.metrics.protocols import get_protocol


def random_maps(count: int, seed: int) -> list[np.ndarray]:
    """[0, 1] maps of mixed kinds and sizes: smooth, noisy, sparse, rings, few-valued plateaus."""
    rng = np.random.default_rng(seed)
    maps = []
    for k in range(count):
        height, width = rng.integers(6, 33, 2)
        kind = k % 8
        if kind == 0:  # smooth blobs (bicubic upsampled grid), several modes
            grid = rng.random(rng.integers(2, 6, 2)) ** 2
            m = cv2.resize(grid, (int(width), int(height)), interpolation=cv2.INTER_CUBIC)
        elif kind == 1:  # white noise: single pixels, diagonal chains, many holes
            m = rng.random((height, width))
        elif kind == 2:  # sparse pixels and thin lines on a low background
            m = rng.random((height, width)) * 0.2
            m[rng.integers(0, height, 4), :] = rng.random()
            m[:, rng.integers(0, width, 3)] = rng.random()
            m[rng.random((height, width)) < 0.05] = 1.0
        elif kind == 3:  # concentric rings: nested holes and blobs inside holes
            yy, xx = np.mgrid[0:height, 0:width]
            radius = np.hypot(yy - rng.uniform(0, height), xx - rng.uniform(0, width))
            m = np.cos(radius * rng.uniform(0.5, 1.5)) + 0.1 * rng.random((height, width))
        elif kind == 4:  # few values: wide plateaus, many equal-area ties
            m = rng.integers(0, 4, (height, width)).astype(float)
        elif kind == 5:  # smooth map plus noise, blobs touching the border
            grid = rng.random(rng.integers(3, 8, 2))
            m = cv2.resize(grid, (int(width), int(height)), interpolation=cv2.INTER_LINEAR)
            m += 0.3 * rng.random((height, width))
        elif kind == 6:  # per-pixel noise on a larger map: many blobs, holes and blobs inside holes per level
            m = rng.random((int(height) + 32, int(width) + 32))
        else:  # constant: zero, or one value everywhere
            m = np.full((height, width), float(rng.integers(0, 2)))
        m = m - m.min()
        maps.append(m / m.max() if m.max() > 0 else m)
    return maps


def swept(convention: str, scoremap: np.ndarray, thresholds: np.ndarray):
    """[(V1 box, sorted V2 boxes)] per threshold from sweep_boxes."""
    boxes, v1, inverse = sweep_boxes(get_protocol(convention), scoremap, thresholds)
    out = []
    for u in inverse:
        level = sorted(map(tuple, boxes[u].tolist()))
        assert tuple(v1[u].tolist()) in level  # the V1 box is one of its level's boxes
        out.append((tuple(v1[u].tolist()), level))
    return out


def referenced(convention: str, scoremap: np.ndarray, thresholds: np.ndarray):
    """The same from one findContours per threshold (docs/protocols.md), or reference_boxes for 'sat'."""
    if convention == "sat":
        return [(reference_boxes(scoremap, tau, "sat", False)[0],) * 2 for tau in thresholds]
    height, width = scoremap.shape
    q = (scoremap * 255).astype(np.uint8)
    out = []
    for tau in thresholds:
        binary = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)[1]
        contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
        if not contours:
            empty = (0, 0, 1, 1) if convention == "ts_cam" else (0, 0, 0, 0)
            out.append((empty, [empty]))
            continue
        boxes = []
        for contour in contours:
            x, y, w, h = cv2.boundingRect(contour)
            if convention == "ts_cam":
                boxes.append((x, y, x + w, y + h))
            else:
                boxes.append((x, y, min(x + w, width - 1), min(y + h, height - 1)))
        areas = [cv2.contourArea(c) for c in contours]
        out.append((boxes[areas.index(max(areas))], sorted(boxes)))
    return out


@pytest.mark.parametrize("convention, count", [("wsolevaluation", 240), ("ts_cam", 240), ("scm", 60)])
def test_contour_sweep_equals_findcontours_per_threshold(convention, count):
    thresholds = np.arange(0, 1, 0.01)
    for scoremap in random_maps(count, seed=11):
        assert swept(convention, scoremap, thresholds) == referenced(convention, scoremap, thresholds)


def test_sat_sweep_equals_scipy_labelling():
    for scoremap in random_maps(300, seed=12):
        thresholds = np.unique(np.r_[np.quantile(scoremap, [0.1, 0.3, 0.5, 0.7, 0.9]), 0.35]).clip(0, 0.999)
        expected = [(v1, [v1]) for v1, _ in referenced("sat", scoremap, thresholds)]
        assert swept("sat", scoremap, thresholds) == expected


def test_sat_tie_goes_to_first_blob_in_raster_order():
    # OpenCV labels (1, 0) before (0, 4) (it labels two rows at a time); skimage/scipy order wins
    m = np.zeros((2, 5))
    m[0, 4] = m[1, 0] = 1.0
    assert swept("sat", m, np.array([0.5]))[0][0] == (4, 0, 5, 1)
    assert reference_boxes(m, 0.5, "sat", False) == [(4, 0, 5, 1)]


def test_rings_and_equal_blobs_keep_opencv_v1():
    ring = np.zeros((7, 12))
    ring[1:4, 1:4] = 1.0
    ring[2, 2] = 0.0  # a 3 x 3 ring (outer area 4) and, right of it, a 3 x 3 block (area 4)
    ring[1:4, 6:9] = 1.0
    nested = np.pad(np.pad(np.pad(np.ones((1, 1)), 1), 1, constant_values=1.0), 1)  # ring around a dot
    for scoremap in (ring, nested, ring.T, np.fliplr(ring)):
        thresholds = np.array([0.0, 0.5])
        for convention in ("wsolevaluation", "ts_cam"):
            assert swept(convention, scoremap, thresholds) == referenced(convention, scoremap, thresholds)


@pytest.mark.parametrize("convention", ["wsolevaluation", "ts_cam", "scm", "sat"])
def test_sweep_ious_equal_reference_ious(convention):
    # the scoring path keeps no boxes: it takes IoUs inside the component passes
    rng = np.random.default_rng(13)
    thresholds = np.arange(0, 1, 0.02)
    multi = convention != "sat"
    for scoremap in random_maps(48, seed=14):
        height, width = scoremap.shape
        xs, ys = np.sort(rng.integers(0, width, (3, 2)), 1), np.sort(rng.integers(0, height, (3, 2)), 1)
        gt = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1)  # three GT boxes, some tiny
        iou_v1, iou_v2 = sweep_ious(get_protocol(convention), scoremap, thresholds, gt)
        np.testing.assert_array_equal(iou_v1, reference_ious(scoremap, thresholds, gt, convention, False))
        np.testing.assert_array_equal(iou_v2, reference_ious(scoremap, thresholds, gt, convention, multi))


def test_noise_and_smooth_maps_need_no_tracing(monkeypatch):
    # V1 comes from the component trees; findContours is the fallback for ties among nested blobs only
    traced = []
    original = boxes_module._contour_level
    monkeypatch.setattr(
        boxes_module, "_contour_level", lambda binary: traced.append(1) or original(binary)
    )
    yy, xx = np.mgrid[0:64, 0:64]
    smooth = np.exp(-((xx - 30) ** 2 + (yy - 25) ** 2) / 300.0)
    smooth = (smooth - smooth.min()) / (smooth.max() - smooth.min())
    noise = np.random.default_rng(15).random((64, 64))
    thresholds = np.arange(0, 1, 0.001)
    results = [swept("wsolevaluation", m, thresholds) for m in (smooth, noise)]
    assert traced == []
    monkeypatch.undo()
    for m, result in zip((smooth, noise), results, strict=True):
        assert result == referenced("wsolevaluation", m, thresholds)
