"""Real-size rehearsal: SAT's CUB recipe on a CUB-shaped dataset, through the real CLI.

1. Builds CUB-200-2011's official layout (images.txt, image_class_labels.txt, train_test_split.txt,
   bounding_boxes.txt, images/<class folder>/<file>.jpg) for a subset of the real images: the ids,
   classes, image sizes and boxes of the shipped wsolevaluation CUB metadata, round-robin over the
   200 classes, with generated JPEG files of those exact sizes (a smooth background and an ellipse in
   the GT box). Two sources: one for training (`--steps × batch` train images and a handful of test
   images, which the train command scores at its end) and one with `--test-images` test images for
   the timed evaluation (so the few hundred test maps are not computed twice).
2. Writes DeiT-S/224 weights in timm's format (a randomly initialised `timm.create_model` state dict,
   saved as .safetensors), standing in for the ImageNet weights.
3. `bench.py prepare cub`, then `bench.py train --method sat --dataset cub` with the recipe as
   resolved (batch 256, lr, AdamW, drop path ...) and only these overrides: the weights file,
   1 epoch (= --steps optimizer steps over the subset), train.grad_accum (images per forward pass =
   batch / grad_accum), train.amp from --precision, the device, and the workers.
4. `bench.py evaluate --checkpoint last.pt --set dataset.data_root=<the second source's>`: the config
   stored in the checkpoint, scoring the `--test-images` test subset (timed on its own).

Prints the recipe, s/step and images/s (the first step separately: it includes warm-up), peak memory
(CUDA: torch.cuda.max_memory_allocated; CPU: the process's peak RSS), evaluation maps/s, and the
extrapolated time of the full CUB (5,994 images × 30 epochs, 5,794 test maps) and ILSVRC
(1,281,167 images × 1 epoch, 50,000 test maps) SAT recipes at this machine's speed.

    python benchmarks/rehearsal.py                                  # CPU, fp32, 2 steps (< 10 min on 2 cores)
    python benchmarks/rehearsal.py --device cuda --precision bf16 --grad-accum 1 --steps 5
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from wsolbench.datasets._build import SHIPPED_METADATA
from wsolbench.datasets.ilsvrc import TRAIN_IMAGES as ILSVRC_TRAIN_IMAGES

from wsolbench.annotations import read_metadata

CUB_TRAIN_IMAGES, CUB_TEST_IMAGES, CUB_EPOCHS = 5_994, 5_794, 30
ILSVRC_TEST_IMAGES, ILSVRC_EPOCHS = 50_000, 1
BACKBONE = "deit_small_patch16_224"
TRAIN_RUN_TEST_IMAGES = 8  # what the train command scores at its end (not timed)


def read_split(split: str) -> list[tuple[str, int, tuple[int, int], tuple[float, float, float, float]]]:
    """(image id, class, (width, height), first box x0 y0 x1 y1) of a shipped CUB metadata split."""
    metadata = read_metadata(SHIPPED_METADATA / "CUB" / split)
    return [
        (i, metadata.labels[i], metadata.sizes[i], tuple(float(c) for c in metadata.boxes[i][0]))
        for i in metadata.image_ids
    ]


def round_robin(items: list, count: int) -> list:
    """`count` items cycling over the classes (item[1]) in order, so every class appears early."""
    by_class: dict[int, list] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    queues = [list(reversed(v)) for _, v in sorted(by_class.items())]
    chosen: list = []
    while len(chosen) < count and any(queues):
        for queue in queues:
            if queue and len(chosen) < count:
                chosen.append(queue.pop())
    return chosen


def write_image(path: Path, size: tuple[int, int], box: tuple[float, ...], rng: np.random.Generator) -> None:
    width, height = size
    low = rng.uniform(0, 255, (6, 6, 3)).astype(np.uint8)
    background = np.asarray(Image.fromarray(low).resize((width, height), Image.BILINEAR), dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    x0, y0, x1, y1 = box
    cx, cy, rx, ry = (x0 + x1) / 2, (y0 + y1) / 2, max((x1 - x0) / 2, 1), max((y1 - y0) / 2, 1)
    inside = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1
    background[inside] = rng.uniform(0, 255, 3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(background.astype(np.uint8)).save(path, quality=90)


def build_cub_source(root: Path, train_count: int, test_count: int) -> None:
    """The official CUB_200_2011 layout for a round-robin subset of the real train and test images."""
    rng = np.random.default_rng(0)
    train = round_robin(read_split("train"), train_count)
    test = round_robin(read_split("test"), test_count)[::-1]  # the scored set is not the training run's
    lines: dict[str, list[str]] = {"images": [], "labels": [], "split": [], "boxes": []}
    for n, (image_id, label, size, box) in enumerate([*train, *test], start=1):
        flag = 1 if n <= len(train) else 0
        write_image(root / "images" / image_id, size, box, rng)
        x0, y0, x1, y1 = box
        lines["images"].append(f"{n} {image_id}")
        lines["labels"].append(f"{n} {label + 1}")
        lines["split"].append(f"{n} {flag}")
        lines["boxes"].append(f"{n} {x0} {y0} {x1 - x0} {y1 - y0}")
    for name, key in (("images.txt", "images"), ("image_class_labels.txt", "labels"),
                      ("train_test_split.txt", "split"), ("bounding_boxes.txt", "boxes")):
        (root / name).write_text("\n".join(lines[key]) + "\n")


def write_weights(path: Path) -> None:
    import timm
    from safetensors.torch import save_file

    model = timm.create_model(BACKBONE, pretrained=False)
    save_file(model.state_dict(), str(path))


def cli(*args: str) -> float:
    """Run `bench.py <args>` in this process (the real CLI); returns its wall-clock seconds."""
    from wsolbench.cli import main

    started = time.perf_counter()
    try:
        main(list(args), standalone_mode=False)
    except SystemExit as exit_:
        if exit_.code:
            raise SystemExit(f"bench.py {' '.join(args)} failed with status {exit_.code}") from None
    return time.perf_counter() - started


def peak_memory(device: str) -> str:
    """CUDA: the peak since the last reset; CPU: this process's peak RSS so far (it never resets)."""
    if device == "cuda":
        return f"{torch.cuda.max_memory_allocated() / 2**30:.2f} GiB (torch.cuda.max_memory_allocated)"
    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB (peak RSS of this process so far)"


def hms(seconds: float) -> str:
    hours, rest = divmod(int(seconds), 3600)
    return f"{hours} h {rest // 60:02d} min" if hours else f"{rest // 60} min {rest % 60:02d} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2, help="optimizer steps (train images = steps x batch)")
    parser.add_argument("--batch", type=int, default=256, help="images per optimizer step (SAT's CUB recipe: 256)")
    parser.add_argument("--grad-accum", type=int, default=8, help="forward passes per optimizer step")
    parser.add_argument("--test-images", type=int, default=256)
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--workers", type=int, default=2, help="data loader processes")
    parser.add_argument("--workdir", type=Path, default=None, help="kept when given [a temporary folder]")
    args = parser.parse_args()
    if args.precision == "bf16" and args.device != "cuda":
        parser.error("--precision bf16 needs --device cuda (training AMP is GPU-only)")

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="wsolbench-rehearsal-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        rehearse(args, workdir)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)


def rehearse(args: argparse.Namespace, workdir: Path) -> None:
    print(f"load average: {os.getloadavg()}; torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"device {args.device}" + (f" ({torch.cuda.get_device_name()})" if args.device == "cuda" else ""))
    print(f"cores: {os.cpu_count()}")
    train_count, test_count = args.steps * args.batch, args.test_images

    started = time.perf_counter()
    build_cub_source(workdir / "CUB_200_2011", train_count, TRAIN_RUN_TEST_IMAGES)
    build_cub_source(workdir / "CUB_200_2011_test", TRAIN_RUN_TEST_IMAGES, test_count)
    weights = workdir / f"{BACKBONE}.safetensors"
    write_weights(weights)
    print(f"built {train_count} train + {test_count} test JPEGs (real CUB sizes, 200 classes) and the DeiT-S "
          f"weights file in {time.perf_counter() - started:.1f} s")

    data_root, eval_root, runs = workdir / "data", workdir / "data_test", workdir / "runs"
    prepare_s = cli("prepare", "cub", "--source", str(workdir / "CUB_200_2011"), "--data-root", str(data_root))
    prepare_s += cli("prepare", "cub", "--source", str(workdir / "CUB_200_2011_test"), "--data-root",
                     str(eval_root))
    print(f"prepare cub (both sources): {prepare_s:.1f} s")

    amp = "bf16" if args.precision == "bf16" else "off"
    sets = [f"method.pretrained={weights}", "train.epochs=1", f"train.batch_size={args.batch}",
            f"train.grad_accum={args.grad_accum}", f"train.amp='{amp}'", f"device={args.device}",
            f"dataset.data_root={data_root}", f"dataset.num_workers={args.workers}", f"output_dir={runs}"]
    flags = [a for s in sets for a in ("--set", s)]
    cli("train", "--dry-run", "--method", "sat", "--dataset", "cub", *flags, "--experiment", "rehearsal")
    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    train_s = cli("train", "--method", "sat", "--dataset", "cub", *flags, "--experiment", "rehearsal")
    train_peak = peak_memory(args.device)
    run = runs / "rehearsal" / "cub" / "sat-full-seed0"
    steps = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    step_s = [args.batch / r["images_per_s"] for r in steps if r.get("kind") != "epoch"]
    if len(step_s) != args.steps:
        raise SystemExit(f"expected {args.steps} logged steps, found {len(step_s)} in {run / 'log.jsonl'}")
    steady = step_s[1:] or step_s
    per_step = statistics.median(steady)
    per_image = per_step / args.batch

    if args.device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    eval_s = cli("evaluate", "--checkpoint", str(run / "checkpoints" / "last.pt"), "--output",
                 str(workdir / "eval"), "--set", f"dataset.data_root={eval_root}")
    maps_per_s = test_count / eval_s
    metrics = json.loads((workdir / "eval" / "metrics.json").read_text())
    test = next(e for e in metrics["results"] if e["split"] == "test")

    micro = args.batch // args.grad_accum
    print()
    print(f"recipe: SAT / DeiT-S 224 / CUB, batch {args.batch} per optimizer step = {args.grad_accum} x {micro}, "
          f"precision {args.precision}, {args.steps} steps")
    print(f"train command: {train_s:.1f} s in all (model build, weights, steps, test evaluation, checkpoints)")
    print(f"s/step: first {step_s[0]:.2f} s (warm-up), then median {per_step:.2f} s "
          f"(all: {', '.join(f'{s:.2f}' for s in step_s)})")
    print(f"images/s (training): {1 / per_image:.1f}")
    print(f"peak memory, training: {train_peak}")
    print(f"evaluation: {test_count} test maps in {eval_s:.1f} s (the whole evaluate command) = {maps_per_s:.1f} "
          f"maps/s; peak {peak_memory(args.device)}; MaxBoxAccV2 {test['metrics'].get('maxboxaccv2', float('nan')):.2f}"
          " (random weights: meaningless)")
    cub = CUB_TRAIN_IMAGES * CUB_EPOCHS * per_image + CUB_TEST_IMAGES / maps_per_s
    ilsvrc = ILSVRC_TRAIN_IMAGES * ILSVRC_EPOCHS * per_image + ILSVRC_TEST_IMAGES / maps_per_s
    print(f"extrapolated full CUB recipe ({CUB_TRAIN_IMAGES:,} x {CUB_EPOCHS} epochs + {CUB_TEST_IMAGES:,} test "
          f"maps): {hms(cub)}")
    print(f"extrapolated full ILSVRC recipe ({ILSVRC_TRAIN_IMAGES:,} x {ILSVRC_EPOCHS} epoch + {ILSVRC_TEST_IMAGES:,} "
          f"test maps): {hms(ilsvrc)}")
    print(f"load average at the end: {os.getloadavg()}; this process's CPU time: "
          f"{sum(os.times()[:2]):.0f} s (user + system)")


if __name__ == "__main__":
    main()
