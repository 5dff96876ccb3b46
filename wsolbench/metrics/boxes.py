"""Box extraction over a threshold sweep, and the inclusive "+1" IoU (metrics.md §3–§7, §12).

The hot path: for one prepared map and T thresholds, the distinct binary images (uint8 protocols:
≤ 256 integer levels; float protocols: one per distinct map value passed) are never built one by
one. Two union-find passes over the pixels sorted by value (component_trees) give every level's
8-connected foreground components (outer contours) and 4-connected holes (hole contours) with their
boxes; V1's largest contourArea comes from the same pass, and the rare level it cannot decide is
traced with findContours. tests/reference_metrics.py is the plain per-threshold version; tests and
benchmarks/metrics_speed.py check that both give identical numbers.
"""

from __future__ import annotations

import cv2
import numpy as np

from wsolbench.metrics.component_trees import foreground_components, hole_components, largest_contour, level_ious
from wsolbench.metrics.protocols import EvalProtocol

EMPTY_BOXES = {
    "zero": lambda width, height: (0, 0, 0, 0),
    "unit": lambda width, height: (0, 0, 1, 1),
    "whole": lambda width, height: (0, 0, width, height),
}


def check_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    """(K, 4) int64 inclusive boxes; RuntimeError on a negative coordinate or x1 < x0 or y1 < y0."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    bad = (boxes < 0).any(1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise RuntimeError(
            f"{what}: box {tuple(boxes[bad][0].tolist())} is not (x0, y0, x1, y1) with 0 <= x0 <= x1, 0 <= y0 <= y1"
        )
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) IoU of inclusive pixel boxes: areas and intersection count pixels (+1); 0 if union ≤ 0."""
    a = check_boxes(a, "box_iou first argument")[:, None, :]
    b = check_boxes(b, "box_iou second argument")[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def quantize(prepared: np.ndarray) -> np.ndarray:
    """uint8 floor(255·s), truncating as numpy's astype does (metrics.md §3)."""
    return (prepared * 255).astype(np.uint8)


def _levels(protocol: EvalProtocol, prepared: np.ndarray, thresholds: np.ndarray):
    """(source, cuts (U,), inverse (T,)): the foreground at threshold k is source > cuts[inverse[k]]."""
    if protocol.binarize == "uint8":
        q = quantize(prepared)
        cuts, inverse = np.unique((thresholds * q.max()).astype(np.int64), return_inverse=True)
        return q, cuts, inverse
    values = np.unique(prepared)
    keys = np.searchsorted(values, thresholds, side="right")  # thresholds with equal keys cut alike
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return prepared, thresholds[first], inverse


def _contour_level(binary: np.ndarray, offset: tuple[int, int]) -> tuple[int, int, int, int]:
    """boundingRect (x, y, w, h) of the RETR_TREE contour with the largest contourArea, first on ties.

    A contour at odd depth of the hierarchy is a hole contour, at even depth an outer one. Only
    outer contours are measured: a hole contour runs through pixels of the blob around it, so its
    polygon lies inside that blob's outer polygon and is never strictly larger, and it comes after
    that blob's contour in OpenCV's list, so it never wins a tie.
    """
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    parent = hierarchy[0][:, 3].tolist()
    best, largest = 0, -1.0
    for k, up in enumerate(parent):
        depth = 0
        while up >= 0:
            depth, up = depth + 1, parent[up]
        if depth % 2:
            continue
        area = cv2.contourArea(contours[k])
        if area > largest:
            best, largest = k, area
    return cv2.boundingRect(contours[best])


def _pixel_order(source: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(flat pixel indices by increasing value, (U,) number of pixels at most each cut)."""
    flat = source.ravel()
    order = np.argsort(flat, kind="stable")
    return order, np.searchsorted(flat[order], cuts, side="right")


def sweep_boxes(protocol: EvalProtocol, prepared: np.ndarray, thresholds: np.ndarray):
    """Boxes of one prepared (H, W) map at every threshold.

    Returns (boxes (M, 4) int64, starts (U,), v1 (U,), inverse (T,)): level u owns
    boxes[starts[u]:starts[u+1]] (V2: all contours), boxes[v1[u]] is its V1 box, and threshold k uses
    level inverse[k]. A box is (x, y, x+w, y+h) of the boundingRect / component, clipped to
    (W − 1, H − 1) if the protocol clips; an empty foreground gives the protocol's empty box.
    Every level comes from one pass over the pixels (component_trees); a contour level whose V1
    contour the component statistics cannot decide is traced with findContours.
    """
    source, cuts, inverse = _levels(protocol, prepared, thresholds)
    height, width = source.shape
    ascending, at_most = _pixel_order(source, cuts)
    inside = height * width - at_most
    pixels = protocol.components == "pixels"
    outer, lo, hi = foreground_components(ascending[::-1].copy(), inside, height, width, pixels)
    if pixels:
        holes, hole_lo, hole_hi = np.zeros((0, 4), np.int64), np.zeros_like(lo), np.zeros_like(lo)
        chosen = np.where(hi > lo, lo, -1)
    else:
        holes, hole_lo, hole_hi = hole_components(ascending, at_most, height, width)
        chosen = largest_contour(outer, lo, hi, hole_hi - hole_lo)
    outer_counts, hole_counts = hi - lo, hole_hi - hole_lo
    counts = np.maximum(outer_counts + hole_counts, 1)
    starts = np.zeros(len(cuts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    boxes = np.zeros((int(counts.sum()), 4), dtype=np.int64)
    rows = np.repeat(starts, outer_counts) + _ranks(outer_counts)
    boxes[rows] = outer[np.repeat(lo, outer_counts) + _ranks(outer_counts), :4]
    rows = np.repeat(starts + outer_counts, hole_counts) + _ranks(hole_counts)
    boxes[rows] = holes[np.repeat(hole_lo, hole_counts) + _ranks(hole_counts)] + [-1, -1, 1, 1]
    boxes[:, 2:] += 1  # inclusive last pixel → x + w, y + h
    v1 = starts + np.where(chosen >= 0, chosen - lo, 0)
    for u in np.flatnonzero(chosen == -2).tolist():
        x, y, w, h = _contour_level((source > cuts[u]).view(np.uint8), (0, 0))
        match = np.flatnonzero((boxes[starts[u] : starts[u] + outer_counts[u]] == (x, y, x + w, y + h)).all(1))
        v1[u] = starts[u] + match[0]
    if protocol.clip:
        np.minimum(boxes[:, 2], width - 1, out=boxes[:, 2])
        np.minimum(boxes[:, 3], height - 1, out=boxes[:, 3])
    boxes[starts[outer_counts == 0]] = EMPTY_BOXES[protocol.empty_box](width, height)
    return boxes, starts, v1, inverse


def _ranks(counts: np.ndarray) -> np.ndarray:
    """0, 1, …, c − 1 for each c in counts, concatenated."""
    total = int(counts.sum())
    return np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)


def sweep_ious(
    protocol: EvalProtocol, prepared: np.ndarray, thresholds: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(IoU_V1 (T,), IoU_V2 (T,)) of one prepared map vs its GT boxes (max over GT, and contours for V2)."""
    boxes, starts, v1, inverse = sweep_boxes(protocol, prepared, thresholds)
    iou_v1, iou_v2 = level_ious(boxes, starts, v1, check_boxes(gt_boxes, "GT boxes"))
    return iou_v1[inverse], iou_v2[inverse]
