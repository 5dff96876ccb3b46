"""CUB prepared without CUBV2: one plain note at prepare, in the run output and under the table."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner
from engine_toy import TOY, overrides
from test_bad_images import _cub_source

from wsolbench.cli import main
from wsolbench.config import ConfigError, resolve
from wsolbench.contracts.method import create_method
from wsolbench.engine.runner import evaluate_checkpoint


def test_cub_without_cubv2_says_so_once_and_scores_the_last_checkpoint(tmp_path) -> None:
    source = _cub_source(tmp_path / "CUB_200_2011", {})
    prepared = CliRunner().invoke(main, ["prepare", "cub", "--source", str(source),
                                         "--data-root", str(tmp_path / "data")])
    assert prepared.exit_code == 0, prepared.output
    notes = [line for line in prepared.stdout.splitlines() if "CUBV2" in line]
    assert len(notes) == 1 and notes[0].startswith("NOTE: ") and "UserWarning" not in prepared.output
    assert "score the last checkpoint, not the val-selected best" in notes[0]

    settings = overrides(tmp_path / "data", tmp_path / "runs", **{
        "eval.checkpoint": "best", "train.epochs": 2, "train.batch_size": 3})
    args = ["run", "--methods", TOY, "--dataset", "cub", "--seeds", "0,1",
            *[a for s in settings for a in ("--set", s)]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    expected = ("NOTE (2 of 2 runs): cub has no val split with boxes (its CUBV2 images were not prepared), so "
                "nothing is scored on val; the scored checkpoint is therefore the LAST one, not the val-selected "
                "best (eval.checkpoint: best)")
    assert [line for line in result.stdout.splitlines() if "NOTE" in line] == [expected]
    assert expected in (tmp_path / "runs" / "toy" / "summary.md").read_text()
    for seed in (0, 1):
        metrics = json.loads((tmp_path / "runs" / "toy" / "cub" / f"{TOY}-full-seed{seed}" / "metrics.json")
                             .read_text())
        assert [e["checkpoint"] for e in metrics["results"]] == ["last"]
        assert metrics["notes"] == [expected.split(": ", 1)[1]]


def test_val_threshold_policy_without_val_fails_before_training(tmp_path) -> None:
    source = _cub_source(tmp_path / "CUB_200_2011", {})
    assert CliRunner().invoke(main, ["prepare", "cub", "--source", str(source),
                                     "--data-root", str(tmp_path / "data")]).exit_code == 0
    settings = overrides(tmp_path / "data", tmp_path / "runs", **{"eval.threshold_policy": "val"})
    result = CliRunner().invoke(main, ["run", "--methods", TOY, "--dataset", "cub",
                                       *[a for s in settings for a in ("--set", s)]])
    assert result.exit_code == 2
    assert "eval.threshold_policy 'val' needs a val split with GT" in result.output and "CUBV2" in result.output
    assert not (tmp_path / "runs").exists()
    dry = CliRunner().invoke(main, ["run", "--dry-run", "--methods", TOY, "--dataset", "cub",
                                    *[a for s in settings for a in ("--set", s)]])
    assert dry.exit_code == 2 and "eval.threshold_policy 'val' needs a val split with GT" in dry.output


def test_val_threshold_policy_without_val_fails_before_evaluating_a_checkpoint(tmp_path) -> None:
    source = _cub_source(tmp_path / "CUB_200_2011", {})
    assert CliRunner().invoke(main, ["prepare", "cub", "--source", str(source),
                                     "--data-root", str(tmp_path / "data")]).exit_code == 0
    torch.save(create_method(TOY, num_classes=200).state_dict(), tmp_path / "toy.pt")
    config = resolve(method=TOY, dataset="cub",
                     overrides=overrides(tmp_path / "data", tmp_path / "runs", **{"eval.threshold_policy": "val"}))
    with pytest.raises(ConfigError, match=r"eval.threshold_policy 'val' needs a val split with GT(.|\n)*CUBV2"):
        evaluate_checkpoint(config, tmp_path / "toy.pt")
    assert not (tmp_path / "runs").exists()
