"""Cost of the full image decode that `prepare` runs on every image (datasets/_build.check_images).

Writes N JPEGs of CUB's typical size (500 x 375, random-texture content, quality 75), then times
check_images with one thread and with the default thread count, and prints images/s, the ratio, the
load average and the extrapolated check time of CUB (11,788 + 1,000 images) and ILSVRC (1,331,167)
at the measured rate (real photos decode at a similar rate per pixel; ImageNet's are about the same size).

    python benchmarks/prepare_images.py [--num-images 400] [--threads N]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from wsolbench.datasets._build import check_images  # noqa: E402

CUB_IMAGES = 11_788 + 1_000
ILSVRC_IMAGES = 1_281_167 + 50_000


def write_images(root: Path, count: int) -> list[str]:
    rng = np.random.default_rng(0)
    base = np.kron(rng.integers(0, 256, (47, 63, 3)), np.ones((8, 8, 1)))[:375, :500].astype(np.uint8)
    ids = []
    for k in range(count):
        pixels = np.clip(base.astype(np.int16) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
        image_id = f"img_{k:05d}.jpg"
        Image.fromarray(pixels).save(root / image_id, format="JPEG", quality=75)
        ids.append(image_id)
    return ids


def timed(root: Path, ids: list[str], threads: int) -> float:
    started = time.perf_counter()
    check_images(root, ids, workers=threads)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=400)
    parser.add_argument("--threads", type=int, default=None, help="default: check_images' own (≤ 8, ≤ cores)")
    args = parser.parse_args()
    threads = args.threads or min(8, os.cpu_count() or 1)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        ids = write_images(root, args.num_images)
        megabytes = sum((root / i).stat().st_size for i in ids) / 1e6
        timed(root, ids[:20], 1)  # warm the page cache and PIL
        load = os.getloadavg()
        one = timed(root, ids, 1)
        many = timed(root, ids, threads)
    rate = args.num_images / many
    print(f"{args.num_images} JPEGs of 500x375 ({megabytes:.1f} MB), {os.cpu_count()} cores, "
          f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} before timing")
    print(f"1 thread:   {one:.2f} s, {args.num_images / one:.0f} images/s")
    print(f"{threads} threads: {many:.2f} s, {rate:.0f} images/s ({one / many:.2f}x the single thread)")
    print(f"extrapolated check time at {threads} threads: CUB {CUB_IMAGES / rate:.0f} s, "
          f"ILSVRC {ILSVRC_IMAGES / rate / 60:.0f} min")


if __name__ == "__main__":
    main()
