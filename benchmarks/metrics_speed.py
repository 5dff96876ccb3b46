"""Speed of the box metrics against the plain per-threshold reference, in one run, with identical numbers.

Three map families, 224 x 224, normalized as the wsolevaluation protocol does (min-max normalized):
- smooth: one or two Gaussian modes on a 14 x 14 CAM grid, bicubic-upsampled;
- cluttered: realistic CAMs with rings (holes, blobs inside holes), sharp peaks and a noisy background;
- noise: independent uniform noise per pixel (thousands of blobs and holes per level).
For each family and each Δ (0.01, 0.001), with MaxBoxAccV2 (V2, all contours) and MaxBoxAcc (V1):
- the plain reference (tests/reference_metrics.py: every threshold traced with findContours, one at a
  time) on the first --reference-maps maps (it is slow; its rate is per map);
- the engine in this process (BoxAccumulator.update_normalized: V1 and V2 from one pass per map);
- `bench.py score` as a whole new process over all maps (start-up, imports, loading the .npy files,
  --workers processes), once per version.
It checks that the engine's counts equal the reference's on the reference maps at every τ and δ, and
that `score` reports exactly the engine's numbers, then prints maps/s and the ratios to the reference,
in wall time and in CPU time (this process, or the score process and its workers): on a shared
machine the CPU ratios are the steadier ones.
Finally it times `score` once more with an empty numba cache (the first run on a fresh clone, which
compiles the kernels) next to the warm run, the start-up alone (a process that imports the score path
and loads the kernels, then exits), and prints the issue's targets with the figures measured for them.

    python benchmarks/metrics_speed.py            # 1,200 maps per family, the figures of the issue
    python benchmarks/metrics_speed.py --quick    # 200 maps per family, a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from reference_metrics import reference_box_counts  # noqa: E402

from wsolbench.annotations import Metadata, write_metadata  # noqa: E402
from wsolbench.metrics.accumulators import BoxAccumulator  # noqa: E402
from wsolbench.metrics.component_trees import load_kernels  # noqa: E402
from wsolbench.metrics.maps import normalize_maps  # noqa: E402
from wsolbench.metrics.protocols import get_protocol, threshold_list  # noqa: E402

DELTAS = (30, 50, 70)
SIZE = 224
VERSIONS = (("V2", "v2", True, "maxboxaccv2"), ("V1", "v1", False, "maxboxacc"))


def smooth_raw(rng: np.random.Generator) -> np.ndarray:
    yy, xx = np.mgrid[0:14, 0:14]
    cx, cy = rng.uniform(2, 12, 2)
    sx, sy = rng.uniform(1, 4, 2)
    raw = np.exp(-(((xx - cx) / sx) ** 2) - ((yy - cy) / sy) ** 2)
    if rng.random() < 0.5:
        cx2, cy2 = rng.uniform(1, 13, 2)
        raw += 0.6 * np.exp(-(((xx - cx2) / 1.5) ** 2) - ((yy - cy2) / 1.5) ** 2)
    return raw + 0.05 * rng.random((14, 14))


def cluttered_raw(rng: np.random.Generator) -> np.ndarray:
    """A 28 x 28 CAM with a main mode, a ring around it, a few sharp peaks, plus a noisy background."""
    yy, xx = np.mgrid[0:28, 0:28]
    cx, cy = rng.uniform(6, 22, 2)
    radius = np.hypot(xx - cx, yy - cy)
    raw = np.exp(-((radius / rng.uniform(2, 5)) ** 2))
    raw += rng.uniform(0.3, 0.7) * np.exp(-(((radius - rng.uniform(6, 10)) / 1.2) ** 2))  # a ring: holes
    for _ in range(rng.integers(2, 7)):  # peaks
        px, py = rng.uniform(0, 28, 2)
        raw += rng.uniform(0.2, 0.8) * np.exp(-((xx - px) ** 2 + (yy - py) ** 2) / rng.uniform(0.3, 1.5))
    return raw + 0.25 * rng.random((28, 28))


def family(name: str, count: int, seed: int = 0) -> tuple[np.ndarray, list[np.ndarray]]:
    """`count` normalized maps (float32 values, as saved) and one GT box each, near the main mode or off."""
    rng = np.random.default_rng(seed)
    protocol = get_protocol("wsolevaluation")
    if name == "noise":
        maps = rng.random((count, SIZE, SIZE))
        maps = (maps - maps.min((1, 2), keepdims=True)) / np.ptp(maps, (1, 2), keepdims=True)
    else:
        raw = np.stack([smooth_raw(rng) if name == "smooth" else cluttered_raw(rng) for _ in range(count)])
        maps = normalize_maps(protocol, raw)
        if name == "cluttered":  # per-pixel jitter after upsampling, as real CAMs of noisy backbones have
            maps = maps + 0.02 * rng.random(maps.shape)
            maps = (maps - maps.min((1, 2), keepdims=True)) / np.ptp(maps, (1, 2), keepdims=True)
    maps = maps.astype(np.float32).astype(np.float64)
    boxes = []
    for m in maps:
        cy, cx = np.unravel_index(int(np.argmax(cv2.GaussianBlur(m, (0, 0), 8))), m.shape)
        half = rng.integers(10, 80, 2)
        shift = rng.integers(-20, 21, 2)
        x0, y0 = np.clip([cx - half[0] + shift[0], cy - half[1] + shift[1]], 0, SIZE - 2)
        x1, y1 = np.clip([cx + half[0] + shift[0], cy + half[1] + shift[1]], [x0 + 1, y0 + 1], SIZE - 1)
        boxes.append(np.array([[x0, y0, x1, y1]], dtype=np.int64))
    return maps, boxes


def write_layout(folder: Path, maps: np.ndarray, boxes: list[np.ndarray]) -> tuple[Path, Path]:
    """Maps as <folder>/maps/<id>.npy (float32) and a split of 224 x 224 images whose boxes stay as they are."""
    ids = [f"synthetic/{k:05d}.jpg" for k in range(len(maps))]
    (folder / "maps" / "synthetic").mkdir(parents=True, exist_ok=True)
    for image_id, scoremap in zip(ids, maps, strict=True):
        np.save(folder / "maps" / f"{image_id}.npy", scoremap.astype(np.float32))
    metadata = Metadata(
        ids,
        dict.fromkeys(ids, 0),
        dict.fromkeys(ids, (SIZE, SIZE)),
        {i: [tuple(int(v) for v in b[0])] for i, b in zip(ids, boxes, strict=True)},
    )
    write_metadata(folder / "meta", metadata)
    return folder / "maps", folder / "meta"


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class Clock:
    """Wall and CPU seconds of a block (CPU of this process, or of the child processes it waited for)."""

    def __init__(self, who: int = resource.RUSAGE_SELF) -> None:
        self.who = who

    def __enter__(self) -> Clock:
        self.wall, self.cpu = time.perf_counter(), cpu_seconds(self.who)
        return self

    def __exit__(self, *_) -> None:
        self.wall, self.cpu = time.perf_counter() - self.wall, cpu_seconds(self.who) - self.cpu


def run_score(maps_dir: Path, meta_dir: Path, metric: str, interval: float, workers: int, env: dict) -> tuple:
    """(record, Clock) of `python bench.py score` as a new process (CPU: it and its workers)."""
    out = maps_dir.parent / f"score-{metric}.json"
    command = [sys.executable, str(ROOT / "bench.py"), "score", "--scoremaps", str(maps_dir), "--metadata",
               str(meta_dir), "--metric", metric, "--cam-curve-interval", str(interval), "--workers", str(workers),
               "--output", str(out)]
    with Clock(resource.RUSAGE_CHILDREN) as clock:
        subprocess.run(command, check=True, capture_output=True, env=env)
    return json.loads(out.read_text()), clock


def expected_record(counts: np.ndarray, n: int) -> dict[str, float]:
    """per_iou of a score record from (D, T) hit counts: the best τ per δ."""
    return {str(d): 100 * counts[k].max() / n for k, d in enumerate(DELTAS)}


def print_targets(figures: dict, num_maps: int) -> None:
    """The issue's targets next to what this run measured (when it measured them)."""
    clutter = figures.get(("cluttered", 0.001, "V2"))
    if clutter:
        print(f"target: cluttered V2 Δ=0.001, whole score process, {num_maps} maps: >= 30x (aim 100x): "
              f"{clutter['process_ratio']:.1f}x wall ({clutter['process_s']:.2f} s), "
              f"{clutter['process_cpu_ratio']:.1f}x CPU")
    for key in sorted(k for k in figures if k[0] == "noise"):
        noise = figures[key]
        print(f"target: noise {key[2]} Δ={key[1]}: >= 10x and <= 20 ms per map per core: "
              f"{noise['engine_ratio']:.1f}x CPU, {noise['engine_ms']:.2f} ms CPU/map")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-maps", type=int, default=1200, help="maps per family for the engine and score")
    parser.add_argument("--reference-maps", type=int, default=60, help="maps the reference runs (noise: a tenth)")
    parser.add_argument("--workers", type=int, default=2, help="score processes")
    parser.add_argument("--families", default="smooth,cluttered,noise")
    parser.add_argument("--intervals", default="0.01,0.001")
    parser.add_argument("--quick", action="store_true", help="200 maps per family, 20 reference maps")
    args = parser.parse_args()
    if args.quick:
        args.num_maps, args.reference_maps = 200, 20
    load = os.getloadavg()
    print(f"cores: {os.cpu_count()}, load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"{args.num_maps} maps per family, 224x224; score with --workers {args.workers}")
    env = dict(os.environ)
    start = time.perf_counter()
    load_kernels()
    print(f"numba kernels loaded in this process (from cache, or compiled) in {time.perf_counter() - start:.2f} s")
    agree_all = True
    figures: dict[tuple[str, float, str], dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.families.split(","):
            maps, boxes = family(name, args.num_maps)
            n_ref = max(1, args.reference_maps // 10) if name == "noise" else min(args.reference_maps, len(maps))
            maps_dir, meta_dir = write_layout(Path(tmp) / name, maps, boxes)
            for interval in (float(i) for i in args.intervals.split(",")):
                thresholds = threshold_list(interval)
                protocol = get_protocol("wsolevaluation")
                acc = BoxAccumulator(protocol, thresholds, DELTAS)
                with Clock() as engine:
                    acc.update_normalized(maps, boxes, np.zeros(len(maps), np.int64))
                subset = BoxAccumulator(protocol, thresholds, DELTAS)
                subset.update_normalized(maps[:n_ref], boxes[:n_ref], np.zeros(n_ref, np.int64))
                n = len(maps)
                for version, key, multi, metric in VERSIONS:
                    with Clock() as ref:
                        reference = reference_box_counts(
                            maps[:n_ref], boxes[:n_ref], thresholds, DELTAS, "wsolevaluation", multi
                        )
                    record, run = run_score(maps_dir, meta_dir, metric, interval, args.workers, env)
                    agree = np.array_equal(subset.counts()[key], reference) and record["per_iou"] == expected_record(
                        acc.counts()[key], n
                    )
                    agree_all &= agree
                    ref_wall, ref_cpu = ref.wall / n_ref, ref.cpu / n_ref  # per map
                    figures[name, interval, version] = {
                        "engine_ms": 1000 * engine.cpu / n, "engine_ratio": ref_cpu * n / engine.cpu,
                        "process_ratio": ref_wall * n / run.wall, "process_cpu_ratio": ref_cpu * n / run.cpu,
                        "process_s": run.wall,
                    }
                    print(
                        f"{name:9s} Δ={interval:<6} {version}: reference {1 / ref_wall:6.2f} maps/s "
                        f"({1000 * ref_cpu:.0f} ms CPU/map, {n_ref} maps) | engine {n / engine.wall:6.1f} maps/s "
                        f"{ref_wall * n / engine.wall:5.1f}x, CPU {1000 * engine.cpu / n:.2f} ms/map "
                        f"{ref_cpu * n / engine.cpu:5.1f}x | score process {n / run.wall:6.1f} maps/s "
                        f"{ref_wall * n / run.wall:5.1f}x ({run.wall:.2f} s), CPU {run.cpu:.2f} s "
                        f"{ref_cpu * n / run.cpu:5.1f}x | {'IDENTICAL' if agree else 'MISMATCH'}",
                        flush=True,
                    )
        name = "cluttered" if "cluttered" in args.families.split(",") else args.families.split(",")[0]
        with tempfile.TemporaryDirectory() as cache:
            cold_env = dict(env, NUMBA_CACHE_DIR=cache)
            _, cold = run_score(Path(tmp) / name / "maps", Path(tmp) / name / "meta", "maxboxaccv2", 0.001,
                                args.workers, cold_env)
            _, warm = run_score(Path(tmp) / name / "maps", Path(tmp) / name / "meta", "maxboxaccv2", 0.001,
                                args.workers, cold_env)
        print(f"score {name} V2 Δ=0.001, {args.num_maps} maps: empty numba cache (fresh clone) {cold.wall:.2f} s "
              f"({cold.cpu:.2f} s CPU), then cached {warm.wall:.2f} s ({warm.cpu:.2f} s CPU)")
    with Clock(resource.RUSAGE_CHILDREN) as startup:
        subprocess.run([sys.executable, str(ROOT / "bench.py"), "--help"], check=True, capture_output=True)
    print(f"bench.py --help as a new process: {startup.wall:.2f} s")
    with Clock(resource.RUSAGE_CHILDREN) as startup:
        subprocess.run([sys.executable, "-c", "import wsolbench.metrics.score as s; s.load_kernels()"], check=True)
    print(f"score start-up alone (imports and cached kernels, a new process): {startup.wall:.2f} s "
          f"({startup.cpu:.2f} s CPU)")
    print_targets(figures, args.num_maps)
    load = os.getloadavg()
    print(f"load average at end: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print(f"agreement with the reference everywhere: {'IDENTICAL' if agree_all else 'MISMATCH'}")
    if not agree_all:
        sys.exit(1)


if __name__ == "__main__":
    main()
