"""The neighbour tables of the union-find passes, checked mask by mask against labelling the 3 x 3 neighbourhood."""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from wsolbench.metrics.component_trees import CELLS4, CELLS8, JOINS4, JOINS8

RING = [(-1, 0), (-1, 1), (0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1)]  # n, ne, e, se, s, sw, w, nw


def neighbourhood(mask: int) -> np.ndarray:
    """The 3 x 3 neighbourhood of a pixel (centre left out) whose added neighbours are the mask's bits."""
    grid = np.zeros((3, 3), bool)
    for bit, (dy, dx) in enumerate(RING):
        grid[1 + dy, 1 + dx] = bool(mask >> bit & 1)
    return grid


def looked_up(table: np.ndarray, mask: int) -> list[int]:
    return [int(i) for i in table[mask] if i >= 0]


def test_eight_connected_runs_are_looked_up_once_each():
    for mask in range(256):
        labels, count = ndimage.label(neighbourhood(mask), np.ones((3, 3)))
        groups = [labels[1 + RING[i][0], 1 + RING[i][1]] for i in looked_up(JOINS8, mask)]
        assert sorted(groups) == list(range(1, count + 1)), mask


def test_four_connected_groups_touching_the_pixel_are_looked_up_once_each():
    for mask in range(256):
        grid = neighbourhood(mask)
        labels, _ = ndimage.label(grid)  # 4-connected, through the neighbourhood only
        chosen = looked_up(JOINS4, mask)
        assert all(i % 2 == 0 and grid[1 + RING[i][0], 1 + RING[i][1]] for i in chosen), mask  # n, e, s, w
        needed = {labels[1 + dy, 1 + dx] for dy, dx in RING[::2] if grid[1 + dy, 1 + dx]}
        assert sorted(labels[1 + RING[i][0], 1 + RING[i][1]] for i in chosen) == sorted(needed), mask


def test_cell_counts_follow_the_corner_rule():
    """Adding the centre to a 2 x 2 cell with k corners in: a blob's count rises when k >= 2, a hole's when k <= 1."""
    for mask in range(256):
        grid = neighbourhood(mask)
        corners = [int(grid[y : y + 2, x : x + 2].sum()) for y in (0, 1) for x in (0, 1)]
        assert CELLS8[mask] == sum(k >= 2 for k in corners), mask
        assert CELLS4[mask] == sum(k <= 1 for k in corners), mask
