"""Ablation grids: parsing, cell labels, manifest → table / CSV / chart, and one tiny engine run."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from click.testing import CliRunner
from wsolbench.reports import ablation as rendering
from wsolbench.reports.tables import PAPER

from wsolbench import ablation_manifest
from wsolbench.cli import main
from wsolbench.config import ConfigError
from wsolbench.engine import ablation


def test_parse_grid_and_cells() -> None:
    study = ablation.parse_grid(["method.hparams.use_area_loss=true,false", "train.lr=1e-4, 2e-4"])
    assert study.grid == {"method.hparams.use_area_loss": ["true", "false"], "train.lr": ["1e-4", "2e-4"]}
    cells = ablation.cells(study)
    assert [c["label"] for c in cells] == ["use_area_loss=true,lr=1e-4", "use_area_loss=true,lr=2e-4",
                                           "use_area_loss=false,lr=1e-4", "use_area_loss=false,lr=2e-4"]
    assert cells[1]["overrides"] == ["method.hparams.use_area_loss=true", "train.lr=2e-4"]
    assert ablation_manifest.short_keys(["a.x", "b.x", "c.y"]) == {"a.x": "a.x", "b.x": "b.x", "c.y": "y"}
    for bad in (["train.lr"], ["=1,2"], ["train.lr="], ["train.lr=1", "train.lr=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            ablation.parse_grid(bad)


def test_sat_default_grid_uses_the_methods_hparam_names() -> None:
    from wsolbench.registry import METHODS

    loss, sweep = ablation.default_studies("sat")
    hparams = METHODS.get("sat").default_hparams
    for key in [*loss.grid, *sweep.grid]:
        assert key.startswith("method.hparams.") and key.split(".")[-1] in hparams
    assert [c["label"] for c in ablation.cells(loss)] == [
        "use_area_loss=true,use_norm_loss=true", "use_area_loss=true,use_norm_loss=false",
        "use_area_loss=false,use_norm_loss=true", "use_area_loss=false,use_norm_loss=false"]
    with pytest.raises(ConfigError, match="no default ablation for method 'cam'"):
        ablation.default_studies("cam")


def _write_cell_run(root, label: str, seed: int, value: float) -> str:
    run = root / label / "synthetic" / f"sat-full-seed{seed}"
    run.mkdir(parents=True)
    entry = {"split": "test", "eval_protocol": "wsolevaluation", "threshold_policy": "oracle-test",
             "checkpoint": "last", "metrics": {"maxboxaccv2": value, "top1_loc": value - 10}}
    (run / "metrics.json").write_text(json.dumps({
        "experiment": f"abl/{label}", "dataset": "synthetic", "method": "sat",
        "backbone": "deit_tiny_patch16_224", "regime": "full", "seed": seed, "trainable_params": 5,
        "results": [entry]}))
    return str(run.relative_to(root))


def test_manifest_to_table_csv_and_chart(tmp_path) -> None:
    root = tmp_path / "abl"
    study = ablation.Study("loss terms", {"method.hparams.use_area_loss": ["true", "false"],
                                          "method.hparams.use_norm_loss": ["true"]})
    manifest = {"method": "sat", "dataset": "synthetic", "experiment": "abl", "overrides": [], "studies": [
        {"name": study.name, "keys": list(study.grid), "cells": [
            {**cell, "runs": [_write_cell_run(root, cell["label"], s, v + s) for s in (0, 1)]}
            for cell, v in zip(ablation.cells(study), (60.0, 50.0), strict=True)]}]}
    (root / "ablation.json").write_text(json.dumps(manifest))
    loaded = ablation_manifest.load_manifest(ablation_manifest.find_manifest(root))
    result = rendering.write_outputs(loaded, tmp_path / "out", PAPER)
    lines = result.markdown.splitlines()
    assert lines[2:6] == [
        "| use_area_loss | use_norm_loss | Synthetic Top-1 Loc | Synthetic MaxBoxAccV2 |",
        "|---|---|---:|---:|",
        "| true | true | **50.50 ± 0.71** | **60.50 ± 0.71** |",
        "| false | true | 40.50 ± 0.71 | 50.50 ± 0.71 |",
    ]
    csv = pd.read_csv(io.StringIO((tmp_path / "out" / "ablation.csv").read_text()))
    keys = ["method.hparams.use_area_loss", "method.hparams.use_norm_loss"]
    assert list(csv.columns[:4]) == ["study", *keys, "seeds"]
    assert csv["synthetic.maxboxaccv2"].tolist() == [60.5, 50.5]
    tex = (tmp_path / "out" / "ablation.tex").read_text()
    assert r"use\_area\_loss & use\_norm\_loss" in tex
    assert [p.name for p in result.figures] == ["ablation_0.png"]
    assert (tmp_path / "out" / "ablation_0.pdf").is_file()


def test_ablate_command_runs_the_engine_per_cell(tmp_path) -> None:
    """Two few-shot cells (10 training images) of the tiny SAT through plan_runs / execute."""
    args = ["ablate", "--method", "sat", "--dataset", "synthetic", "--experiment", "abl",
            "--grid", "method.hparams.use_norm_loss=true,false",
            "--set", f"output_dir={tmp_path}", "--set", "train.epochs=1", "--set", "regime.name=few_shot",
            "--set", "regime.shots=1", "--set", "eval.cam_curve_interval=0.05",
            "--set", "dataset.val_per_class=1"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    root = tmp_path / "abl"
    for label in ("use_norm_loss=true", "use_norm_loss=false"):
        run = root / label / "synthetic" / "sat-few_shot-seed0"
        assert json.loads((run / "ablation.json").read_text())["overrides"] == [
            f"method.hparams.use_norm_loss={label.split('=')[1]}"]
        assert f"use_norm_loss: {label.split('=')[1]}" in (run / "config.yaml").read_text()
    assert "| use_norm_loss | Synthetic Top-1 Loc |" in result.output
    assert (root / "report" / "ablation_0.png").is_file() and (root / "report" / "ablation.md").is_file()
