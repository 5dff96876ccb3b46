"""Figures and the full `bench.py report` output for the hand-made fixture experiment."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image
from test_reports_fixtures import write_experiment
from wsolbench.reports import plots
from wsolbench.reports.runs import load_curves, load_logs, load_run_frame, load_samples, loss_terms
from wsolbench.reports.tables import select_entries

from wsolbench.cli import main

FIGURES = ["boxacc_synthetic", "pxprec_pxrec_synthetic", "qualitative_synthetic", "training_synthetic",
           "few_shot_synthetic", "parameter_efficient_synthetic"]


@pytest.fixture(scope="module")
def experiment(tmp_path_factory):
    return write_experiment(tmp_path_factory.mktemp("runs"))


def _assert_figure(png) -> None:
    assert png.is_file() and png.with_suffix(".pdf").read_bytes().startswith(b"%PDF")
    pixels = np.asarray(Image.open(png).convert("L"), dtype=float)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100 and pixels.std() > 5  # drawn, not blank


def test_artifact_loaders(experiment) -> None:
    selected = select_entries(load_run_frame([experiment]))
    curves = load_curves(selected)
    assert set(curves["curve"]) == {"boxacc_v2", "pxprec_pxrec"}
    assert len(curves[curves["curve"] == "boxacc_v2"]) == 7 * 10 * 3
    logs = load_logs(selected)
    assert len(logs) == 7 * 5 and loss_terms(logs) == ["loss", "area", "cls", "norm"]
    samples = load_samples(selected)  # one per (method, backbone, variant): seed 1 of sat full is left out
    assert len(samples) == 6 and all(info["seed"] == 0 for info, _ in samples)


def test_bar_chart(tmp_path) -> None:
    png = plots.bar_chart(["a=1", "a=2"], [50.0, 60.0], [1.0, None], "MaxBoxAccV2 (%)", "t", tmp_path, "bar")
    _assert_figure(png)


def test_no_data_means_no_figure(tmp_path) -> None:
    import pandas as pd

    assert plots.boxacc_curves(pd.DataFrame(), tmp_path) == []
    assert plots.training_curves(pd.DataFrame(), tmp_path) == []
    assert list(tmp_path.iterdir()) == []


def test_report_command_writes_everything(experiment) -> None:
    result = CliRunner().invoke(main, ["report", str(experiment), "--style", "paper", "--with-paper"])
    assert result.exit_code == 0, result.output
    out = experiment / "report"
    lines = result.output.splitlines()
    assert lines[0].startswith("| Method | Backbone | Synthetic Top-1 Loc |")
    rows = [line.split(" | ")[:2] for line in lines[2:8]]
    assert rows == [["| CAM", "ResNet18"], ["| SAT", "DeiT-T"], ["| SAT (1 block)", "DeiT-T"],
                    ["| SAT (2 blocks)", "DeiT-T"], ["| SAT (1-shot)", "DeiT-T"],
                    ["| SAT (5-shot)", "DeiT-T"]]
    sat = "| SAT | DeiT-T | **51.00 ± 1.41** | **70.50 ± 0.71** | **61.00 ± 1.41** | – | 80.50 ± 0.71 |"
    assert sat in lines
    main_table = result.output.split("\n\n")[0]
    assert "(paper)" not in main_table and len(main_table.splitlines()) == 2 + 6  # none on synthetic
    assert "| SAT (paper) | DeiT-S | **80.96** |" in result.output  # the published table
    for name in ["table.md", "table.tex", "table.csv", "index.html"]:
        assert (out / name).is_file(), name
    for stem in FIGURES:  # every plot kind has data in the fixture
        _assert_figure(out / f"{stem}.png")
    expected = sorted(f"{s}.{e}" for s in FIGURES for e in ("pdf", "png"))
    assert sorted(p.name for p in out.glob("*.p*")) == expected
    assert (out / "table.md").read_text() + "\n" in result.output


def test_report_errors_are_one_clear_line(tmp_path) -> None:
    result = CliRunner().invoke(main, ["report", str(tmp_path)])
    assert result.exit_code == 2
    assert f"error: no runs (folders with metrics.json) under {tmp_path}" in result.output
