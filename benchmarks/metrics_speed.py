"""Speed of the box-metric engine against the plain per-threshold reference, on the same maps.

Writes N synthetic CAM-like maps (a 14 x 14 blob-plus-noise grid, bicubic-upsampled and normalized as
the wsolevaluation protocol does) with one GT box each in the wsolevaluation layout, then scores
MaxBoxAccV2 (all contours) with:
- the plain reference (tests/reference_metrics.py: every threshold, full image, one at a time);
- the fast engine in one process (BoxAccumulator.update_prepared);
- the fast engine as `bench.py score` runs it (wsolbench.metrics.score, a process pool over chunks).
It checks that all three give identical counts / numbers, then prints times, maps/s and ratios.

    python benchmarks/metrics_speed.py [--num-maps 100] [--interval 0.001] [--workers 2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reference_metrics import reference_box_counts  # noqa: E402

from wsolbench.data import Metadata, write_metadata  # noqa: E402
from wsolbench.metrics.accumulators import BoxAccumulator  # noqa: E402
from wsolbench.metrics.maps import prepare_maps  # noqa: E402
from wsolbench.metrics.protocols import get_protocol, threshold_list  # noqa: E402
from wsolbench.metrics.score import score  # noqa: E402

DELTAS = (30, 50, 70)


def synthetic(n: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """n prepared 224 x 224 maps and their GT boxes (one per image, near the blob, sometimes off)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:14, 0:14]
    raws, boxes = [], []
    for _ in range(n):
        cx, cy = rng.uniform(2, 12, 2)
        sx, sy = rng.uniform(1, 4, 2)
        raw = np.exp(-(((xx - cx) / sx) ** 2) - ((yy - cy) / sy) ** 2)
        if rng.random() < 0.5:  # a second, weaker mode
            cx2, cy2 = rng.uniform(1, 13, 2)
            raw += 0.6 * np.exp(-(((xx - cx2) / 1.5) ** 2) - ((yy - cy2) / 1.5) ** 2)
        raws.append(raw + 0.25 * rng.random((14, 14)))
        x0, y0 = np.clip(np.array([cx - sx, cy - sy]) * 16 + rng.integers(-16, 17, 2), 0, 200).astype(int)
        x1, y1 = np.clip(np.array([cx + sx, cy + sy]) * 16 + rng.integers(-16, 17, 2), [x0, y0], 223).astype(
            int
        )
        boxes.append(np.array([[x0, y0, x1, y1]]))
    return prepare_maps(get_protocol("wsolevaluation"), np.stack(raws)), boxes


def write_layout(folder: Path, maps: np.ndarray, boxes: list[np.ndarray]) -> tuple[Path, Path]:
    """Maps as <folder>/maps/<id>.npy and a metadata split whose 224 x 224 images keep boxes unchanged."""
    ids = [f"synthetic/{k:05d}.jpg" for k in range(len(maps))]
    for image_id, scoremap in zip(ids, maps, strict=True):
        path = folder / "maps" / f"{image_id}.npy"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, scoremap)
    metadata = Metadata(
        ids,
        dict.fromkeys(ids, 0),
        dict.fromkeys(ids, (224, 224)),
        {i: [tuple(int(v) for v in b[0])] for i, b in zip(ids, boxes, strict=True)},
    )
    write_metadata(folder / "meta", metadata)
    return folder / "maps", folder / "meta"


def timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-maps", type=int, default=100)
    parser.add_argument("--interval", type=float, default=0.001)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    n, thresholds = args.num_maps, threshold_list(args.interval)
    maps, boxes = synthetic(n)
    print(f"{n} maps 224x224, {len(thresholds)} thresholds (Δ={args.interval}), MaxBoxAccV2 (all contours)")

    reference, t_ref = timed(
        lambda: reference_box_counts(maps, boxes, thresholds, DELTAS, "wsolevaluation", True)
    )

    def fast_one_process():
        acc = BoxAccumulator(get_protocol("wsolevaluation"), thresholds, DELTAS)
        acc.update_prepared(maps, boxes, np.zeros(n, np.int64))
        return acc.counts()["v2"].copy()

    fast, t_fast = timed(fast_one_process)
    with tempfile.TemporaryDirectory() as tmp:
        maps_dir, meta_dir = write_layout(Path(tmp), maps, boxes)
        record, t_pool = timed(
            lambda: score(maps_dir, meta_dir, "maxboxaccv2", args.interval, DELTAS, workers=args.workers)
        )
    expected = {str(d): 100 * reference[k].max() / n for k, d in enumerate(DELTAS)}
    agree = np.array_equal(fast, reference) and record["per_iou"] == expected
    print(f"agreement (counts at every τ and δ; score per_iou): {'IDENTICAL' if agree else 'MISMATCH'}")
    print(f"MaxBoxAccV2 = {record['value']:.4f}  per δ {record['per_iou']}")
    print(f"plain reference           {t_ref:8.2f} s  {n / t_ref:8.1f} maps/s")
    print(
        f"fast engine, 1 process    {t_fast:8.2f} s  {n / t_fast:8.1f} maps/s  ratio {t_ref / t_fast:6.1f}x"
    )
    print(
        f"fast score, {args.workers} workers    {t_pool:8.2f} s  {n / t_pool:8.1f} maps/s  "
        f"ratio {t_ref / t_pool:6.1f}x (includes loading the .npy files)"
    )
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
