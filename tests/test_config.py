"""Config layering and validation: defaults ← method YAML ← dataset YAML ← user YAML ← --set."""

from __future__ import annotations

import re

import pytest
import yaml

from wsolbench import config as cfg
from wsolbench.config import ConfigError, ExperimentConfig, merge, parse_set, resolve
from wsolbench.errors import WsolbenchError


def test_parse_set_nests_and_parses_yaml_scalars() -> None:
    assert parse_set("train.lr=1e-4") == {"train": {"lr": 1e-4}}
    assert parse_set("eval.iou_thresholds=[30,50]") == {"eval": {"iou_thresholds": [30, 50]}}
    assert parse_set("train.compile=true") == {"train": {"compile": True}}
    assert parse_set("method.backbone=deit_tiny_patch16_224") == {"method": {"backbone": "deit_tiny_patch16_224"}}


def test_parse_set_rejects_missing_equals() -> None:
    with pytest.raises(ConfigError, match="expected key=value"):
        parse_set("train.lr")


def test_unknown_key_names_the_closest_valid_one() -> None:
    config = ExperimentConfig()
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'.*did you mean 'train\.lr'"):
        merge(config, {"train": {"lrr": 0.1}}, "x.yaml: ")


def test_wrong_type_names_key_and_expected_type() -> None:
    config = ExperimentConfig()
    with pytest.raises(ConfigError, match=r"x\.yaml: train\.epochs: expected an integer, got 'many'"):
        merge(config, {"train": {"epochs": "many"}}, "x.yaml: ")
    with pytest.raises(ConfigError, match=r"train\.compile: expected true or false"):
        merge(config, {"train": {"compile": "yes"}})


def test_int_is_accepted_for_float_and_none_for_optional() -> None:
    config = ExperimentConfig()
    merge(config, {"train": {"lr": 1, "clip_grad": None}, "method": {"img_size": 64}})
    assert config.train.lr == 1.0 and isinstance(config.train.lr, float)
    assert config.train.clip_grad is None and config.method.img_size == 64


def test_layers_apply_in_order(tmp_path, monkeypatch) -> None:
    """Method YAML (defaults then the any/<dataset> recipe) ← dataset YAML ← user YAML ← --set, last wins."""
    methods = tmp_path / "methods"
    datasets = tmp_path / "datasets"
    methods.mkdir()
    datasets.mkdir()
    (methods / "sat.yaml").write_text(
        yaml.safe_dump(
            {
                "defaults": {"train": {"lr": 0.1, "epochs": 3, "batch_size": 7}},
                "recipes": {"any/synthetic": {"train": {"lr": 0.2}}},
            }
        )
    )
    (datasets / "synthetic.yaml").write_text(yaml.safe_dump({"dataset": {"crop_size": 64, "resize_size": 72}}))
    monkeypatch.setattr(cfg, "plugin_yaml", lambda kind, name: tmp_path / kind / f"{name}.yaml")
    monkeypatch.setattr(cfg, "validate", lambda config: None)
    config = resolve(
        method="sat",
        dataset="synthetic",
        user={"train": {"epochs": 5}},
        user_source="user.yaml",
        overrides=["train.batch_size=9"],
    )
    assert config.train.lr == 0.2  # per-dataset section beats the method defaults
    assert config.train.epochs == 5  # user YAML beats the method YAML
    assert config.train.batch_size == 9  # --set beats everything
    assert config.dataset.crop_size == 64  # dataset YAML
    assert config.method.name == "sat" and config.dataset.name == "synthetic"


def test_unknown_key_in_method_yaml_names_the_file(tmp_path, monkeypatch) -> None:
    (tmp_path / "methods").mkdir()
    bad = tmp_path / "methods" / "sat.yaml"
    bad.write_text(yaml.safe_dump({"defaults": {"train": {"epoch": 3}}}))
    monkeypatch.setattr(cfg, "plugin_yaml", lambda kind, name: tmp_path / kind / f"{name}.yaml")
    with pytest.raises(ConfigError, match=rf"{bad}: unknown config key 'train\.epoch'.*'train\.epochs'"):
        resolve(method="sat", dataset="synthetic")


def test_bad_values_fail_with_the_key(monkeypatch) -> None:
    monkeypatch.setattr(cfg, "method_layer", lambda method, dataset: ({}, "none"))
    cases = {
        "train.schedule=cosin": r"train\.schedule: 'cosin' is not one of .*did you mean 'cosine'",
        "train.epochs=0": r"train\.epochs: must be positive",
        "eval.cam_curve_interval=1.5": r"eval\.cam_curve_interval: must lie in \(0, 1\)",
        "eval.threshold_policy=fixed": r"eval\.thresholds: the 'fixed' threshold policy needs",
        "regime.name=few_shot": r"regime\.shots: the few_shot regime needs",
    }
    for assignment, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            resolve(method="center", dataset="synthetic", overrides=[assignment])


def test_unknown_method_and_hparam_are_named(monkeypatch) -> None:
    monkeypatch.setattr(cfg, "method_layer", lambda method, dataset: ({}, "none"))
    with pytest.raises(ConfigError, match=r"method\.name: unknown method 'sta'.*did you mean 'sat'"):
        resolve(method="sta", dataset="synthetic")
    with pytest.raises(ConfigError, match=r"method\.hparams\.area_treshold.*did you mean 'area_threshold'"):
        resolve(method="sat", dataset="synthetic", overrides=["method.hparams.area_treshold=0.3"])


def test_resolved_config_round_trips_through_yaml() -> None:
    config = resolve(method="sat", dataset="synthetic", overrides=["train.lr=0.003", "seed=4"])
    again = cfg.from_dict(yaml.safe_load(cfg.dump(config)), "config.yaml: ")
    assert again == config


def test_set_reads_text_against_the_key_type() -> None:
    """YAML would make these an int, False and a float; the keys take text, so the text is kept."""
    assert parse_set("experiment=2024") == {"experiment": "2024"}
    assert parse_set("train.amp=off") == {"train": {"amp": "off"}}
    assert parse_set("experiment=1e-4") == {"experiment": "1e-4"}
    assert parse_set("method.backbone=null") == {"method": {"backbone": None}}
    assert parse_set("method.pretrained=true") == {"method": {"pretrained": True}}
    assert parse_set("method.hparams.area_threshold=1e-1") == {"method": {"hparams": {"area_threshold": 0.1}}}
    assert parse_set("train.epochs=many") == {"train": {"epochs": "many"}}  # left for validation to name


def test_set_experiment_and_amp_resolve() -> None:
    config = resolve(method="sat", dataset="synthetic", overrides=["experiment=2024", "train.amp=off"])
    assert config.experiment == "2024" and config.train.amp == "off"


def test_typed_overrides_are_data_and_errors_name_their_key() -> None:
    config = resolve(method="sat", dataset="synthetic",
                     overrides=["seed=1", ("seed", 7), ("experiment", "2024"), ("regime.name", "few_shot"),
                                "regime.shots=2"])
    assert (config.seed, config.experiment, config.regime.name, config.regime.shots) == (7, "2024", "few_shot", 2)
    with pytest.raises(ConfigError, match=r"^seed='7': seed: expected an integer, got '7'$"):
        resolve(method="sat", dataset="synthetic", overrides=[("seed", "7")])


def test_errors_name_source_key_and_range() -> None:
    cases = {
        "--set train.lr=-1": r"^--set train\.lr=-1: train\.lr: must be ≥ 0, got -1",
        "--set eval.iou_thresholds=[50,150]": r"eval\.iou_thresholds\[1\]: must lie in \(0, 100\], got 150$",
        "--set eval.thresholds=[1.0]": r"eval\.thresholds\[0\]: must lie in \[0, 1\), got 1\.0$",
        "--set train.lr_decay_every=x": r"train\.lr_decay_every: expected an integer or a list, got 'x'$",
        "--set train=3": r"train: expected a mapping, got 3$",
        "--set eval.protocol=7": r"eval\.protocol: unknown evaluation protocol '7'",  # the key takes text
    }
    for assignment, message in cases.items():
        with pytest.raises(ConfigError, match=message):
            resolve(method="sat", dataset="synthetic", overrides=[assignment.removeprefix("--set ")])
    with pytest.raises(ConfigError, match=r"^eval\.protocol=7: eval\.protocol: expected a string, got 7$"):
        resolve(method="sat", dataset="synthetic", overrides=[("eval.protocol", 7)])


def test_cross_key_checks_wait_for_the_last_layer() -> None:
    config = resolve(method="sat", dataset="synthetic",
                     overrides=["eval.threshold_policy=fixed", "eval.thresholds=[0.5]"])
    assert config.eval.thresholds == [0.5]
    with pytest.raises(ConfigError, match=r"^dataset\.resize_size \(64\) must be ≥ dataset\.crop_size \(65\)$"):
        resolve(method="sat", dataset="synthetic", overrides=["dataset.resize_size=64", "dataset.crop_size=65"])
    with pytest.raises(ConfigError, match=r"train\.lr_decay_every: the 'step' schedule needs positive decay"):
        resolve(method="sat", dataset="synthetic", overrides=["train.schedule=step", "train.lr_decay_every=[]"])


def test_choices_come_from_the_models() -> None:
    assert cfg.CHOICES["train.amp"] == ("auto", "off", "bf16", "fp16")
    assert cfg.CHOICES["regime.name"] == ("full", "parameter_efficient", "few_shot")
    assert cfg.CHOICES["eval.threshold_policy"] == ("oracle-test", "fixed", "val")


def test_a_config_saved_by_the_previous_code_loads_and_dumps_identically(tmp_path) -> None:
    """tests/data/saved_config.yaml is a run folder's config.yaml written before the move to pydantic (and
    before `protocol:` was renamed `regime:`, which it is read as)."""
    from pathlib import Path

    text = (Path(__file__).parent / "data" / "saved_config.yaml").read_text()
    config = cfg.from_dict(yaml.safe_load(text), "config.yaml: ")
    assert cfg.dump(config) == text.replace("\nprotocol:\n", "\nregime:\n")
    assert (config.regime.name, config.eval.protocol) == ("full", "wsolevaluation")
    older = yaml.safe_load(text)
    del older["train"]["checkpoint_every_steps"]  # a key added later takes its default
    assert cfg.from_dict(older) == config


def test_cli_set_and_typed_flags_reach_the_config(tmp_path, monkeypatch) -> None:
    from click.testing import CliRunner

    from wsolbench.cli import main

    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(main, ["train", "--method", "sat", "--dry-run", "--seed", "3",
                                       "--set", "experiment=2024", "--set", "train.amp=off"])
    assert result.exit_code == 0, result.output
    (document,) = [d for d in yaml.safe_load_all(result.output) if d]
    assert (document["experiment"], document["seed"], document["train"]["amp"]) == ("2024", 3, "off")
    result = CliRunner().invoke(main, ["train", "--method", "sat", "--dry-run", "--experiment", "2024"])
    assert result.exit_code == 0, result.output
    assert [d for d in yaml.safe_load_all(result.output) if d][0]["experiment"] == "2024"


def test_recipe_table_rows_apply_by_backbone_and_dataset(tmp_path, monkeypatch) -> None:
    """defaults ← any/<dataset> ← <backbone>/any ← <backbone>/<dataset>; the backbone is the one the earlier
    rows or the user name."""
    (tmp_path / "methods").mkdir()
    (tmp_path / "methods" / "cam.yaml").write_text(yaml.safe_dump({
        "defaults": {"method": {"backbone": "resnet50"}, "train": {"lr": 0.1, "epochs": 3, "batch_size": 7}},
        "recipes": {"any/cub": {"train": {"lr": 0.2}}, "vgg16/any": {"train": {"epochs": 4}},
                    "vgg16/cub": {"train": {"batch_size": 8}}, "resnet50/cub": {"train": {"batch_size": 9}},
                    "any/synthetic": {"method": {"backbone": "vgg16"}}},
    }))
    monkeypatch.setattr(cfg, "plugin_yaml", lambda kind, name: tmp_path / kind / f"{name}.yaml")
    monkeypatch.setattr(cfg, "validate", lambda config: None)

    def train(dataset: str, *overrides: str) -> tuple:
        t = resolve(method="cam", dataset=dataset, overrides=list(overrides)).train
        return t.lr, t.epochs, t.batch_size

    assert train("cub") == (0.2, 3, 9)
    assert train("cub", "method.backbone=vgg16") == (0.2, 4, 8)
    assert train("ilsvrc", "method.backbone=vgg16") == (0.1, 4, 7)
    assert train("synthetic") == (0.1, 4, 7)  # any/synthetic picks vgg16, whose rows then apply


@pytest.mark.parametrize("key, message", [
    ("cub", r"recipes\.cub: expected <backbone>/<dataset>"),
    ("any/any", r"recipes\.any/any: expected <backbone>/<dataset>"),
    ("resnet50/ilsvrc2012", r"recipes\.resnet50/ilsvrc2012: unknown dataset 'ilsvrc2012'.*did you mean 'ilsvrc'"),
    ("resnet5/cub", r"recipes\.resnet5/cub: cam has no backbone 'resnet5'.*did you mean 'resnet50'"),
])
def test_recipe_table_keys_are_checked(tmp_path, monkeypatch, key, message) -> None:
    (tmp_path / "methods").mkdir()
    bad = tmp_path / "methods" / "cam.yaml"
    bad.write_text(yaml.safe_dump({"defaults": {}, "recipes": {key: {"train": {"lr": 0.2}}}}))
    monkeypatch.setattr(cfg, "plugin_yaml", lambda kind, name: tmp_path / kind / f"{name}.yaml")
    with pytest.raises(ConfigError, match=rf"^{bad}: {message}"):
        resolve(method="cam", dataset="cub")


def test_the_old_training_regime_key_is_refused_with_a_pointer(tmp_path) -> None:
    """`protocol:` became `regime:`; user input naming the old key fails in one line naming the new one."""
    pointer = r"config key 'protocol' is now 'regime' \(the training regime: regime\.name, regime\.shots, "
    with pytest.raises(ConfigError, match=r"^--set protocol\.name=few_shot: " + pointer):
        resolve(method="sat", dataset="synthetic", overrides=["protocol.name=few_shot"])
    with pytest.raises(ConfigError, match=r"^protocol\.shots=2: " + pointer):
        resolve(method="sat", dataset="synthetic", overrides=[("protocol.shots", 2)])
    user = tmp_path / "user.yaml"
    user.write_text("protocol: {name: few_shot, shots: 2}\n")
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(user))}: " + pointer):
        resolve(method="sat", dataset="synthetic", user=cfg.load_yaml(user), user_source=str(user))
    with pytest.raises(ConfigError) as caught:
        resolve(method="sat", dataset="synthetic", overrides=["protocol.name=few_shot"])
    assert "\n" not in str(caught.value) and issubclass(ConfigError, WsolbenchError)
    assert resolve(method="sat", dataset="synthetic", overrides=["regime.name=few_shot", "regime.shots=2"]
                   ).regime.shots == 2


def test_saved_configs_with_the_old_key_are_migrated_on_read() -> None:
    saved = cfg.to_dict(resolve(method="sat", dataset="synthetic", overrides=["regime.name=few_shot",
                                                                              "regime.shots=3"]))
    old = {("protocol" if key == "regime" else key): value for key, value in saved.items()}
    assert "regime" not in old and cfg.migrate_saved(old) == saved
    assert cfg.from_dict(old) == cfg.from_dict(saved)
    assert cfg.migrate_saved(saved) == saved  # new configs pass unchanged
