"""`evaluate --checkpoint ours.pt` rebuilds the method from the config the checkpoint carries."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from engine_toy import make_dataset, overrides

from wsolbench.cli import main
from wsolbench.config import resolve_saved
from wsolbench.engine.checkpoint import checkpoint_config
from wsolbench.engine.runner import execute, plan_runs

# Not the synthetic recipe's DeiT (depth 4, patch 16): rebuilt from the method YAML, the checkpoint
# would not fit (every block's keys and shapes differ).
TRAINED = {"method.backbone_kwargs.depth": 3, "method.backbone_kwargs.patch_size": 8, "train.epochs": 1}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    make_dataset(root / "data" / "synthetic")
    (path,) = execute(plan_runs(["sat"], ["synthetic"], overrides=overrides(root / "data", root / "runs", **TRAINED)))
    return path


def test_evaluate_uses_the_config_stored_in_our_checkpoint(trained, tmp_path):
    checkpoint = trained / "checkpoints" / "last.pt"
    result = CliRunner().invoke(main, ["evaluate", "--method", "sat", "--dataset", "synthetic",
                                       "--checkpoint", str(checkpoint), "--output", str(tmp_path / "eval")])
    assert result.exit_code == 0, result.output
    assert f"config: the one stored in {checkpoint} (no overrides)" in result.output
    ours = json.loads((tmp_path / "eval" / "metrics.json").read_text())["results"]
    run = json.loads((trained / "metrics.json").read_text())["results"]
    test = [e["metrics"] for e in run if e["split"] == "test"]
    assert [e["metrics"] for e in ours if e["split"] == "test"] == test  # the very model the run scored


def test_flags_on_top_override_the_stored_config_and_say_so(trained, tmp_path):
    checkpoint = trained / "checkpoints" / "last.pt"
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(checkpoint), "--output",
                                       str(tmp_path / "eval"), "--set", "eval.cam_curve_interval=0.05"])
    assert result.exit_code == 0, result.output
    assert "with these overrides:\n  eval.cam_curve_interval: 0.01 → 0.05\n" in result.output
    saved = (tmp_path / "eval" / "config.yaml").read_text()
    assert "cam_curve_interval: 0.05" in saved and "patch_size: 8" in saved


def test_stored_config_and_changes(trained):
    saved = checkpoint_config(trained / "checkpoints" / "last.pt")
    assert saved["method"]["backbone_kwargs"]["depth"] == 3
    config, changes = resolve_saved(saved, source="ckpt", overrides=["method.backbone_kwargs.depth=5"])
    assert config.method.backbone_kwargs["depth"] == 5
    assert changes == ["method.backbone_kwargs.depth: 3 → 5"]


def test_a_file_without_config_needs_the_method(tmp_path):
    import torch

    torch.save({"model": {}}, tmp_path / "official.pth")
    assert checkpoint_config(tmp_path / "official.pth") is None
    result = CliRunner().invoke(main, ["evaluate", "--checkpoint", str(tmp_path / "official.pth")])
    assert result.exit_code == 2 and "carries no wsolbench config; name its --method" in result.output
