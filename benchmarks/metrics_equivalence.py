"""Randomized equivalence of the one-pass box sweep with per-threshold OpenCV / scipy, on 20,000+ maps.

The map kinds of tests/test_metrics_equivalence.py (smooth, white noise, sparse pixels and lines,
rings, few-valued plateaus, smooth plus noise touching the border, per-pixel noise, constant maps),
6 to 64 pixels a side, cycling through the protocols wsolevaluation, ts_cam, scm and sat. For every
map and threshold it compares the V1 box and the sorted list of all V2 boxes with one findContours
(or scipy labelling, for sat) per threshold, and the IoUs of the scoring path (sweep_ious, which
keeps no boxes) with the reference IoUs against three random GT boxes. Prints the number of maps,
thresholds and mismatches; exits 1 on any mismatch.

    python benchmarks/metrics_equivalence.py [--maps 20000] [--seed 0] [--workers 2]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reference_metrics import reference_ious  # noqa: E402
from test_metrics_equivalence import random_maps, referenced, swept  # noqa: E402

from wsolbench.metrics.boxes import sweep_ious  # noqa: E402
from wsolbench.metrics.component_trees import load_kernels  # noqa: E402
from wsolbench.metrics.protocols import get_protocol  # noqa: E402

CONVENTIONS = ("wsolevaluation", "ts_cam", "scm", "sat")


def check_chunk(task: tuple[int, int]) -> tuple[int, int, list[str]]:
    """(maps, thresholds checked, mismatch descriptions) for one seeded chunk of maps."""
    seed, count = task
    rng = np.random.default_rng(seed + 1_000_000)
    mismatches, levels = [], 0
    for k, scoremap in enumerate(random_maps(count, seed)):
        convention = CONVENTIONS[k % len(CONVENTIONS)]
        if convention == "sat":
            thresholds = np.unique(np.r_[np.quantile(scoremap, [0.1, 0.3, 0.5, 0.7, 0.9]), 0.35]).clip(0, 0.999)
            expected = [(v1, [v1]) for v1, _ in referenced("sat", scoremap, thresholds)]
        else:
            thresholds = np.arange(0, 1, 0.01)
            expected = referenced(convention, scoremap, thresholds)
        height, width = scoremap.shape
        xs, ys = np.sort(rng.integers(0, width, (3, 2)), 1), np.sort(rng.integers(0, height, (3, 2)), 1)
        gt = np.stack([xs[:, 0], ys[:, 0], xs[:, 1], ys[:, 1]], 1)
        iou_v1, iou_v2 = sweep_ious(get_protocol(convention), scoremap, thresholds, gt)
        same = (
            swept(convention, scoremap, thresholds) == expected
            and np.array_equal(iou_v1, reference_ious(scoremap, thresholds, gt, convention, False))
            and np.array_equal(iou_v2, reference_ious(scoremap, thresholds, gt, convention, convention != "sat"))
        )
        if not same:
            mismatches.append(f"seed {seed} map {k} ({convention}, {height}x{width})")
        levels += len(thresholds)
    return count, levels, mismatches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--maps", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    chunk = 250
    chunks = range((args.maps + chunk - 1) // chunk)
    tasks = [(args.seed * 100_003 + k, min(chunk, args.maps - k * chunk)) for k in chunks]
    load_kernels()
    start = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        results = list(pool.map(check_chunk, tasks))
    maps = sum(r[0] for r in results)
    levels = sum(r[1] for r in results)
    mismatches = [m for r in results for m in r[2]]
    print(f"{maps} maps, {levels} thresholds, protocols {', '.join(CONVENTIONS)}: "
          f"{len(mismatches)} mismatches ({time.perf_counter() - start:.0f} s)")
    for line in mismatches[:20]:
        print("  mismatch:", line)
    if mismatches:
        sys.exit(1)


if __name__ == "__main__":
    main()
