"""Connected components of a map at every threshold in one pass (union-find over sorted pixels, numba).

As a threshold falls, the foreground {v > cut} only grows: adding pixels in decreasing value order
to a union-find over 8-neighbours builds its components level after level, and the foreground at
level u is exactly the first counts[u] pixels of that order. Symmetrically, the background
{v <= cut} grows as the threshold rises, and a union-find over 4-neighbours in increasing order
builds its components; those not touching the image border are the holes. Each component carries
its bounding box and a few integer statistics, merged when components join, so listing a level
costs one record per component alive at it, never a scan of the image.

What findContours (RETR_TREE; OpenCV >= 3.2 treats pixels outside the image as background) returns
at a level, and how it is read off the components (the tests check every point against per-level
tracing):
- outer contours are the 8-connected foreground components, each with the component's box;
- hole contours are the 4-connected background components off the border, boxes grown by one pixel;
- areas: count, over the 2 x 2 cells of pixel centres, 2 for a cell with four corners in a set and
  1 for a cell with three ("cells2" of a blob); for a hole, 1 for a cell with one corner in it and 2
  for a cell with two or more. Twice the contourArea of a blob's outer contour is the sum of these
  counts over the blob, its holes, the blobs inside those holes, and so on down the nesting;
- nesting: the pixel left of a hole's first pixel (raster order) lies in the blob around it, and the
  pixel left of a blob's first pixel in the hole around it (or in the border background);
- order: OpenCV lists top-level outer contours in decreasing raster order of their first pixel.
"""

from __future__ import annotations

import numpy as np
from numba import njit

# Columns of a blob record, and of a hole record.
X0, Y0, X1, Y1, CELLS2, FIRST, SIZE = range(7)
HOLE_CELLS2, ANCHOR, ROOT = range(3)
FOUND, EMPTY, UNDECIDED = 0, -1, -2  # V1 status of a level


def _neighbour_tables() -> tuple[np.ndarray, ...]:
    """Per 8-bit mask of a pixel's neighbours already in (bits n, ne, e, se, s, sw, w, nw): the neighbours to
    look up (ring positions, -1 after the last) and the pixel's cell counts, for 8- and for 4-connectivity.

    Neighbours joined to each other within the 3 x 3 neighbourhood are one component already: one
    look-up per such group (4-connectivity: per group with a 4-neighbour of the pixel, looked up there).
    """
    ring = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]
    joins = {8: np.full((256, 5), -1, np.int64), 4: np.full((256, 5), -1, np.int64)}
    cells8, cells4 = np.zeros(256, np.int64), np.zeros(256, np.int64)
    for mask in range(256):
        inside = [i for i in range(8) if mask >> i & 1]
        for connectivity, table in joins.items():
            group = {i: i for i in inside}
            for a in inside:
                for b in inside:
                    dy, dx = abs(ring[a][0] - ring[b][0]), abs(ring[a][1] - ring[b][1])
                    if (max(dy, dx) if connectivity == 8 else dy + dx) == 1:
                        low, high = sorted((group[a], group[b]))
                        group = {i: low if g == high else g for i, g in group.items()}
            picks = []
            for g in sorted(set(group.values())):
                touching = [i for i in inside if group[i] == g and (connectivity == 8 or i % 2 == 0)]
                picks += touching[:1]
            table[mask, : len(picks)] = picks
        n, ne, e, se, s, sw, w, nw = (mask >> i & 1 for i in range(8))
        cells8[mask] = (n + w + nw >= 2) + (n + e + ne >= 2) + (s + w + sw >= 2) + (s + e + se >= 2)
        cells4[mask] = (n + w + nw <= 1) + (n + e + ne <= 1) + (s + w + sw <= 1) + (s + e + se <= 1)
    return joins[8], cells8, joins[4], cells4


JOINS8, CELLS8, JOINS4, CELLS4 = _neighbour_tables()


@njit(cache=True)
def _find(parent: np.ndarray, p: int) -> int:
    root = p
    while parent[root] != root:
        root = parent[root]
    while parent[p] != root:
        parent[p], p = root, parent[p]
    return root


@njit(cache=True)
def _neighbour_mask(inside: np.ndarray, p: int, row: int) -> int:
    """Bit k set when the k-th neighbour of padded pixel `p` (`ring` order: N, NE, E, SE, S, SW, W, NW) is added."""
    return (inside[p - row] | inside[p - row + 1] << 1 | inside[p + 1] << 2 | inside[p + row + 1] << 3
            | inside[p + row] << 4 | inside[p + row - 1] << 5 | inside[p - 1] << 6 | inside[p - row - 1] << 7)


@njit(cache=True)
def _grow(records: np.ndarray, used: int, extra: int) -> np.ndarray:
    if used + extra <= len(records):
        return records
    out = np.empty((max(2 * len(records), used + extra), records.shape[1]), records.dtype)
    out[:used] = records[:used]
    return out


@njit(cache=True)
def _padded(flat: int, width: int) -> int:
    return (flat // width + 1) * (width + 2) + flat % width + 1


@njit(cache=True)
def uint8_pixel_order(values: np.ndarray, cuts: np.ndarray):
    """Pixels of a uint8 (H, W) map by increasing value, ties in raster order (a counting sort).

    Returns (order, xs, ys, at_most): order (H*W,) int32 indices into the grid padded by one pixel
    on every side, xs/ys their column and row, at_most (U,) the number of pixels with value <= cuts[u].
    """
    height, width = values.shape
    row = width + 2
    starts = np.zeros(257, np.int64)
    for y in range(height):
        for x in range(width):
            starts[values[y, x] + 1] += 1
    for v in range(256):
        starts[v + 1] += starts[v]
    at_most = np.empty(len(cuts), np.int64)
    for u in range(len(cuts)):
        at_most[u] = starts[min(max(cuts[u] + 1, 0), 256)]
    order = np.empty(height * width, np.int32)
    xs = np.empty(height * width, np.int32)
    ys = np.empty(height * width, np.int32)
    for y in range(height):
        for x in range(width):
            k = starts[values[y, x]]
            starts[values[y, x]] = k + 1
            order[k] = (y + 1) * row + x + 1
            xs[k] = x
            ys[k] = y
    return order, xs, ys, at_most


@njit(cache=True)
def _best_iou(x0: int, y0: int, x1: int, y1: int, gt: np.ndarray) -> float:
    """Largest inclusive "+1" IoU of one box with the GT boxes; the arithmetic of metrics.boxes.box_iou."""
    top = 0.0
    for j in range(len(gt)):
        iw = max(0, min(x1, gt[j, 2]) - max(x0, gt[j, 0]) + 1)
        ih = max(0, min(y1, gt[j, 3]) - max(y0, gt[j, 1]) + 1)
        inter = iw * ih
        union = (x1 - x0 + 1) * (y1 - y0 + 1) + (gt[j, 2] - gt[j, 0] + 1) * (gt[j, 3] - gt[j, 1] + 1) - inter
        iou = inter / union if union > 0 else 0.0
        if iou > top:
            top = iou
    return top


@njit(cache=True)
def _drop(active: np.ndarray, where: np.ndarray, slots: np.ndarray, slot_iou: np.ndarray, alive: int, r: int) -> int:
    """Remove root r from the listed components (its slot takes the last one); returns the new count."""
    j = where[r]
    alive -= 1
    last = active[alive]
    active[j] = last
    where[last] = j
    slots[j] = slots[alive]
    slot_iou[j] = slot_iou[alive]
    where[r] = -1
    return alive


@njit(cache=True)
def _mark_outer(after: np.ndarray, outer_from: np.ndarray, first: int, level: int) -> None:
    """outer_from = level for every pixel of the list that starts at `first` (a hole reaching the border)."""
    while first >= 0:
        outer_from[first] = level
        first = after[first]


@njit(cache=True)
def hole_components(
    order: np.ndarray, xs: np.ndarray, ys: np.ndarray, counts: np.ndarray, height: int, width: int,
    gt: np.ndarray, limit: np.ndarray, keep: bool,
):
    """Hole contours at every level u: 4-connected components, off the image border, of the first counts[u] pixels.

    order, xs, ys: padded pixel indices by increasing value and their columns and rows (as
    uint8_pixel_order gives them); counts: (U,) non-decreasing in u. A hole's box is
    its contour's (x, y, x + w, y + h): the component's box grown by one pixel, x + w and y + h
    capped at limit (2,). Returns (iou (U,): the best IoU of a hole box with `gt` at each level, -1
    without holes; boxes (M, 4) (empty unless keep) and records (M', 3) int32 HOLE_CELLS2, ANCHOR
    (flat index of the pixel left of the hole's first pixel), ROOT (component id), with box_lo,
    box_hi, lo, hi (U,): level u owns boxes[box_lo[u]:box_hi[u]] and records[lo[u]:hi[u]]; link,
    link_level: the merge forest, for _background_root; outer_from: per padded pixel, the first level
    at which its component touches the border, `levels` if never).
    """
    row = width + 2  # the grid is padded by one never-added pixel on every side
    size = (height + 2) * row
    parent = np.full(size, -1, np.int32)
    link = np.full(size, -1, np.int32)
    link_level = np.zeros(size, np.int32)
    stats = np.empty((size, 7), np.int32)  # X0, Y0, X1, Y1, cells, first, size
    border = np.zeros(size, np.bool_)
    # The holes alive (components off the border; one that reaches it never leaves it) are listed in
    # slots 0..alive-1: active[k] is the root, slots[k] its record and slot_iou[k] its box's IoU, kept
    # up to date for the roots that changed during the level, so listing a level copies contiguous rows.
    active = np.empty(height * width, np.int32)
    where = np.full(size, -1, np.int32)  # a root's slot, -1 for non-roots and border components
    slots = np.empty((height * width, 3), np.int32)
    slot_iou = np.empty(height * width)
    changed = np.zeros(size, np.bool_)
    dirty = np.empty(height * width, np.int32)
    inside = np.zeros(size, np.uint8)
    ring = np.array([-row, -row + 1, 1, row + 1, row, row - 1, -1, -row - 1])
    alive = 0
    levels = len(counts)
    # the pixels of each hole, as a list (head, tail, after), to mark when it reaches the border
    outer_from = np.full(size, levels, np.int32)
    head = np.empty(size, np.int32)
    tail = np.empty(size, np.int32)
    after = np.empty(size, np.int32)
    iou = np.full(levels, -1.0)
    lo, hi = np.zeros(levels, np.int64), np.zeros(levels, np.int64)
    box_lo, box_hi = np.zeros(levels, np.int64), np.zeros(levels, np.int64)
    # int32 (half the memory traffic of int64), room for 4 holes per pixel before the first regrowth: per-pixel
    # noise lists about 14 per pixel over 255 levels, and regrowing from a small start costs more than the pass
    records = np.empty((max(64, 4 * height * width), 3), np.int32)
    boxes = np.empty((64 if keep else 0, 4), np.int64)
    used = 0
    kept = 0
    added = 0
    for u in range(levels):
        touched = 0
        while added < counts[u]:
            p, x, y = order[added], xs[added], ys[added]
            added += 1
            mask = _neighbour_mask(inside, p, row)
            inside[p] = 1
            root = -1
            for i in range(4):
                if JOINS4[mask, i] < 0:
                    break
                other = _find(parent, p + ring[JOINS4[mask, i]])
                if root < 0:
                    root = other
                    continue
                if other == root:
                    continue
                if stats[other, 6] > stats[root, 6]:
                    root, other = other, root
                parent[other] = root
                link[other] = root
                link_level[other] = u
                stats[root, 0] = min(stats[root, 0], stats[other, 0])
                stats[root, 1] = min(stats[root, 1], stats[other, 1])
                stats[root, 2] = max(stats[root, 2], stats[other, 2])
                stats[root, 3] = max(stats[root, 3], stats[other, 3])
                stats[root, 4] += stats[other, 4]
                stats[root, 5] = min(stats[root, 5], stats[other, 5])
                stats[root, 6] += stats[other, 6]
                if where[other] >= 0:
                    alive = _drop(active, where, slots, slot_iou, alive, other)
                if not border[root] and not border[other]:
                    after[tail[root]] = head[other]
                    tail[root] = tail[other]
                elif not border[other]:
                    _mark_outer(after, outer_from, head[other], u)
                elif not border[root]:
                    border[root] = True
                    alive = _drop(active, where, slots, slot_iou, alive, root)
                    _mark_outer(after, outer_from, head[root], u)
            on_border = x == 0 or y == 0 or x == width - 1 or y == height - 1
            if root < 0:  # a new component
                root = p
                stats[p, 0] = x
                stats[p, 1] = y
                stats[p, 2] = x
                stats[p, 3] = y
                stats[p, 4] = 0
                stats[p, 5] = y * width + x
                stats[p, 6] = 1
                border[p] = on_border
                if on_border:
                    outer_from[p] = u
                else:
                    active[alive] = p
                    where[p] = alive
                    alive += 1
                    head[p], tail[p], after[p] = p, p, -1
            else:  # p joins its neighbours' component
                stats[root, 0] = min(stats[root, 0], x)
                stats[root, 1] = min(stats[root, 1], y)
                stats[root, 2] = max(stats[root, 2], x)
                stats[root, 3] = max(stats[root, 3], y)
                stats[root, 5] = min(stats[root, 5], y * width + x)
                stats[root, 6] += 1
                if on_border and not border[root]:
                    border[root] = True
                    alive = _drop(active, where, slots, slot_iou, alive, root)
                    _mark_outer(after, outer_from, head[root], u)
                if border[root]:
                    outer_from[p] = u
                else:
                    after[tail[root]] = p
                    tail[root] = p
                    after[p] = -1
            parent[p] = root
            link[p] = root
            link_level[p] = u
            # the four cells with p as a corner: the 1st and the 2nd corner in each add 1
            stats[root, 4] += CELLS4[mask]
            if not border[root] and not changed[root]:
                changed[root] = True
                dirty[touched] = root
                touched += 1
        for i in range(touched):  # a hole's record and IoU change only when it grows or merges
            r = dirty[i]
            changed[r] = False
            j = where[r]
            if j < 0:  # merged into another, or reached the border
                continue
            slots[j, HOLE_CELLS2] = stats[r, 4]
            slots[j, ANCHOR] = stats[r, 5] - 1
            slots[j, ROOT] = r
            x0, y0 = stats[r, 0] - 1, stats[r, 1] - 1
            x1, y1 = min(stats[r, 2] + 2, limit[0]), min(stats[r, 3] + 2, limit[1])
            slot_iou[j] = _best_iou(x0, y0, x1, y1, gt)
        lo[u] = used
        records = _grow(records, used, alive)
        best = -1.0
        for k in range(alive):
            records[used, 0], records[used, 1], records[used, 2] = slots[k, 0], slots[k, 1], slots[k, 2]
            used += 1
            best = max(best, slot_iou[k])
        iou[u] = best
        hi[u] = used
        box_lo[u] = kept
        if keep:
            boxes = _grow(boxes, kept, alive)
            for k in range(alive):
                r = active[k]
                boxes[kept, 0], boxes[kept, 1] = stats[r, 0] - 1, stats[r, 1] - 1
                boxes[kept, 2], boxes[kept, 3] = min(stats[r, 2] + 2, limit[0]), min(stats[r, 3] + 2, limit[1])
                kept += 1
        box_hi[u] = kept
    return iou, boxes[:kept], box_lo, box_hi, records[:used], lo, hi, link, link_level, outer_from


@njit(cache=True)
def _background_root(link: np.ndarray, link_level: np.ndarray, p: int, level: int) -> int:
    """Component id at `level` of background pixel p (padded index), from hole_components' merge forest."""
    while link[p] != p and link_level[p] <= level:
        p = link[p]
    return p


@njit(cache=True)
def _largest_contour(
    blobs: np.ndarray, roots: np.ndarray, holes: np.ndarray, parent: np.ndarray, slot: np.ndarray,
    link: np.ndarray, link_level: np.ndarray, outer_from: np.ndarray, level: int, width: int,
) -> int:
    """Row of `blobs` (one level's records, with holes) whose outer contour has the largest contourArea.

    Areas are summed up the nesting (module docstring); ties go to the first in OpenCV's order, and
    are UNDECIDED when the winner ties with a blob nested in a hole (OpenCV's order among nested
    contours is not derived here).
    """
    nb, nh = len(blobs), len(holes)
    # slot: all -1 on entry and exit; maps a blob root (foreground ids) to its row here, and a hole
    # root (background ids, the same padded pixel indices) to nb + its row: a pixel is never both
    for k in range(nb):
        slot[roots[k]] = k
    for h in range(nh):
        slot[holes[h, ROOT]] = nb + h
    up = np.full(nb + nh, -1, np.int64)  # the hole around a blob / the blob around a hole (rows nb + h)
    total = np.empty(nb + nh, np.int64)
    for k in range(nb):
        total[k] = blobs[k, CELLS2]
        left = _padded(blobs[k, FIRST] - 1, width)
        if blobs[k, FIRST] % width != 0 and outer_from[left] > level:  # else up in the border background
            up[k] = slot[_background_root(link, link_level, left, level)]
    for h in range(nh):
        total[nb + h] = holes[h, HOLE_CELLS2]
        up[nb + h] = slot[_find(parent, _padded(holes[h, ANCHOR], width))]
    for k in range(nb):
        slot[roots[k]] = -1
    for h in range(nh):
        slot[holes[h, ROOT]] = -1
    depth = np.zeros(nb + nh, np.int64)
    deepest = 0
    for i in range(nb + nh):
        j = up[i]
        while j >= 0:
            depth[i] += 1
            j = up[j]
        deepest = max(deepest, depth[i])
    for d in range(deepest, 0, -1):  # sums flow up the nesting, deepest first
        for i in range(nb + nh):
            if depth[i] == d:
                total[up[i]] += total[i]
    best = 0
    for k in range(1, nb):
        if total[k] > total[best] or (total[k] == total[best] and blobs[k, FIRST] > blobs[best, FIRST]):
            best = k
    for k in range(nb):
        if total[k] == total[best] and (up[k] >= 0 or up[best] >= 0) and k != best:
            return UNDECIDED
    return best


@njit(cache=True)
def foreground_components(
    order: np.ndarray, xs: np.ndarray, ys: np.ndarray, counts: np.ndarray, height: int, width: int, largest_only: bool,
    gt: np.ndarray, limit: np.ndarray, keep: bool,
    holes: np.ndarray, hole_lo: np.ndarray, hole_hi: np.ndarray, link: np.ndarray, link_level: np.ndarray,
    outer_from: np.ndarray,
):
    """Outer contours at every level u: 8-connected components of the last counts[u] pixels of `order`.

    order, xs, ys: as for hole_components, by increasing value (read from the end); counts: (U,)
    non-increasing in u; the hole
    arguments are hole_components' output for the same levels (empty when largest_only). A blob's
    box is (x, y, x + w, y + h) of its boundingRect, capped at limit (2,). With largest_only, a level
    has one box, its component with the most pixels (ties to the first in raster order).
    Returns (iou (U,): best IoU of a blob box with `gt`, -1 if the level is empty; status (U,):
    FOUND, EMPTY or UNDECIDED; v1_boxes (U, 4): where FOUND, the box of the largest contourArea,
    first in OpenCV's order on ties; boxes (M, 4) (empty unless keep), box_lo (U,), box_hi (U,)).
    """
    row = width + 2  # the grid is padded by one never-added pixel on every side
    size = (height + 2) * row
    parent = np.full(size, -1, np.int32)
    stats = np.empty((size, 7), np.int32)
    active = np.empty(height * width, np.int32)
    where = np.empty(size, np.int32)
    slot = np.full(size, -1, np.int32)
    stale = np.zeros(size, np.bool_)
    cached = np.empty(size)
    inside = np.zeros(size, np.uint8)
    ring = np.array([-row, -row + 1, 1, row + 1, row, row - 1, -1, -row - 1])
    alive = 0
    levels = len(counts)
    iou = np.full(levels, -1.0)
    status = np.full(levels, EMPTY, np.int64)
    v1_boxes = np.zeros((levels, 4), np.int64)
    box_lo, box_hi = np.zeros(levels, np.int64), np.zeros(levels, np.int64)
    boxes = np.empty((64 if keep else 0, 4), np.int64)
    level_blobs = np.empty((height * width, 7), np.int64)
    roots = np.empty(height * width, np.int32)
    kept = 0
    added = 0
    for u in range(levels - 1, -1, -1):
        while added < counts[u]:
            added += 1
            k = len(order) - added
            p, x, y = order[k], xs[k], ys[k]
            mask = _neighbour_mask(inside, p, row)
            inside[p] = 1
            root = -1
            for i in range(4):
                if JOINS8[mask, i] < 0:
                    break
                other = _find(parent, p + ring[JOINS8[mask, i]])
                if root < 0:
                    root = other
                    continue
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
            if root < 0:  # a new component
                root = p
                stats[p, X0] = x
                stats[p, X1] = x
                stats[p, Y0] = y
                stats[p, Y1] = y
                stats[p, CELLS2] = 0
                stats[p, FIRST] = y * width + x
                stats[p, SIZE] = 1
                active[alive] = p
                where[p] = alive
                alive += 1
            else:  # p joins its neighbours' component
                stats[root, X0] = min(stats[root, X0], x)
                stats[root, X1] = max(stats[root, X1], x)
                stats[root, Y0] = min(stats[root, Y0], y)
                stats[root, Y1] = max(stats[root, Y1], y)
                stats[root, FIRST] = min(stats[root, FIRST], y * width + x)
                stats[root, SIZE] += 1
            parent[p] = root
            # the four cells with p as a corner: the 3rd corner in adds 1, the 4th another 1
            stats[root, CELLS2] += CELLS8[mask]
            stale[root] = True
        box_lo[u] = kept
        if alive == 0:
            box_hi[u] = kept
            continue
        if largest_only:
            best = active[0]
            for k in range(1, alive):
                r = active[k]
                if stats[r, SIZE] > stats[best, SIZE] or (
                    stats[r, SIZE] == stats[best, SIZE] and stats[r, FIRST] < stats[best, FIRST]
                ):
                    best = r
            roots[0] = best
            count = 1
        else:
            best = active[0]  # the largest CELLS2, last in raster order on ties: V1 when the level has no hole
            for k in range(alive):
                r = active[k]
                roots[k] = r
                if stats[r, CELLS2] > stats[best, CELLS2] or (
                    stats[r, CELLS2] == stats[best, CELLS2] and stats[r, FIRST] > stats[best, FIRST]
                ):
                    best = r
            count = alive
        if keep:
            boxes = _grow(boxes, kept, count)
        for k in range(count):
            r = roots[k]
            x0, y0 = stats[r, X0], stats[r, Y0]
            x1, y1 = min(stats[r, X1] + 1, limit[0]), min(stats[r, Y1] + 1, limit[1])
            if stale[r]:  # a component's IoU changes only with its box
                cached[r] = _best_iou(x0, y0, x1, y1, gt)
                stale[r] = False
            iou[u] = max(iou[u], cached[r])
            if keep:
                boxes[kept, 0], boxes[kept, 1], boxes[kept, 2], boxes[kept, 3] = x0, y0, x1, y1
                kept += 1
        box_hi[u] = kept
        undecided = False
        if count > 1 and hole_hi[u] > hole_lo[u]:
            # an area lies between CELLS2 and twice its box's (pixel centres): often that decides
            for k in range(count):
                r = roots[k]
                if r != best and 2 * (stats[r, X1] - stats[r, X0]) * (stats[r, Y1] - stats[r, Y0]) >= stats[
                    best, CELLS2
                ]:
                    undecided = True
                    break
        if undecided:
            for k in range(count):
                level_blobs[k] = stats[roots[k]]
            chosen = _largest_contour(
                level_blobs[:count], roots[:count], holes[hole_lo[u] : hole_hi[u]], parent, slot,
                link, link_level, outer_from, u, width,
            )
            if chosen == UNDECIDED:
                status[u] = UNDECIDED
                continue
            best = roots[chosen]
        status[u] = FOUND
        v1_boxes[u, 0], v1_boxes[u, 1] = stats[best, X0], stats[best, Y0]
        v1_boxes[u, 2] = min(stats[best, X1] + 1, limit[0])
        v1_boxes[u, 3] = min(stats[best, Y1] + 1, limit[1])
    return iou, status, v1_boxes, boxes[:kept], box_lo, box_hi


def load_kernels() -> None:
    """Compile the kernels (or load them from numba's cache) now, e.g. once before forking workers."""
    values = np.arange(9, dtype=np.uint8).reshape(3, 3)
    order, xs, ys, counts = uint8_pixel_order(values, np.array([3], np.int64))
    gt, limit = np.zeros((1, 4), np.int64), np.array([2, 2], np.int64)
    for keep in (False, True):
        holes = hole_components(order, xs, ys, counts, 3, 3, gt, limit, keep)
        for largest_only in (False, True):
            foreground_components(order, xs, ys, 9 - counts, 3, 3, largest_only, gt, limit, keep, *holes[4:])
