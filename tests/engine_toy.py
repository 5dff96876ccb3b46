"""A tiny real WSOL method and a tiny box dataset for the engine tests (not collected by pytest).

`python tests/engine_toy.py [--kill-after-step N] <bench.py arguments>` runs the CLI with the toy method
registered, so the subprocess tests (kill/resume, torchrun) use it too; `--kill-after-step N` makes
training SIGKILL its own process after optimizer step N (see `kill_after_step`).
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from wsolbench.annotations import Metadata, write_metadata  # noqa: E402
from wsolbench.contracts.method import Localization, MethodOutput, ParamGroup, WSOLMethod  # noqa: E402
from wsolbench.prepared_dataset import PreparedDataset, write_dataset_info  # noqa: E402
from wsolbench.registry import METHODS, register_method  # noqa: E402

TOY = "engine_toy_cam"
# One intra-op thread: these models are tiny, and on a busy 2-core machine OpenMP threads spin and
# slow small convolutions down by an order of magnitude.
torch.set_num_threads(1)


class ToyCAM(WSOLMethod):
    """Two strided convs (with Dropout2d, so training uses the RNG) and a 1x1 class-map head (the CAM)."""

    name: ClassVar[str] = TOY
    default_hparams: ClassVar[dict[str, Any]] = {"width": 8}
    default_backbone: ClassVar[str | None] = "toy"
    backbones: ClassVar[tuple[str, ...]] = ("toy",)

    def __init__(self, *, width: int, **options: Any) -> None:
        super().__init__(**options)
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, 2, 1), nn.ReLU(), nn.Dropout2d(0.1),
            nn.Conv2d(width, 2 * width, 3, 2, 1), nn.ReLU(),
        )
        self.head = nn.Conv2d(2 * width, self.num_classes, 1)

    def forward(self, images: Tensor) -> MethodOutput:
        cams = self.head(self.features(images))
        return MethodOutput(cams.mean((2, 3)), {"cams": cams})

    def loss(self, output: MethodOutput, labels: Tensor) -> dict[str, Tensor]:
        ce = F.cross_entropy(output.logits, labels)
        return {"loss": ce, "ce": ce}

    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:
        with torch.no_grad():
            output = self(images)
            ids = output.logits.argmax(1) if class_ids is None else class_ids
            maps = output.extras["cams"][torch.arange(len(ids)), ids]
        return Localization(output.logits, maps)

    def param_groups(self, regime: str, trainable_blocks: int = 0) -> list[ParamGroup]:
        if regime == "parameter_efficient":
            return [ParamGroup("head", list(self.head.named_parameters(prefix="head")), lr_scale=10.0)]
        named = list(self.named_parameters())
        return [
            ParamGroup("decay", [(n, p) for n, p in named if p.ndim > 1]),
            ParamGroup("no_decay", [(n, p) for n, p in named if p.ndim <= 1], weight_decay=False),
        ]


if TOY not in METHODS._items:
    register_method(TOY)(ToyCAM)

CLASSES = 2
COUNTS = {"train": 8, "val": 2, "test": 4}  # images per class
SIZE = 40


def make_dataset(root: Path) -> PreparedDataset:
    """A 2-class box dataset: a bright square (class 0) or disc (class 1) on noise, in `root`."""
    rng = np.random.default_rng(0)
    images = root / "images"
    for split, per_class in COUNTS.items():
        ids, labels, sizes, boxes = [], {}, {}, {}
        for label in range(CLASSES):
            for k in range(per_class):
                image_id = f"{split}/{label}_{k}.png"
                pixels = rng.uniform(0, 80, (SIZE, SIZE, 3))
                side = int(rng.integers(12, 22))
                x0, y0 = (int(v) for v in rng.integers(0, SIZE - side, 2))
                yy, xx = np.mgrid[0:side, 0:side]
                shape = np.ones((side, side), bool) if label == 0 else (
                    (yy - side / 2 + 0.5) ** 2 + (xx - side / 2 + 0.5) ** 2 <= (side / 2) ** 2)
                patch = pixels[y0:y0 + side, x0:x0 + side]
                patch[shape] = (230, 200 if label else 60, 40)
                (images / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(pixels.astype(np.uint8)).save(images / image_id)
                ids.append(image_id)
                labels[image_id] = label
                sizes[image_id] = (SIZE, SIZE)
                boxes[image_id] = [(x0, y0, x0 + side - 1, y0 + side - 1)]
        meta = Metadata(ids, labels, sizes, boxes if split != "train" else {})
        write_metadata(root / "metadata" / split, meta)
    prepared = PreparedDataset("synthetic", root, CLASSES, images, None)
    write_dataset_info(prepared)
    return prepared


def overrides(data_root: Path, output_dir: Path, **extra: Any) -> list[str]:
    """--set overrides for a fast toy run on the dataset at data_root/synthetic."""
    base = {
        "dataset.data_root": str(data_root), "output_dir": str(output_dir), "dataset.crop_size": 32,
        "dataset.resize_size": 36, "dataset.num_workers": 0, "train.batch_size": 4, "train.epochs": 2,
        "train.lr": 0.01, "train.schedule": "constant", "train.warmup_epochs": 0.0,
        "train.weight_decay": 0.01,
        "eval.batch_size": 8, "eval.cam_curve_interval": 0.01, "experiment": "toy",
    }
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def kill_after_step(step: int) -> None:
    """Make training in this process SIGKILL itself, as a crash would, once `step` optimizer steps are
    done, logged and checkpointed (when a checkpoint is due then), before the next step runs."""
    from wsolbench.engine.train import Trainer

    run_step = Trainer._step

    def step_unless_killed(self: Trainer, micro: list[dict[str, Any]]) -> tuple[dict[str, float], int]:
        if self.state.global_step == step:
            os.kill(os.getpid(), signal.SIGKILL)
        return run_step(self, micro)

    Trainer._step = step_unless_killed


if __name__ == "__main__":
    from wsolbench.cli import main

    if sys.argv[1:2] == ["--kill-after-step"]:
        kill_after_step(int(sys.argv[2]))
        del sys.argv[1:3]
    main()
