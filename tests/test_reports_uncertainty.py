"""Report uncertainty: † marks and ± half-widths agree with the paired bootstrap; threshold-honesty view."""

from __future__ import annotations

import json
import shutil

import pytest
from engine_toy import TOY, make_dataset, overrides
from wsolbench.reports.report import build_report
from wsolbench.reports.runs import load_curves, load_run_frame
from wsolbench.reports.tables import PAPER, TIE_MARK, build_table, select_entries, to_latex, to_markdown
from wsolbench.reports.thresholds import run_values, threshold_curves, threshold_table
from wsolbench.reports.uncertainty import annotate, half_width

from wsolbench.engine.runner import execute, plan_runs
from wsolbench.stats.bootstrap import point_values
from wsolbench.stats.runs import arms_from_paths, compare_arms, load_scored, run_intervals


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("unc")
    make_dataset(root / "data" / "synthetic")
    configs = plan_runs([TOY], ["synthetic"], seeds=[0, 1], experiment="a",
                        overrides=overrides(root / "data", root / "out", **{"eval.threshold_policy": "val"}))
    configs += plan_runs([TOY], ["synthetic"], seeds=[0], experiment="b",
                         overrides=overrides(root / "data", root / "out", **{"train.epochs": 1}))
    return execute(configs)


def test_marks_and_half_widths_follow_the_paired_bootstrap(runs):
    selected = select_entries(load_run_frame([runs[0].parents[2]]))
    table = build_table(selected, PAPER)
    annotate(table, selected, intervals=True)
    rows = {row.experiment: row for row in table.rows}
    column = ("synthetic", "maxboxaccv2")
    single = rows["b"].cells[column]
    assert single.half_width == pytest.approx(run_intervals(runs[2])["maxboxaccv2"].half_width)
    assert rows["a"].cells[column].half_width == pytest.approx(half_width(runs[:2], "maxboxaccv2",
                                                                          ["val", "val"]))
    a, b = rows["a"].cells[column], rows["b"].cells[column]
    best, other = (a, b) if round(a.mean, 2) >= round(b.mean, 2) else (b, a)
    assert not best.tied
    comparison = compare_arms(arms_from_paths(runs))
    assert other.tied == (comparison.differences[0]["maxboxaccv2"].p_value >= 0.05)
    text = to_markdown(table)
    assert "half-width of the 95 % bootstrap interval" in text and f"{TIE_MARK}: not significantly" in text
    assert f"{single.mean:.2f}{TIE_MARK if single.tied else ''} ± {single.half_width:.2f}" in text
    assert r"$^\dagger$" in to_latex(table)


def test_threshold_table_oracle_val_and_gap(runs, tmp_path):
    selected = select_entries(load_run_frame([runs[0].parents[2]]))
    table = threshold_table(selected, load_run_frame([runs[0].parents[2]]))
    entries = json.loads((runs[0] / "metrics.json").read_text())["results"]
    oracle = next(e for e in entries if e["split"] == "test" and e["threshold_policy"] == "oracle-test")
    frozen = next(e for e in entries if e["split"] == "test" and e["threshold_policy"] == "val")
    row = next(r for r in table.rows if r.labels[0] == "a" and r.labels[2] == "0")
    cells = {key[1]: cell.mean for key, cell in row.cells.items()}
    assert cells["MaxBoxAccV2 oracle τ"] == oracle["metrics"]["maxboxaccv2"]
    assert cells["MaxBoxAccV2 val τ"] == frozen["metrics"]["maxboxaccv2"]
    assert cells["MaxBoxAccV2 gap"] == pytest.approx(oracle["metrics"]["maxboxaccv2"]
                                                     - frozen["metrics"]["maxboxaccv2"])
    # a run scored under oracle-test only: the val-τ value comes from its per-image results
    copy = tmp_path / "copy"
    shutil.copytree(runs[0], copy)
    data = json.loads((copy / "metrics.json").read_text())
    data["results"] = [e for e in data["results"] if e["threshold_policy"] != "val"]
    (copy / "metrics.json").write_text(json.dumps(data))
    values = run_values(load_run_frame([copy]), copy, "wsolevaluation")
    assert values["maxboxaccv2"][1] == pytest.approx(frozen["metrics"]["maxboxaccv2"], abs=1e-9)
    assert values["top1_loc"][1] == pytest.approx(point_values(load_scored(runs[0], "val"))["top1_loc"])
    (png,) = threshold_curves(selected, load_curves(selected), tmp_path)
    assert png.is_file() and png.with_suffix(".pdf").is_file()


def test_report_cli_path_writes_the_threshold_section(runs, tmp_path):
    result = build_report(runs[0].parents[2], out=tmp_path / "rep", intervals=True)
    assert "MaxBoxAccV2 gap" in result.markdown
    assert (tmp_path / "rep" / "thresholds_synthetic.png").is_file()
    assert "Threshold choice" in (tmp_path / "rep" / "index.html").read_text()


def test_report_cli_intervals_flag(runs, tmp_path):
    from click.testing import CliRunner

    from wsolbench.cli import main

    result = CliRunner().invoke(main, ["report", str(runs[0].parents[2]), "--intervals", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "half-width of the 95 % bootstrap interval" in result.output
