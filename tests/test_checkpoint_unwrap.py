"""Checkpoint unwrapping: wrappers and the prefixes DDP and torch.compile add to parameter names."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from engine_toy import make_dataset, overrides

import wsolbench
from wsolbench.contracts.method import CheckpointError
from wsolbench.engine.runner import execute, plan_runs

HERE = Path(__file__).resolve().parent

TINY = {"backbone": "deit_tiny_patch16_224", "img_size": 32,
        "backbone_kwargs": {"embed_dim": 32, "depth": 3, "num_heads": 2}}


@pytest.mark.parametrize("prefix", ["", "module.", "_orig_mod.", "module._orig_mod.", "_orig_mod.module."])
def test_wrapped_and_prefixed_checkpoints_load_exactly(tmp_path, prefix) -> None:
    torch.manual_seed(0)
    source = wsolbench.create_method("ts_cam", num_classes=4, **TINY).eval()
    state = {prefix + k: v for k, v in source.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 7, "best_map": 0.5}, tmp_path / "ckpt.pth")
    torch.manual_seed(1)
    target = wsolbench.create_method("ts_cam", num_classes=4, **TINY).eval()
    assert target.load_checkpoint(tmp_path / "ckpt.pth") == {"epoch": 7, "best_map": 0.5}
    images = torch.randn(2, 3, 32, 32)
    torch.testing.assert_close(target(images).logits, source(images).logits, atol=0, rtol=0)


def test_a_checkpoint_without_tensors_names_the_file(tmp_path) -> None:
    torch.save({"model": {"a": 1}}, tmp_path / "bad.pth")
    model = wsolbench.create_method("ts_cam", num_classes=4, **TINY)
    with pytest.raises(CheckpointError, match=r"bad\.pth: expected a state dict of tensors"):
        model.load_checkpoint(tmp_path / "bad.pth")


def test_a_run_saved_with_the_official_keys_resumes_exactly(tmp_path) -> None:
    """Earlier versions saved SAT's ViT under the official top-level keys (`blocks.0...`, not
    `backbone.blocks.0...`); such an interrupted run resumes, optimizer state included, and ends as an
    uninterrupted run does."""
    make_dataset(tmp_path / "data" / "synthetic")
    settings = overrides(tmp_path / "data", tmp_path / "runs", **{
        "train.checkpoint_every_steps": 2, "method.img_size": 32,
        "method.backbone_kwargs": "{embed_dim: 32, depth: 3, num_heads: 2}"})
    killed = subprocess.run(
        [sys.executable, str(HERE / "engine_toy.py"), "--kill-after-step", "7", "train", "--method", "sat",
         "--experiment", "killed", *[a for s in settings for a in ("--set", s)]],
        capture_output=True, text=True, timeout=120,
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    last = tmp_path / "runs" / "killed" / "synthetic" / "sat-full-seed0" / "checkpoints" / "last.pt"
    state = torch.load(last, map_location="cpu", weights_only=False)
    flat = {key.removeprefix("backbone."): value for key, value in state["model"].items()}
    assert "blocks.1.attn.qkv.weight" in flat and len(flat) == len(state["model"])
    torch.save({**state, "model": flat}, last)

    (resumed,) = execute(plan_runs(["sat"], ["synthetic"], overrides=settings, experiment="killed"), resume=True)
    (straight,) = execute(plan_runs(["sat"], ["synthetic"], overrides=settings, experiment="straight"))
    a = json.loads((resumed / "metrics.json").read_text())
    b = json.loads((straight / "metrics.json").read_text())
    assert a.pop("experiment") == "killed" and b.pop("experiment") == "straight"
    assert a == b
