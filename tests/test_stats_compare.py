"""per_image.npz in run folders, `bench.py compare` on toy runs (seeds, policies, errors), score --per-image."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from engine_toy import TOY, make_dataset, overrides

from wsolbench.cli import main
from wsolbench.engine.runner import execute, plan_runs
from wsolbench.metrics import per_image
from wsolbench.stats.bootstrap import Scored, point_values
from wsolbench.stats.runs import CompareError, arms_from_paths, compare_arms, load_scored


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cmp")
    make_dataset(root / "data" / "synthetic")
    configs = plan_runs([TOY], ["synthetic"], seeds=[0, 1],
                        overrides=overrides(root / "data", root / "out", **{"eval.threshold_policy": "val"}))
    configs += plan_runs([TOY], ["synthetic"], seeds=[0], experiment="other",
                         overrides=overrides(root / "data", root / "out", **{"train.epochs": 1}))
    return execute(configs)


def test_runs_write_per_image_results_that_give_back_metrics_json(runs):
    path = runs[0]
    results = per_image.load(path / "per_image.npz")
    metrics = json.loads((path / "metrics.json").read_text())["results"]
    test_ids = (path.parents[3] / "data" / "synthetic" / "metadata" / "test" / "image_ids.txt").read_text().split()
    assert results.image_ids.tolist() == test_ids
    oracle = next(e for e in metrics if e["split"] == "test" and e["threshold_policy"] == "oracle-test")
    frozen = next(e for e in metrics if e["split"] == "test" and e["threshold_policy"] == "val")
    assert point_values(Scored(results)) == pytest.approx(oracle["metrics"], abs=1e-9)
    assert point_values(load_scored(path)) == pytest.approx(frozen["metrics"], abs=1e-9)


def test_compare_cli_prints_differences(runs):
    seed0, seed1, other = (str(p) for p in runs)
    result = CliRunner().invoke(main, ["compare", seed0, other, "--resamples", "200"])
    assert result.exit_code == 0, result.output
    assert "| metric | A | B | Δ (A − B) | 95 % interval of Δ | p |" in result.output
    assert "| maxboxaccv2 |" in result.output and "τ policy val" in result.output
    seeds = CliRunner().invoke(main, ["compare", seed0, seed1, other, "--resamples", "200"])
    assert seeds.exit_code == 0, seeds.output
    assert "2 seeds" in seeds.output and "redraws the seeds" in seeds.output


def test_compare_values_match_the_runs(runs):
    arms = arms_from_paths([runs[0], runs[2]], "oracle-test")
    result = compare_arms(arms, resamples=100)
    a, b = (point_values(load_scored(p, "oracle-test")) for p in (runs[0], runs[2]))
    assert result.differences[0]["maxboxacc"].value == pytest.approx(a["maxboxacc"] - b["maxboxacc"])
    low, high = result.differences[0]["maxboxacc"].low, result.differences[0]["maxboxacc"].high
    assert low <= high


def test_compare_errors_are_one_line(runs, tmp_path):
    single = CliRunner().invoke(main, ["compare", str(runs[0])])
    assert single.exit_code == 2 and "at least two configurations" in single.output
    bare = tmp_path / "bare"
    shutil.copytree(runs[2], bare)
    (bare / "per_image.npz").unlink()
    missing = CliRunner().invoke(main, ["compare", str(runs[0]), str(bare)])
    assert missing.exit_code == 2 and "per_image.npz: missing" in missing.output
    with pytest.raises(CompareError, match="several configurations"):
        arms_from_paths([runs[0].parents[2]])


def test_score_writes_per_image(tmp_path):
    rng = np.random.default_rng(0)
    meta = tmp_path / "meta"
    meta.mkdir()
    ids = [f"a/{k}.jpg" for k in range(3)]
    (meta / "image_ids.txt").write_text("\n".join(ids) + "\n")
    (meta / "class_labels.txt").write_text("".join(f"{i},{k}\n" for k, i in enumerate(ids)))
    (meta / "image_sizes.txt").write_text("".join(f"{i},100,50\n" for i in ids))
    (meta / "localization.txt").write_text("".join(f"{i},10,5,60,40\n" for i in ids))
    maps = tmp_path / "maps"
    for i in ids:
        (maps / i).parent.mkdir(parents=True, exist_ok=True)
        np.save(maps / f"{i}.npy", rng.random((224, 224)))
    out = tmp_path / "per_image.npz"
    result = CliRunner().invoke(main, ["score", "--scoremaps", str(maps), "--metadata", str(meta), "--output",
                                       str(tmp_path / "s.json"), "--cam-curve-interval", "0.1", "--workers", "1",
                                       "--per-image", str(out)])
    assert result.exit_code == 0, result.output
    record = json.loads((tmp_path / "s.json").read_text())
    saved = per_image.load(out)
    assert saved.image_ids.tolist() == ids and saved.labels.tolist() == [0, 1, 2] and not saved.classified
    assert point_values(Scored(saved))["maxboxaccv2"] == pytest.approx(record["value"])
    pxap = CliRunner().invoke(main, ["score", "--scoremaps", str(maps), "--metadata", str(meta), "--output",
                                     str(tmp_path / "p.json"), "--metric", "pxap", "--per-image", str(out)])
    assert pxap.exit_code == 2 and "--per-image records box IoUs" in pxap.output


def test_run_summary_shows_interval_half_widths(runs):
    from wsolbench.reports.summary import summary_frame, summary_markdown

    from wsolbench.stats.runs import run_intervals

    frame = summary_frame(runs)
    expected = run_intervals(runs[0])["maxboxaccv2"].half_width
    assert frame.loc[0, "MaxBoxAccV2 ±"] == pytest.approx(round(expected, 2))
    text = summary_markdown(frame)
    assert "MaxBoxAccV2 ±" not in text.splitlines()[0]
    assert f"{frame.loc[0, 'MaxBoxAccV2']:.2f} ± {frame.loc[0, 'MaxBoxAccV2 ±']:.2f}" in text
    assert "half-width of the 95 % bootstrap interval" in text
