"""Box extraction over a threshold sweep, and the inclusive "+1" IoU (docs/metrics.md, docs/protocols.md).

The hot path: for one normalized map and T thresholds, the distinct binary images (uint8 protocols:
≤ 256 integer levels; float protocols: one per distinct map value passed) are never built one by
one. Two union-find passes over the pixels sorted by value (component_trees) give every level's
8-connected foreground components (outer contours) and 4-connected holes (hole contours) with their
boxes; V1's largest contourArea comes from the same pass, and the rare level it cannot decide is
traced with findContours. tests/reference_metrics.py is the plain per-threshold version; tests and
benchmarks/metrics_speed.py check that both give identical numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from wsolbench.errors import BadAnnotationError
from wsolbench.metrics.component_trees import (
    EMPTY,
    UNDECIDED,
    foreground_components,
    hole_components,
    uint8_pixel_order,
)
from wsolbench.metrics.protocols import EvalProtocol

EMPTY_BOXES = {
    "zero": lambda width, height: (0, 0, 0, 0),
    "unit": lambda width, height: (0, 0, 1, 1),
    "whole": lambda width, height: (0, 0, width, height),
}


def check_boxes(boxes: np.ndarray, what: str) -> np.ndarray:
    """(K, 4) int64 inclusive boxes; BadAnnotationError (a RuntimeError) on a negative coordinate, x1 < x0
    or y1 < y0."""
    boxes = np.asarray(boxes, dtype=np.int64).reshape(-1, 4)
    bad = (boxes < 0).any(1) | (boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])
    if bad.any():
        raise BadAnnotationError(
            f"{what}: box {tuple(boxes[bad][0].tolist())} is not (x0, y0, x1, y1) with 0 <= x0 <= x1, 0 <= y0 <= y1"
        )
    return boxes


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(M, K) IoU of inclusive pixel boxes: areas and intersection count pixels (+1); 0 if union ≤ 0."""
    return _box_iou(check_boxes(a, "box_iou first argument"), check_boxes(b, "box_iou second argument"))


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """box_iou of boxes already valid (M, 4) and (K, 4) int64: check_boxes' output, or boxes built here."""
    a, b = a[:, None, :], b[None, :, :]
    iw = np.maximum(0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1)
    ih = np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    inter = iw * ih
    area_a = (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
    area_b = (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
    union = area_a + area_b - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def quantize(normalized: np.ndarray) -> np.ndarray:
    """uint8 floor(255·s), truncating as numpy's astype does (docs/metrics.md)."""
    return (normalized * 255).astype(np.uint8)


def _levels(protocol: EvalProtocol, normalized: np.ndarray, thresholds: np.ndarray):
    """(source, cuts (U,), inverse (T,)): the foreground at threshold k is source > cuts[inverse[k]]."""
    if protocol.binarize == "uint8":
        q = quantize(normalized)
        cuts, inverse = np.unique((thresholds * q.max()).astype(np.int64), return_inverse=True)
        return q, cuts, inverse
    thresholds = thresholds.astype(normalized.dtype)  # τ compared in the map's own float type
    values = np.unique(normalized)
    keys = np.searchsorted(values, thresholds, side="right")  # thresholds with equal keys cut alike
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return normalized, thresholds[first], inverse


def _contour_level(binary: np.ndarray) -> tuple[int, int, int, int]:
    """boundingRect (x, y, w, h) of the RETR_TREE contour with the largest contourArea, first on ties.

    A contour at odd depth of the hierarchy is a hole contour, at even depth an outer one. Only
    outer contours are measured: a hole contour runs through pixels of the blob around it, so its
    polygon lies inside that blob's outer polygon and is never strictly larger, and it comes after
    that blob's contour in OpenCV's list, so it never wins a tie.
    """
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)
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


def _pixel_order(source: np.ndarray, cuts: np.ndarray) -> tuple[np.ndarray, ...]:
    """(order, xs, ys, at_most) as uint8_pixel_order gives them, for a uint8 or a float map."""
    if source.dtype == np.uint8:
        return uint8_pixel_order(source, cuts)
    flat = source.ravel()
    ascending = np.argsort(flat, kind="stable")
    ys, xs = np.divmod(ascending, source.shape[1])
    order = (ys + 1) * (source.shape[1] + 2) + xs + 1
    at_most = np.searchsorted(flat[ascending], cuts, side="right")
    return order.astype(np.int32), xs.astype(np.int32), ys.astype(np.int32), at_most


class _Sweep(NamedTuple):
    """One map's levels: V1 box (U, 4), best V2 IoU (U,), and with keep_boxes every box of every level."""

    v1_boxes: np.ndarray
    iou_v2: np.ndarray
    inverse: np.ndarray
    boxes: list[np.ndarray] | None


def _sweep(
    protocol: EvalProtocol, normalized: np.ndarray, thresholds: np.ndarray, gt_boxes: np.ndarray, keep_boxes: bool
) -> _Sweep:
    """All levels of one map from one pass of each component tree; V2 IoUs are taken on the way."""
    source, cuts, inverse = _levels(protocol, normalized, thresholds)
    height, width = source.shape
    limit = np.array([width - 1, height - 1] if protocol.clip else [np.iinfo(np.int64).max] * 2)
    order, xs, ys, at_most = _pixel_order(source, cuts)
    levels = len(cuts)
    gt = np.asarray(gt_boxes, dtype=np.int64).reshape(-1, 4)
    pixels = protocol.components == "pixels"
    if pixels:
        none = np.zeros(levels, np.int64)
        hole_iou, hole_boxes, hole_lo, hole_hi = np.full(levels, -1.0), np.zeros((0, 4), np.int64), none, none
        holes, lo, hi = np.zeros((0, 3), np.int32), none, none
        link, link_level, outer_from = np.zeros(0, np.int32), np.zeros(0, np.int32), np.zeros(0, np.int32)
    else:
        hole_iou, hole_boxes, hole_lo, hole_hi, holes, lo, hi, link, link_level, outer_from = hole_components(
            order, xs, ys, at_most, height, width, gt, limit, keep_boxes
        )
    blob_iou, status, v1_boxes, blob_boxes, blob_lo, blob_hi = foreground_components(
        order, xs, ys, height * width - at_most, height, width, pixels, gt, limit, keep_boxes,
        holes, lo, hi, link, link_level, outer_from,
    )
    empty = status == EMPTY
    v1_boxes[empty] = EMPTY_BOXES[protocol.empty_box](width, height)
    for u in np.flatnonzero(status == UNDECIDED).tolist():
        x, y, w, h = _contour_level((source > cuts[u]).view(np.uint8))
        v1_boxes[u] = (x, y, min(x + w, limit[0]), min(y + h, limit[1]))
    iou_v2 = np.maximum(blob_iou, hole_iou)
    iou_v2[empty] = _box_iou(v1_boxes[empty], gt).max(1) if empty.any() else 0.0
    boxes = None
    if keep_boxes:
        boxes = [
            np.concatenate([blob_boxes[blob_lo[u] : blob_hi[u]], hole_boxes[hole_lo[u] : hole_hi[u]]])
            if not empty[u]
            else v1_boxes[u : u + 1]
            for u in range(levels)
        ]
    return _Sweep(v1_boxes, iou_v2, inverse, boxes)


def sweep_boxes(
    protocol: EvalProtocol, normalized: np.ndarray, thresholds: np.ndarray
) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Boxes of one normalized (H, W) map at every threshold.

    Returns (boxes, v1, inverse): threshold k uses level u = inverse[k] (inverse (T,)); boxes[u]
    (K_u, 4) int64 holds all of level u's boxes (V2: all contours) and v1[u] (v1 (U, 4)) is its V1
    box, one of them. A box is (x, y, x+w, y+h) of the boundingRect / component, clipped to
    (W − 1, H − 1) if the protocol clips; an empty foreground gives the protocol's empty box. Builds
    every box of every level: for scoring, sweep_ious takes the IoUs without keeping them.
    """
    swept = _sweep(protocol, normalized, thresholds, np.zeros((1, 4), np.int64), keep_boxes=True)
    return swept.boxes, swept.v1_boxes, swept.inverse


def sweep_ious(
    protocol: EvalProtocol, normalized: np.ndarray, thresholds: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(IoU_V1 (T,), IoU_V2 (T,)) of one normalized map vs its GT boxes (max over GT, and contours for V2)."""
    return sweep_ious_unchecked(protocol, normalized, thresholds, check_boxes(gt_boxes, "GT boxes"))


def sweep_ious_unchecked(
    protocol: EvalProtocol, normalized: np.ndarray, thresholds: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """sweep_ious of GT boxes that check_boxes has validated already (the accumulators' hot path)."""
    swept = _sweep(protocol, normalized, thresholds, gt_boxes, keep_boxes=False)
    return _box_iou(swept.v1_boxes, gt_boxes).max(1)[swept.inverse], swept.iou_v2[swept.inverse]
