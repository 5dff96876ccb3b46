"""End-to-end runs in process on the toy method and dataset: files, determinism, policies, errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from click.testing import CliRunner
from engine_toy import TOY, make_dataset, overrides
from wsolbench.reports.summary import write_summary

from wsolbench.cli import main
from wsolbench.config import ConfigError
from wsolbench.engine.runner import execute, plan_runs
from wsolbench.engine.train import TrainingDiverged


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    make_dataset(root / "synthetic")
    return root


def run(data_root, out, regimes=("full",), seeds=(0,), **extra):
    configs = plan_runs([TOY], ["synthetic"], regimes=list(regimes), seeds=list(seeds),
                        overrides=overrides(data_root, out, **extra))
    paths = execute(configs)
    write_summary(paths)  # what the CLI does after execute
    return paths


def test_run_writes_every_file(data_root, tmp_path) -> None:
    (path,) = run(data_root, tmp_path, **{"eval.threshold_policy": "val"})
    assert path == tmp_path / "toy" / "synthetic" / f"{TOY}-full-seed0"
    for name in ("config.yaml", "log.jsonl", "checkpoints/last.pt", "checkpoints/best.pt", "metrics.json",
                 "curves.csv", "samples.npz"):
        assert (path / name).is_file(), name
    assert not (path / ".lock").exists()
    log = [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]
    steps = [r for r in log if r.get("kind") != "epoch"]
    assert [r["step"] for r in steps] == list(range(1, 9))  # 16 images / batch 4 × 2 epochs
    assert all({"step", "epoch", "lr", "images_per_s", "loss", "ce"} <= set(r) for r in log)
    epochs = [r for r in log if r.get("kind") == "epoch"]
    assert [r["epoch"] for r in epochs] == [1, 2] and "val_maxboxaccv2" in epochs[0]

    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["method"] == TOY and metrics["regime"] == "full" and metrics["seed"] == 0
    assert metrics["trainable_params"] == sum(p.numel() for p in torch.load(
        path / "checkpoints/last.pt", weights_only=True)["model"].values())
    keys = [(e["split"], e["threshold_policy"]) for e in metrics["results"]]
    assert keys == [("val", "oracle-test"), ("test", "oracle-test"), ("test", "val")]
    val, oracle, frozen = metrics["results"]
    assert {"maxboxacc", "maxboxaccv2", "top1_loc", "top1_cls", "gt_known_loc"} <= set(oracle["metrics"])
    assert frozen["thresholds"] == val["thresholds"]  # τ chosen on val, frozen for test
    assert oracle["metrics"]["maxboxaccv2"] >= frozen["metrics"]["maxboxaccv2"]

    curves = pd.read_csv(path / "curves.csv")
    assert {"split", "eval_protocol", "curve", "iou_threshold", "threshold", "value"} <= set(curves.columns)
    assert set(curves["split"]) == {"val", "test"}
    samples = np.load(path / "samples.npz")
    assert samples["images"].shape == (8, 32, 32, 3) and samples["images"].dtype == np.uint8
    assert samples["maps"].shape == (8, 32, 32) and samples["maps"].dtype == np.float32
    assert samples["pred_boxes"].shape == samples["gt_boxes"].shape == (8, 4)
    assert float(samples["threshold"]) == frozen["thresholds"]["maxboxacc"]
    assert (tmp_path / "toy" / "summary.md").read_text().startswith("| method | dataset | regime | seed")


def test_runs_are_deterministic_and_regimes_differ(data_root, tmp_path) -> None:
    first = run(data_root, tmp_path / "a", regimes=["full", "parameter_efficient"])
    (second,) = run(data_root, tmp_path / "b")
    assert (first[0] / "metrics.json").read_text() == (second / "metrics.json").read_text()
    full, efficient = (json.loads((p / "metrics.json").read_text()) for p in first)
    assert efficient["trainable_params"] == 16 * 2 + 2 < full["trainable_params"]
    last = torch.load(first[1] / "checkpoints/last.pt", weights_only=True)["model"]
    start = torch.load(first[0] / "checkpoints/last.pt", weights_only=True)["model"]
    assert not torch.equal(last["head.weight"], start["head.weight"])


def test_few_shot_records_its_images(data_root, tmp_path) -> None:
    (path,) = run(data_root, tmp_path, regimes=["few_shot"], **{"regime.shots": 2})
    ids = (path / "few_shot_ids.txt").read_text().split()
    assert len(ids) == 4
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["few_shot"] == {"shots": 2, "seed": 0, "images": 4, "ids_file": "few_shot_ids.txt"}
    steps = [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]
    assert max(r["step"] for r in steps) == 2  # 4 images, batch 4, 2 epochs


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(data_root, tmp_path) -> None:
    extra = {"train.lr": 1e30, "train.optimizer": "sgd", "train.checkpoint_every_steps": 1}
    with pytest.raises(TrainingDiverged, match=r"at step (\d+)") as caught:
        run(data_root, tmp_path, **extra)
    step = int(caught.value.args[0].split("at step ")[1].split()[0])
    path = tmp_path / "toy" / "synthetic" / f"{TOY}-full-seed0"
    state = torch.load(path / "checkpoints/last.pt", weights_only=True)
    assert state["global_step"] == step - 1
    assert not (path / "metrics.json").exists() and not (path / ".lock").exists()


def test_config_errors_fail_before_any_work(data_root, tmp_path) -> None:
    with pytest.raises(ConfigError, match="train.epoch"):
        run(data_root, tmp_path, **{"train.epoch": 2})
    with pytest.raises(ValueError, match="divisible"):
        run(data_root, tmp_path, **{"train.batch_size": 5, "train.grad_accum": 2})
    settings = overrides(data_root, tmp_path, **{"train.optimizer": "adam"})
    args = ["run", "--methods", TOY, "--dataset", "synthetic", *[a for s in settings for a in ("--set", s)]]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2 and "train.optimizer" in result.output and "adamw" in result.output
    assert not (tmp_path / "toy").exists()
    missing = CliRunner().invoke(main, ["run", "--methods", TOY, "--dataset", "cub", "--set",
                                        f"dataset.data_root={tmp_path}", "--set", f"output_dir={tmp_path}"])
    assert missing.exit_code == 2 and "bench.py prepare cub --source" in missing.output
    assert list(tmp_path.iterdir()) == []


def test_finished_run_is_reused_and_a_different_config_errors_with_the_diff(data_root, tmp_path) -> None:
    (path,) = run(data_root, tmp_path, **{"train.epochs": 1})
    before = (path / "metrics.json").read_text(), (path / "checkpoints/last.pt").stat().st_mtime_ns
    assert run(data_root, tmp_path, **{"train.epochs": 1}) == [path]  # no --resume needed
    assert ((path / "metrics.json").read_text(), (path / "checkpoints/last.pt").stat().st_mtime_ns) == before
    configs = plan_runs([TOY], ["synthetic"], overrides=overrides(data_root, tmp_path, **{"train.epochs": 1}))
    assert execute(configs, resume=True) == [path] and (path / "metrics.json").read_text() == before[0]
    for resume in (False, True):
        changed = plan_runs([TOY], ["synthetic"], overrides=overrides(data_root, tmp_path, **{"train.epochs": 3}))
        with pytest.raises(ValueError, match=r"different config \(saved → now\):\n  train\.epochs: 1 → 3\n"):
            execute(changed, resume=resume)
    assert (path / "metrics.json").read_text() == before[0]


def test_cli_run_twice_reprints_the_table(data_root, tmp_path) -> None:
    settings = [a for s in overrides(data_root, tmp_path, **{"train.epochs": 1}) for a in ("--set", s)]
    args = ["run", "--methods", TOY, "--dataset", "synthetic", *settings]
    first = CliRunner().invoke(main, args)
    assert first.exit_code == 0, first.output
    second = CliRunner().invoke(main, args)
    assert second.exit_code == 0, second.output
    table = [line for line in first.stdout.splitlines() if line.startswith("|")]
    assert len(table) == 3, first.output
    assert table == [line for line in second.stdout.splitlines() if line.startswith("|")]


def test_folder_of_a_run_that_died_before_its_first_checkpoint_does_not_block(data_root, tmp_path) -> None:
    path = tmp_path / "toy" / "synthetic" / f"{TOY}-full-seed0"
    path.mkdir(parents=True)
    (path / "config.yaml").write_text("left: by a run that failed before training\n")
    (path / "log.jsonl").write_text('{"step": 1, "loss": 9}\n')
    assert run(data_root, tmp_path, **{"train.epochs": 1}) == [path]
    assert (path / "metrics.json").is_file() and "left" not in (path / "config.yaml").read_text()
    assert all(json.loads(line).get("loss") != 9 for line in (path / "log.jsonl").read_text().splitlines())


def test_interrupted_run_needs_resume(data_root, tmp_path) -> None:
    (path,) = run(data_root, tmp_path, **{"train.epochs": 1})
    (path / "metrics.json").unlink()  # as if it died after its last checkpoint
    with pytest.raises(ValueError, match="interrupted run of this config; pass --resume"):
        run(data_root, tmp_path, **{"train.epochs": 1})
    configs = plan_runs([TOY], ["synthetic"], overrides=overrides(data_root, tmp_path, **{"train.epochs": 1}))
    assert execute(configs, resume=True) == [path] and (path / "metrics.json").is_file()


def test_evaluate_official_checkpoint(data_root, tmp_path) -> None:
    (path,) = run(data_root, tmp_path, **{"train.epochs": 1})
    ours = torch.load(path / "checkpoints/last.pt", weights_only=True)["model"]
    official = tmp_path / "official.pth.tar"
    torch.save({"model": {f"module.{k}": v for k, v in ours.items()}, "best_thr": 0.35, "epoch": 1}, official)
    settings = [a for s in overrides(data_root, tmp_path) for a in ("--set", s)]

    def evaluate(checkpoint, output, *extra):
        args = ["evaluate", "--method", TOY, "--dataset", "synthetic", "--checkpoint", str(checkpoint),
                "--protocol", "sat", "--output", str(output), *settings, *extra]
        return CliRunner().invoke(main, args)

    result = evaluate(official, tmp_path / "scored")
    assert result.exit_code == 0, result.output
    assert "thresholds 0.4" in result.output and "ten-crop classification" in result.output
    metrics = json.loads((tmp_path / "scored" / "metrics.json").read_text())
    assert metrics["regime"] == "external"
    assert {e["eval_protocol"] for e in metrics["results"]} == {"sat"}
    # SAT's evaluator.py defaults: τ list [0.4] read with SAT's rule, ten-crop classification
    keys = [(e["split"], e["threshold_policy"]) for e in metrics["results"]]
    assert keys == [("val", "oracle-test"), ("test", "oracle-test"), ("test", "fixed")]
    assert set(metrics["results"][2]["thresholds"].values()) == {0.4}
    saved = yaml.safe_load((tmp_path / "scored" / "config.yaml").read_text())["eval"]
    assert (saved["thresholds"], saved["ten_crop"], saved["threshold_policy"]) == ([0.4], True, "fixed")
    # the same weights scored through our own checkpoint give the same numbers
    again = evaluate(path / "checkpoints/last.pt", tmp_path / "ours")
    assert again.exit_code == 0, again.output
    mine = json.loads((tmp_path / "ours" / "metrics.json").read_text())["results"]
    assert [e["checkpoint"] for e in metrics["results"]] == [str(official)] * 3
    assert [{**e, "checkpoint": ""} for e in mine] == [{**e, "checkpoint": ""} for e in metrics["results"]]
    single = evaluate(official, tmp_path / "single", "--set", "eval.ten_crop=false")  # --set overrides
    assert single.exit_code == 0, single.output
    assert "single-view classification" in single.output
    one, ten = (json.loads((tmp_path / d / "metrics.json").read_text())["results"][2]["metrics"]
                for d in ("single", "ours"))
    assert ten["maxboxaccv2"] == one["maxboxaccv2"] and ten["gt_known_loc"] == one["gt_known_loc"]
    assert "top1_cls" in ten and "top1_cls" in one
    bad = tmp_path / "bad.pt"
    torch.save({"model": {"head.weight": torch.zeros(1)}}, bad)
    result = evaluate(bad, tmp_path / "bad")
    assert result.exit_code == 2 and "missing keys" in result.output


def test_best_checkpoint_is_chosen_on_val(data_root, tmp_path) -> None:
    (path,) = run(data_root, tmp_path, **{"eval.checkpoint": "best", "train.epochs": 3})
    metrics = json.loads((path / "metrics.json").read_text())
    assert {e["checkpoint"] for e in metrics["results"]} == {"best"}
    log = [json.loads(line) for line in (path / "log.jsonl").read_text().splitlines()]
    val = [r["val_maxboxaccv2"] for r in log if r.get("kind") == "epoch"]
    assert metrics["best"] == {"metric": "maxboxaccv2", "value": max(val), "epoch": val.index(max(val)) + 1}
    assert torch.load(path / "checkpoints/best.pt", weights_only=True)["epoch"] == metrics["best"]["epoch"]
    assert metrics["results"][0]["metrics"]["maxboxaccv2"] == max(val)  # val scored with the best weights


def test_a_run_saved_with_the_old_protocol_key_is_reused_and_reported(data_root, tmp_path) -> None:
    """Runs written before `protocol:` became `regime:` (config.yaml, metrics.json, checkpoints) stay readable."""
    from wsolbench.reports.runs import load_run_frame

    from wsolbench.config import from_dict
    from wsolbench.engine.checkpoint import checkpoint_config

    (path,) = run(data_root, tmp_path, regimes=["few_shot"], **{"regime.shots": 2, "train.epochs": 1})
    config = yaml.safe_load((path / "config.yaml").read_text())
    config["protocol"] = config.pop("regime")
    (path / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    metrics = json.loads((path / "metrics.json").read_text())
    metrics = {("protocol" if key == "regime" else key): value for key, value in metrics.items()}
    (path / "metrics.json").write_text(json.dumps(metrics))
    state = torch.load(path / "checkpoints/last.pt", weights_only=True)
    state["config"] = config
    torch.save(state, path / "checkpoints/last.pt")
    old_metrics = (path / "metrics.json").read_text()

    assert run(data_root, tmp_path, regimes=["few_shot"], **{"regime.shots": 2, "train.epochs": 1}) == [path]
    assert (path / "metrics.json").read_text() == old_metrics  # reused as finished, not a conflict
    frame = load_run_frame([path])
    assert set(frame["regime"]) == {"few_shot"} and set(frame["variant"]) == {"2-shot"}
    assert from_dict(checkpoint_config(path / "checkpoints/last.pt")).regime.shots == 2
