"""Speed of the vectorised bootstrap (wsolbench.stats) on CUB-size and ILSVRC-size per-image inputs.

Builds synthetic per-image results (IoU curves over τ shaped like real ones: rising to a per-image peak,
then falling; labels and top-5 predictions with ~75 % Top-1), then times, for each size:
- `intervals`: every metric with its 95 % interval, 1,000 resamples, τ re-selected per resample
  (oracle-test), the vectorised path (count matrix @ hit matrix);
- a plain reference: one resample at a time (draw indices, index the hit matrices, take means and the
  best τ), timed on a few resamples and scaled to the same number;
it checks that both give the same resampled values on those resamples, prints the load average, the
times and the ratio, and the size of the per_image.npz each input makes.

    python benchmarks/bootstrap_speed.py [--resamples 1000] [--reference-resamples 10] [--sizes cub,ilsvrc]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from wsolbench.metrics.per_image import PerImage, at_least, encode_iou, save
from wsolbench.stats.bootstrap import Scored, intervals, metric_values, resample_counts, resample_indices

SIZES = {"cub": (5794, 200, 1000), "ilsvrc": (50000, 1000, 1000)}  # images, classes, thresholds


def synthetic(n: int, classes: int, thresholds: int, seed: int = 0) -> PerImage:
    rng = np.random.default_rng(seed)
    taus = np.arange(thresholds) / thresholds
    v1 = np.empty((n, thresholds), np.uint16)
    v2 = np.empty_like(v1)
    for start in range(0, n, 2000):
        m = min(2000, n - start)
        peak = rng.uniform(0.05, 0.6, (m, 1))
        top = rng.beta(4, 2, (m, 1))
        curve = top * np.exp(-((taus[None] - peak) / rng.uniform(0.1, 0.4, (m, 1))) ** 2)
        v1[start:start + m] = encode_iou(np.clip(curve, 0, 1))
        v2[start:start + m] = encode_iou(np.clip(curve * rng.uniform(0.9, 1.1, (m, 1)), 0, 1))
    labels = rng.integers(0, classes, n).astype(np.int32)
    top5 = rng.integers(0, classes, (n, 5)).astype(np.int32)
    right = rng.random(n) < 0.75
    top5[right, 0] = labels[right]
    ids = np.array([f"img{i:06d}" for i in range(n)])
    return PerImage(ids, labels, top5, taus, v1, v2, (30, 50, 70), "wsolevaluation", False, "per_metric")


def reference(per_image: PerImage, indices: np.ndarray) -> dict[str, np.ndarray]:
    """The plain way: one resample at a time, MaxBoxAcc / MaxBoxAccV2 / Top-1 Loc / Top-1 Cls."""
    located = at_least(per_image.iou_v1, 50)
    v2 = [at_least(per_image.iou_v2, d) for d in per_image.iou_thresholds]
    top1 = per_image.top1_correct()
    out: dict[str, list[float]] = {"maxboxacc": [], "maxboxaccv2": [], "top1_loc": [], "top1_cls": []}
    for drawn in indices:
        out["maxboxacc"].append(100 * located[drawn].mean(0).max())
        out["maxboxaccv2"].append(np.mean([100 * hits[drawn].mean(0).max() for hits in v2]))
        out["top1_loc"].append(100 * (located[drawn] & top1[drawn, None]).mean(0).max())
        out["top1_cls"].append(100 * top1[drawn].mean())
    return {key: np.array(values) for key, values in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--reference-resamples", type=int, default=10)
    parser.add_argument("--sizes", default="cub,ilsvrc")
    args = parser.parse_args()
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; cpus: {os.cpu_count()}")
    for name in args.sizes.split(","):
        n, classes, t = SIZES[name]
        per_image = synthetic(n, classes, t)
        with tempfile.TemporaryDirectory() as tmp:
            size = save(per_image, Path(tmp) / "per_image.npz").stat().st_size
        scored = Scored(per_image)

        started = time.perf_counter()
        result = intervals(scored, resamples=args.resamples, seed=0)
        fast = time.perf_counter() - started

        k = args.reference_resamples
        indices = resample_indices(n, k, seed=0)
        started = time.perf_counter()
        plain = reference(per_image, indices)
        slow = (time.perf_counter() - started) * args.resamples / k
        check = metric_values(scored, resample_counts(n, k, seed=0))
        for key, values in plain.items():
            np.testing.assert_allclose(check[key], values, rtol=0, atol=1e-9, err_msg=key)

        print(f"{name}: {n} images x {t} thresholds, per_image.npz {size / 1e6:.1f} MB; "
              f"{args.resamples} resamples: vectorised {fast:.2f} s, plain reference {slow:.1f} s "
              f"(from {k} resamples), ratio {slow / fast:.0f}x; "
              f"MaxBoxAccV2 {result['maxboxaccv2'].value:.2f} ± {result['maxboxaccv2'].half_width:.2f}")
    print(f"load average after: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
