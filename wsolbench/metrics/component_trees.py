"""Connected components of a map at every threshold in one pass (union-find over sorted pixels, numba).

As a threshold falls, the foreground {v > cut} only grows: adding pixels in decreasing value order
to a union-find over 8-neighbours builds its components level after level, and the foreground at
level u is exactly the first counts[u] pixels of that order. Symmetrically, the background
{v <= cut} grows as the threshold rises, and a union-find over 4-neighbours in increasing order
builds its components; those not touching the image border are the holes. Each component carries
its bounding box and a few integer statistics, merged when components join, so listing a level
costs one record per component alive at it, never a scan of the image.

Guarantees (checked against per-threshold OpenCV tracing and scipy labelling by the tests):
- an outer contour of findContours (OpenCV >= 3.2 treats pixels outside the image as background)
  is an 8-connected foreground component, with the component's bounding box;
- a hole contour is a 4-connected background component off the border, its box grown by one pixel;
- `cells2` of a component is twice the area of the polygon through its pixel centres counted cell
  by cell (a 2 x 2 cell of pixel centres adds 1 with three pixels in the component, 2 with four);
  it equals 2 x contourArea of the component's outer contour when the component has no hole, and
  is a lower bound otherwise;
- `first` is the component's first pixel in raster order (flat index).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Columns of a foreground record.
X0, Y0, X1, Y1, CELLS2, FIRST, SIZE = range(7)


@njit(cache=True)
def _find(parent: np.ndarray, p: int) -> int:
    root = p
    while parent[root] != root:
        root = parent[root]
    while parent[p] != root:
        parent[p], p = root, parent[p]
    return root


@njit(cache=True)
def _grow(records: np.ndarray, used: int, extra: int) -> np.ndarray:
    if used + extra <= len(records):
        return records
    out = np.empty((max(2 * len(records), used + extra), records.shape[1]), records.dtype)
    out[:used] = records[:used]
    return out


@njit(cache=True)
def foreground_components(order: np.ndarray, counts: np.ndarray, height: int, width: int, largest_only: bool):
    """8-connected components of the first counts[u] pixels of `order`, for every level u.

    order: flat pixel indices by decreasing value; counts: (U,) non-increasing in u.
    Returns (records (M, 7) int64 with columns X0, Y0, X1, Y1 (inclusive), CELLS2, FIRST, SIZE;
    lo (U,), hi (U,)): level u owns records[lo[u]:hi[u]]. With largest_only, a level keeps only its
    component with the most pixels, ties to the first in raster order.
    """
    row = width + 2  # the grid is padded by one never-added pixel on every side
    parent = np.full((height + 2) * row, -1, np.int32)
    stats = np.empty(((height + 2) * row, 7), np.int32)
    active = np.empty(height * width, np.int32)
    where = np.empty((height + 2) * row, np.int32)
    neighbours = np.array([-row - 1, -row, -row + 1, -1, 1, row - 1, row, row + 1])
    alive = 0
    levels = len(counts)
    lo = np.zeros(levels, np.int64)
    hi = np.zeros(levels, np.int64)
    records = np.empty((max(64, 4 * levels), 7), np.int64)
    used = 0
    added = 0
    for u in range(levels - 1, -1, -1):
        while added < counts[u]:
            flat = order[added]
            added += 1
            y, x = flat // width, flat % width
            p = (y + 1) * row + x + 1
            parent[p] = p
            stats[p, X0] = x
            stats[p, X1] = x
            stats[p, Y0] = y
            stats[p, Y1] = y
            stats[p, CELLS2] = 0
            stats[p, FIRST] = flat
            stats[p, SIZE] = 1
            active[alive] = p
            where[p] = alive
            alive += 1
            root = p
            for step in neighbours:
                q = p + step
                if parent[q] < 0 or parent[q] == root:
                    continue
                other = _find(parent, q)
                if other == root:
                    continue
                if stats[other, SIZE] > stats[root, SIZE]:
                    root, other = other, root
                parent[other] = root
                stats[root, X0] = min(stats[root, X0], stats[other, X0])
                stats[root, Y0] = min(stats[root, Y0], stats[other, Y0])
                stats[root, X1] = max(stats[root, X1], stats[other, X1])
                stats[root, Y1] = max(stats[root, Y1], stats[other, Y1])
                stats[root, CELLS2] += stats[other, CELLS2]
                stats[root, FIRST] = min(stats[root, FIRST], stats[other, FIRST])
                stats[root, SIZE] += stats[other, SIZE]
                last = active[alive - 1]
                active[where[other]] = last
                where[last] = where[other]
                alive -= 1
            # the four 2 x 2 cells with p as a corner: the 3rd corner in adds half a cell, the 4th the other half
            n, w, e, s = parent[p - row] >= 0, parent[p - 1] >= 0, parent[p + 1] >= 0, parent[p + row] >= 0
            nw, ne, sw, se = parent[p - row - 1] >= 0, parent[p - row + 1] >= 0, parent[p + row - 1] >= 0, parent[
                p + row + 1
            ] >= 0
            stats[root, CELLS2] += (
                (n + w + nw >= 2) + (n + e + ne >= 2) + (s + w + sw >= 2) + (s + e + se >= 2)
            )
        lo[u] = used
        if largest_only and alive > 0:
            best = active[0]
            for k in range(1, alive):
                r = active[k]
                if stats[r, SIZE] > stats[best, SIZE] or (
                    stats[r, SIZE] == stats[best, SIZE] and stats[r, FIRST] < stats[best, FIRST]
                ):
                    best = r
            records = _grow(records, used, 1)
            records[used] = stats[best]
            used += 1
        elif not largest_only:
            records = _grow(records, used, alive)
            for k in range(alive):
                records[used] = stats[active[k]]
                used += 1
        hi[u] = used
    return records[:used], lo, hi


@njit(cache=True)
def hole_components(order: np.ndarray, counts: np.ndarray, height: int, width: int):
    """4-connected components off the image border of the first counts[u] pixels of `order`, per level u.

    order: flat pixel indices by increasing value; counts: (U,) non-decreasing in u.
    Returns (records (M, 4) int64 inclusive boxes X0, Y0, X1, Y1; lo (U,), hi (U,)) as above.
    """
    row = width + 2
    parent = np.full((height + 2) * row, -1, np.int32)
    stats = np.empty(((height + 2) * row, 6), np.int32)  # X0, Y0, X1, Y1, touches the border, size
    active = np.empty(height * width, np.int32)
    where = np.empty((height + 2) * row, np.int32)
    neighbours = np.array([-row, -1, 1, row])
    alive = 0
    levels = len(counts)
    lo = np.zeros(levels, np.int64)
    hi = np.zeros(levels, np.int64)
    records = np.empty((max(64, 4 * levels), 4), np.int64)
    used = 0
    added = 0
    for u in range(levels):
        while added < counts[u]:
            flat = order[added]
            added += 1
            y, x = flat // width, flat % width
            p = (y + 1) * row + x + 1
            parent[p] = p
            stats[p, 0] = x
            stats[p, 1] = y
            stats[p, 2] = x
            stats[p, 3] = y
            stats[p, 4] = 1 if x == 0 or y == 0 or x == width - 1 or y == height - 1 else 0
            stats[p, 5] = 1
            active[alive] = p
            where[p] = alive
            alive += 1
            root = p
            for step in neighbours:
                q = p + step
                if parent[q] < 0 or parent[q] == root:
                    continue
                other = _find(parent, q)
                if other == root:
                    continue
                if stats[other, 5] > stats[root, 5]:
                    root, other = other, root
                parent[other] = root
                stats[root, 0] = min(stats[root, 0], stats[other, 0])
                stats[root, 1] = min(stats[root, 1], stats[other, 1])
                stats[root, 2] = max(stats[root, 2], stats[other, 2])
                stats[root, 3] = max(stats[root, 3], stats[other, 3])
                stats[root, 4] = max(stats[root, 4], stats[other, 4])
                stats[root, 5] += stats[other, 5]
                last = active[alive - 1]
                active[where[other]] = last
                where[last] = where[other]
                alive -= 1
        lo[u] = used
        records = _grow(records, used, alive)
        for k in range(alive):
            r = active[k]
            if stats[r, 4] == 0:
                records[used] = stats[r, :4]
                used += 1
        hi[u] = used
    return records[:used], lo, hi


@njit(cache=True)
def largest_contour(records: np.ndarray, lo: np.ndarray, hi: np.ndarray, holes: np.ndarray) -> np.ndarray:
    """Per level, the index of the outer contour with the largest contourArea, first in OpenCV's order on ties.

    -1 where the level is empty, -2 where it cannot be decided from the records (the caller traces it).
    Without holes at a level, every area is exact (CELLS2) and OpenCV lists the outer contours in
    decreasing raster order of their first pixel. With holes, an area lies between CELLS2 and twice
    the area of the component's bounding box (pixel centres); the level is decided only if the
    largest lower bound beats every other upper bound strictly.
    """
    out = np.full(len(lo), -1, np.int64)
    for u in range(len(lo)):
        if hi[u] == lo[u]:
            continue
        best = lo[u]
        for k in range(lo[u] + 1, hi[u]):
            if records[k, CELLS2] > records[best, CELLS2] or (
                records[k, CELLS2] == records[best, CELLS2] and records[k, FIRST] > records[best, FIRST]
            ):
                best = k
        if holes[u] > 0:
            for k in range(lo[u], hi[u]):
                bound = 2 * (records[k, X1] - records[k, X0]) * (records[k, Y1] - records[k, Y0])
                if k != best and bound >= records[best, CELLS2]:
                    best = -2
                    break
        out[u] = best
    return out


@njit(cache=True)
def level_ious(boxes: np.ndarray, starts: np.ndarray, v1: np.ndarray, gt: np.ndarray):
    """(IoU of box v1[u], best IoU of boxes[starts[u]:starts[u+1]]) per level u, best over the GT boxes.

    Inclusive "+1" IoU, 0 where the union is not positive; the same arithmetic as metrics.boxes.box_iou.
    """
    levels = len(starts)
    best = np.empty(len(boxes))
    for i in range(len(boxes)):
        top = 0.0
        for j in range(len(gt)):
            iw = max(0, min(boxes[i, 2], gt[j, 2]) - max(boxes[i, 0], gt[j, 0]) + 1)
            ih = max(0, min(boxes[i, 3], gt[j, 3]) - max(boxes[i, 1], gt[j, 1]) + 1)
            inter = iw * ih
            union = (
                (boxes[i, 2] - boxes[i, 0] + 1) * (boxes[i, 3] - boxes[i, 1] + 1)
                + (gt[j, 2] - gt[j, 0] + 1) * (gt[j, 3] - gt[j, 1] + 1)
                - inter
            )
            iou = inter / union if union > 0 else 0.0
            if iou > top:
                top = iou
        best[i] = top
    iou_v1 = np.empty(levels)
    iou_v2 = np.empty(levels)
    for u in range(levels):
        end = starts[u + 1] if u + 1 < levels else len(boxes)
        top = best[starts[u]]
        for i in range(starts[u] + 1, end):
            top = max(top, best[i])
        iou_v1[u] = best[v1[u]]
        iou_v2[u] = top
    return iou_v1, iou_v2
