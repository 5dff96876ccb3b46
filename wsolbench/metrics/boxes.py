"""Box extraction over a threshold sweep, and the inclusive "+1" IoU (metrics.md §3–§7, §12).

The hot path: for one prepared map and T thresholds, every *distinct binary image* is built once
(uint8 protocols: ≤ 256 integer levels; float protocols: one per distinct map value passed), on the
bounding region of its foreground only (the same contours, shifted: OpenCV ≥ 3.2 treats image borders
as background), and the IoUs of all boxes of all levels against all GT boxes are one array operation.
Contour protocols skip findContours at levels proven to hold one blob without holes (_contour_sweep;
their box is the whole foreground's, computed for all levels at once).
tests/reference_metrics.py is the plain per-threshold version; tests and benchmarks/metrics_speed.py
check that both give identical numbers.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

from wsolbench.metrics.protocols import EvalProtocol

_SQUARE = np.ones((3, 3), np.uint8)  # 8-neighbourhood
_CROSS = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))  # 4-neighbourhood

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
    thresholds = thresholds.astype(prepared.dtype)  # τ compared in the map's own float type
    values = np.unique(prepared)
    keys = np.searchsorted(values, thresholds, side="right")  # thresholds with equal keys cut alike
    _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
    return prepared, thresholds[first], inverse


class _Level(NamedTuple):
    """Contours of one level: rects [(x, y, w, h)] (None for _SIMPLE) and the V1 index into them."""

    rects: list | None
    best: int


def _contour_level(binary: np.ndarray, offset: tuple[int, int]) -> _Level:
    """All RETR_TREE contours of a binary image: boundingRects, index of the largest contourArea.

    A contour at odd depth of the hierarchy is a hole contour, at even depth an outer one. V1 is the
    first contour in OpenCV's list with the largest contourArea (Python's max() in the reference);
    only outer contours are measured: a hole contour runs through pixels of the blob around it, so
    its polygon lies inside that blob's outer polygon and is never strictly larger, and it never
    wins a tie (tests/test_metrics_equivalence.py checks V1 against the plain rule on rings and
    random images).
    """
    contours, hierarchy = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE, offset=offset)
    rects = [cv2.boundingRect(c) for c in contours]
    if len(contours) == 1:
        return _Level(rects, 0)
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
    return _Level(rects, best)


_SIMPLE = _Level(None, 0)  # a level whose only contour is its whole foreground's outline


def _pixel_component_rect(binary: np.ndarray, offset: tuple[int, int]) -> tuple[int, int, int, int]:
    """Rect (x, y, w, h) of the largest 8-connected component by pixel count.

    Ties go to the component met first in raster order, as skimage/scipy labels. OpenCV's labels do
    not follow that order (its block-based labelling numbers two rows at a time), so a tie is broken
    by each tied component's first pixel in raster order.
    """
    _, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8, ltype=cv2.CV_32S)
    sizes = stats[1:, cv2.CC_STAT_AREA]
    tied = 1 + np.flatnonzero(sizes == sizes.max())
    k = tied[0] if len(tied) == 1 else min(tied, key=lambda t: int(np.argmax(labels == t)))
    x, y, w, h = stats[k, :4].tolist()
    return (x + offset[0], y + offset[1], w, h)


def _extremum_values(q: np.ndarray) -> np.ndarray:
    """Sorted values of the non-strict local maxima (8-neighbourhood) and minima (4-neighbourhood) of q.

    A pixel p is a local maximum if q[p] ≥ every 8-neighbour, a local minimum if q[p] ≤ every
    4-neighbour (missing neighbours at the image border impose nothing). These are the only values
    at which the foreground {q > c} can gain a component or a hole as c moves: see _contour_sweep.
    """
    maxima = q == cv2.dilate(q, _SQUARE)
    minima = q == cv2.erode(q, _CROSS)
    present = np.zeros(256, dtype=bool)
    present[q[maxima]] = True
    present[q[minima]] = True
    return np.flatnonzero(present)


def _contour_sweep(q: np.ndarray, cuts: np.ndarray, roi) -> list[_Level]:
    """_Level of every non-empty uint8 cut (ascending); _SIMPLE where it is certified, not traced.

    roi(u) is the (x0, y0, x1, y1) bounding region of cut u's foreground, where it is traced.
    Certificate: let a < b be cuts with no extremum value (_extremum_values) in (a, b], where
    {q > a} has no hole and {q > b} is one non-empty blob. Then every cut c in (a, b) gives exactly
    one contour (one blob, no hole), whose boundingRect is the box of the whole foreground:
    - no hole: a hole H of {q > c} (a 4-connected part of {q ≤ c} off the border) has no pixel ≤ a,
      or that pixel's 4-component in {q ≤ a} would be a hole of {q > a}; so min(H) lies in (a, c],
      and a pixel of H at min(H) is a 4-neighbourhood local minimum (its neighbours outside H exceed c);
    - one blob: a blob K of {q > c} missing {q > b} has max(K) in (c, b], and a pixel of K at max(K)
      is an 8-neighbourhood local maximum (its neighbours outside K are ≤ c); so every blob meets the
      connected {q > b} ⊆ {q > c}, which lies in one blob.
    The cuts are split into runs with no extremum value between them, and each run is bisected: a
    piece whose two ends trace to exactly one contour is certified whole, otherwise both halves are
    examined, down to single cuts.
    """
    levels: list = [None] * len(cuts)
    cut_list = cuts.tolist()

    def one_contour(u: int) -> bool:
        if levels[u] is None:
            x0, y0, x1, y1 = roi(u)
            levels[u] = _contour_level(cv2.threshold(q[y0:y1, x0:x1], cut_list[u], 1, cv2.THRESH_BINARY)[1], (x0, y0))
        return len(levels[u].rects) == 1

    runs = np.searchsorted(_extremum_values(q), cuts, side="right")  # same run ⇔ no extremum in (a, b]
    bounds = np.flatnonzero(np.diff(runs)) + 1
    stack = [(int(lo), int(hi) - 1) for lo, hi in zip(np.r_[0, bounds], np.r_[bounds, len(cuts)], strict=True)]
    while stack:
        lo, hi = stack.pop()
        if hi < lo:  # no non-empty cut at all
            continue
        if one_contour(lo) & one_contour(hi):  # both traced
            levels[lo + 1 : hi] = [_SIMPLE] * max(0, hi - lo - 1)
        elif hi - lo > 1:
            mid = (lo + hi) // 2
            stack += [(lo, mid), (mid, hi)]
    return levels


def sweep_boxes(protocol: EvalProtocol, prepared: np.ndarray, thresholds: np.ndarray):
    """Boxes of one prepared (H, W) map at every threshold.

    Returns (boxes (M, 4) int64, starts (U,), v1 (U,), inverse (T,)): level u owns
    boxes[starts[u]:starts[u+1]] (V2: all contours), boxes[v1[u]] is its V1 box, and threshold k uses
    level inverse[k]. A box is (x, y, x+w, y+h) of the boundingRect / component, clipped to
    (W − 1, H − 1) if the protocol clips; an empty foreground gives the protocol's empty box.
    uint8 contour protocols trace only the levels _contour_sweep cannot derive.
    """
    source, cuts, inverse = _levels(protocol, prepared, thresholds)
    rows = source.max(1)[None, :] > cuts[:, None]  # (U, S): rows holding foreground at each level
    cols = source.max(0)[None, :] > cuts[:, None]
    filled = int(rows.any(1).sum())  # cuts ascend, so the non-empty levels come first
    left, top = cols.argmax(1), rows.argmax(1)
    right, bottom = cols.shape[1] - cols[:, ::-1].argmax(1), rows.shape[1] - rows[:, ::-1].argmax(1)
    whole = np.stack([left, top, right - left, bottom - top], 1)  # (x, y, w, h) of all the foreground
    x0, y0 = whole[:, 0].tolist(), whole[:, 1].tolist()
    x1, y1 = (whole[:, 0] + whole[:, 2]).tolist(), (whole[:, 1] + whole[:, 3]).tolist()

    def roi(u: int) -> tuple[int, int, int, int]:
        return x0[u], y0[u], x1[u], y1[u]

    def binary(u: int) -> np.ndarray:
        return (source[y0[u] : y1[u], x0[u] : x1[u]] > cuts[u]).view(np.uint8)

    if protocol.components == "pixels":
        found = [_Level([_pixel_component_rect(binary(u), (x0[u], y0[u]))], 0) for u in range(filled)]
    elif source.dtype == np.uint8:
        found = _contour_sweep(source, cuts[:filled], roi)
    else:  # float binarization has no 256-value extremum table: trace every level
        found = [_contour_level(binary(u), (x0[u], y0[u])) for u in range(filled)]
    counts = np.ones(len(cuts), dtype=np.int64)
    counts[:filled] = [1 if f.rects is None else len(f.rects) for f in found]
    starts = np.zeros(len(cuts), dtype=np.int64)
    np.cumsum(counts[:-1], out=starts[1:])
    boxes = np.zeros((int(counts.sum()), 4), dtype=np.int64)
    v1 = starts.copy()
    simple = [u for u, f in enumerate(found) if f.rects is None]
    boxes[starts[simple]] = whole[simple]
    for u, f in enumerate(found):
        if f.rects is not None:
            boxes[starts[u] : starts[u] + counts[u]] = f.rects
            v1[u] += f.best
    boxes[:, 2:] += boxes[:, :2]
    height, width = source.shape
    if protocol.clip:
        np.minimum(boxes[:, 2], width - 1, out=boxes[:, 2])
        np.minimum(boxes[:, 3], height - 1, out=boxes[:, 3])
    boxes[starts[filled:]] = EMPTY_BOXES[protocol.empty_box](width, height)
    return boxes, starts, v1, inverse


def sweep_ious(
    protocol: EvalProtocol, prepared: np.ndarray, thresholds: np.ndarray, gt_boxes: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(IoU_V1 (T,), IoU_V2 (T,)) of one prepared map vs its GT boxes (max over GT, and contours for V2)."""
    boxes, starts, v1, inverse = sweep_boxes(protocol, prepared, thresholds)
    best = box_iou(boxes, gt_boxes).max(1)
    return best[v1][inverse], np.maximum.reduceat(best, starts)[inverse]
