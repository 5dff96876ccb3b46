"""Checkpoint unwrapping: wrappers and the prefixes DDP and torch.compile add to parameter names."""

from __future__ import annotations

import pytest
import torch

import wsolbench
from wsolbench.contracts.method import CheckpointError

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
