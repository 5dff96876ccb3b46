"""torchrun with 2 gloo processes on CPU: DDP training, and its sharded evaluation equals one process."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from click.testing import CliRunner
from engine_toy import TOY, make_dataset, overrides

from wsolbench.cli import main
from wsolbench.metrics import per_image

HERE = Path(__file__).resolve().parent


def test_ddp_train_and_sharded_evaluation_equal_single_process(tmp_path) -> None:
    make_dataset(tmp_path / "data" / "synthetic")
    settings = [a for s in overrides(tmp_path / "data", tmp_path / "runs") for a in ("--set", s)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               str(HERE / "engine_toy.py"), "train", "--method", TOY, "--experiment", "ddp", *settings]
    trained = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert trained.returncode == 0, trained.stderr[-3000:]
    path = tmp_path / "runs" / "ddp" / "synthetic" / f"{TOY}-full-seed0"
    state = torch.load(path / "checkpoints" / "last.pt", weights_only=True)
    assert len(state["rng"]) == 2 and state["global_step"] == 8  # global batch 4 = 2 ranks × 2 images
    records = [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]
    assert len([r for r in records if r.get("kind") != "epoch"]) == 8  # rank 0 alone writes
    assert trained.stdout.count("run: ") == 1

    # The run's final evaluation was sharded over the 2 ranks; one process must count the same.
    last = path / "checkpoints" / "last.pt"
    single = CliRunner().invoke(main, ["evaluate", "--method", TOY, "--checkpoint", str(last),
                                       "--output", str(tmp_path / "one"), *settings])
    assert single.exit_code == 0, single.output
    sharded = json.loads((path / "metrics.json").read_text())["results"]
    one = json.loads((tmp_path / "one" / "metrics.json").read_text())["results"]
    assert [e["checkpoint"] for e in sharded] == ["last", "last"]
    assert [{**e, "checkpoint": ""} for e in sharded] == [{**e, "checkpoint": ""} for e in one]
    sharded_images = per_image.load(path / "per_image.npz")
    one_images = per_image.load(tmp_path / "one" / "per_image.npz")
    for field in ("image_ids", "labels", "top5", "iou_v1", "iou_v2"):  # gathered back into metadata order
        np.testing.assert_array_equal(getattr(sharded_images, field), getattr(one_images, field))
