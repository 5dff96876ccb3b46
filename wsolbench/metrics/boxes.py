"""Box extraction over a threshold sweep, and the inclusive "+1" IoU (metrics.md §3–§7, §12).

The hot path: for one prepared map and T thresholds, every *distinct binary image* is built once
(uint8 protocols: ≤ 256 integer levels; float protocols: one per distinct map value passed), on the
bounding region of its foreground only (the same contours, shifted: OpenCV ≥ 3.2 treats image borders
as background), and the IoUs of all boxes of all levels against all GT boxes are one array operation.
tests/reference_metrics.py is the plain per-threshold version; tests and benchmarks/metrics_speed.py
check that both give identical numbers.
"""

from __future__ import annotations

import cv2
import numpy as np

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
            f"{what}: box {tuple(boxes[bad][0].tolist())} is not (x0, y0, x1, y1) with 0 <= x0 <= x1, "
            "0 <= y0 <= y1"
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


def _contour_rects(binary: np.ndarray, offset: tuple[int, int]) -> tuple[list, int]:
    """boundingRects (x, y, w, h) of all RETR_TREE contours and the index of the largest contourArea.

    Ties keep the first contour in OpenCV's list, as Python's max() in the reference.
    """
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset)[-2]
    rects = [cv2.boundingRect(c) for c in contours]
    if len(contours) == 1:
        return rects, 0
    areas = [cv2.contourArea(c) for c in contours]
    return rects, areas.index(max(areas))


def _pixel_component_rect(binary: np.ndarray, offset: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rect (x, y, w, h) of the largest 8-connected component by pixel count.

    Ties go to the component met first in raster order (OpenCV numbers components that way, as skimage).
    """
    _, _, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_32S)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    x, y, w, h = stats[k, :4].tolist()
    return (x + offset[0], y + offset[1], w, h)


def sweep_boxes(protocol: EvalProtocol, prepared: np.ndarray, thresholds: np.ndarray):
    """Boxes of one prepared (H, W) map at every threshold.

    Returns (boxes (M, 4) int64, starts (U,), v1 (U,), inverse (T,)): level u owns
    boxes[starts[u]:starts[u+1]] (V2: all contours), boxes[v1[u]] is its V1 box, and threshold k uses
    level inverse[k]. A box is (x, y, x+w, y+h) of the boundingRect / component, clipped to
    (W − 1, H − 1) if the protocol clips; an empty foreground gives the protocol's empty box.
    """
    source, cuts, inverse = _levels(protocol, prepared, thresholds)
    rows = source.max(1)[None, :] > cuts[:, None]  # (U, S): rows holding foreground at each level
    cols = source.max(0)[None, :] > cuts[:, None]
    nonempty = rows.any(1).tolist()
    y0, x0 = rows.argmax(1).tolist(), cols.argmax(1).tolist()
    y1 = (rows.shape[1] - rows[:, ::-1].argmax(1)).tolist()
    x1 = (cols.shape[1] - cols[:, ::-1].argmax(1)).tolist()
    rects: list = []
    starts = np.empty(len(cuts), dtype=np.int64)
    v1 = np.empty(len(cuts), dtype=np.int64)
    empty = []
    pixels = protocol.components == "pixels"
    for u, cut in enumerate(cuts.tolist()):
        starts[u] = v1[u] = len(rects)
        if not nonempty[u]:
            empty.append(len(rects))
            rects.append((0, 0, 0, 0))
            continue
        roi = source[y0[u] : y1[u], x0[u] : x1[u]]
        binary = (roi > cut).view(np.uint8) if pixels else cv2.threshold(roi, cut, 1, cv2.THRESH_BINARY)[1]
        if pixels:
            rects.append(_pixel_component_rect(binary, (x0[u], y0[u])))
        else:
            found, best = _contour_rects(binary, (x0[u], y0[u]))
            v1[u] += best
            rects.extend(found)
    boxes = np.asarray(rects, dtype=np.int64).reshape(-1, 4)
    boxes[:, 2:] += boxes[:, :2]
    height, width = source.shape
    if protocol.clip:
        np.minimum(boxes[:, 2], width - 1, out=boxes[:, 2])
        np.minimum(boxes[:, 3], height - 1, out=boxes[:, 3])
    boxes[empty] = EMPTY_BOXES[protocol.empty_box](width, height)
    return boxes, starts, v1, inverse


def sweep_ious(
    protocol: EvalProtocol, prepared: np.ndarray, thresholds: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(IoU_V1 (T,), IoU_V2 (T,)) of one prepared map vs its GT boxes (max over GT, and contours for V2)."""
    boxes, starts, v1, inverse = sweep_boxes(protocol, prepared, thresholds)
    best = box_iou(boxes, gt_boxes).max(1)
    return best[v1][inverse], np.maximum.reduceat(best, starts)[inverse]
