"""Names typed on the command line or passed to the API: suggestions, flag names, numeric experiments."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner
from engine_toy import TOY, make_dataset, overrides

from wsolbench.cli import main
from wsolbench.config import ConfigError, resolve
from wsolbench.contracts.method import create_method
from wsolbench.metrics.protocols import get_protocol
from wsolbench.registry import RegistryError, closest


def test_closest_ignores_case_and_keeps_the_valid_spelling() -> None:
    assert closest("SAT", ["cam", "sat", "ts_cam"]) == " (did you mean 'sat'?)"
    assert closest("Ts_Cam", ["cam", "sat", "ts_cam"]) == " (did you mean 'ts_cam'?)"
    assert closest("satt", ["cam", "sat"]) == " (did you mean 'sat'?)"
    assert closest("nosuch", ["cam", "sat"]) == ""


def test_api_suggests_the_closest_name() -> None:
    with pytest.raises(RegistryError, match=r"unknown method 'SAT' \(did you mean 'sat'\?\); valid: .*ts_cam"):
        create_method("SAT", num_classes=2)
    with pytest.raises(ConfigError, match=r"unknown dataset 'CUB' \(did you mean 'cub'\?\); valid: "):
        resolve(method="sat", dataset="CUB")
    with pytest.raises(ValueError, match=r"unknown evaluation protocol 'TS_CAM' \(did you mean 'ts_cam'\?\)"):
        get_protocol("TS_CAM")
    with pytest.raises(ConfigError, match=r"eval.protocol: unknown evaluation protocol 'sats' \(did you mean 'sat'"):
        resolve(method="sat", dataset="synthetic", overrides=["eval.protocol=sats"])  # before any training


@pytest.mark.parametrize("args, flag, message", [
    (["run", "--methods", "nosuch"], "--methods", "unknown method 'nosuch'; valid: cam, center, "),
    (["run", "--methods", "cam,SAT"], "--methods", "unknown method 'SAT' (did you mean 'sat'?)"),
    (["run", "--methods", "sat", "--dataset", "CUB"], "--dataset", "unknown dataset 'CUB' (did you mean 'cub'?)"),
    (["run", "--methods", "sat", "--regimes", "ful"], "--regimes", "(did you mean 'full'?)"),
    (["train", "--method", "Sat"], "--method", "unknown method 'Sat' (did you mean 'sat'?)"),
    (["train", "--method", "sat", "--regime", "fewshot"], "--regime", "(did you mean 'few_shot'?)"),
    (["evaluate", "--method", "sat", "--checkpoint", "x.pt", "--protocol", "SAT"], "--protocol",
     "unknown evaluation protocol 'SAT' (did you mean 'sat'?)"),
    (["evaluate", "--method", "sat", "--checkpoint", "x.pt", "--threshold-policy", "oracle"],
     "--threshold-policy", "(did you mean 'oracle-test'?)"),
    (["ablate", "--method", "SCM"], "--method", "(did you mean 'scm'?)"),
    (["prepare", "CUB"], "DATASET", "unknown dataset 'CUB' (did you mean 'cub'?)"),
])
def test_cli_names_the_flag_and_suggests(tmp_path, args, flag, message) -> None:
    result = CliRunner().invoke(main, [*args, "--set", f"output_dir={tmp_path}"] if args[0] != "prepare" else args)
    assert result.exit_code == 2
    assert f"Invalid value for {flag}: unknown " in result.output and message in result.output
    assert list(tmp_path.iterdir()) == []


def test_numeric_experiment_name(tmp_path) -> None:
    make_dataset(tmp_path / "data" / "synthetic")
    settings = [a for s in overrides(tmp_path / "data", tmp_path / "runs", **{"train.epochs": 1})
                for a in ("--set", s)]
    result = CliRunner().invoke(main, ["run", "--methods", TOY, "--dataset", "synthetic", *settings,
                                       "--experiment", "2024"])
    assert result.exit_code == 0, result.output
    path = tmp_path / "runs" / "2024" / "synthetic" / f"{TOY}-full-seed0"
    assert json.loads((path / "metrics.json").read_text())["experiment"] == "2024"
    assert "experiment: '2024'" in (path / "config.yaml").read_text()


@pytest.mark.parametrize("args, old, new", [
    (["train", "--method", "sat", "--protocol", "few_shot"], "--protocol", "--regime"),
    (["run", "--methods", "sat", "--protocols", "full,few_shot"], "--protocols", "--regimes"),
])
def test_renamed_regime_flags_are_refused_in_one_line(tmp_path, args, old, new) -> None:
    result = CliRunner().invoke(main, [*args, "--dry-run", "--set", f"output_dir={tmp_path}"])
    assert result.exit_code == 2
    assert result.output.splitlines() == [f"error: {old} is now {new} (the training regime); evaluation protocols "
                                          "are `evaluate --protocol` and the config key eval.protocol"]
    listing = CliRunner().invoke(main, ["list"])
    assert "training regimes: full, parameter_efficient, few_shot" in listing.output
    assert old not in CliRunner().invoke(main, [args[0], "--help"]).output
