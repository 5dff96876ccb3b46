"""Typed experiment configuration and its layering.

    defaults (the dataclasses below)
      ← method YAML (`methods/<method>.yaml`: `defaults:` then `datasets: {<dataset>: ...}`,
        then `backbones: {<backbone>: {defaults:, datasets:}}` for the resolved backbone)
      ← dataset YAML (`datasets/<dataset>.yaml`, optional)
      ← `base` (the embedded `bench.py run` recipe, when given)
      ← user YAML (`--config file.yaml`)
      ← `--set a.b=c` overrides, applied in order

Every layer is checked against the dataclasses before any work starts: an unknown key names the
closest valid one, a wrong type names the key and the expected type, and `validate` checks values.
The fully resolved config (`to_dict`) is what a run saves as `config.yaml`.
"""

from __future__ import annotations

import copy
import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsolbench.errors import WsolbenchError
from wsolbench.registry import closest


class ConfigError(WsolbenchError, ValueError):
    """A bad key, type or value; the message names the dotted key (and the source, when known)."""


@dataclass
class MethodConfig:
    name: str = "sat"
    backbone: str | None = None
    pretrained: bool | str = False
    img_size: int | None = None
    drop_path_rate: float | None = None
    backbone_kwargs: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)


@dataclass
class DatasetConfig:
    name: str = "synthetic"
    data_root: str = "data"
    resize_size: int = 256
    crop_size: int = 224
    val_per_class: int = 0  # train-fullsup images per class (0 = all), as num_val_sample_per_class
    num_workers: int = 2


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    grad_accum: int = 1
    optimizer: str = "adamw"
    lr: float = 1e-4
    min_lr: float = 0.0
    momentum: float = 0.9
    weight_decay: float = 0.05
    schedule: str = "constant"
    warmup_epochs: float = 0.0
    lr_decay_every: int | list[int] = 0  # step schedule: decay at 1-based epochs divisible by (any of) these
    lr_decay_factor: float = 0.1
    amp: str = "auto"
    compile: bool = False
    clip_grad: float | None = None
    checkpoint_every_steps: int = 0  # also save last.pt every n optimizer steps (0: at epoch ends only)


@dataclass
class ProtocolConfig:
    name: str = "full"
    trainable_blocks: int = 0
    shots: int = 0


@dataclass
class EvalConfig:
    protocol: str = "wsolevaluation"
    threshold_policy: str = "oracle-test"
    cam_curve_interval: float = 0.001
    iou_thresholds: list[int] = field(default_factory=lambda: [30, 50, 70])
    thresholds: list[float] = field(default_factory=list)
    batch_size: int = 64
    ten_crop: bool = False
    checkpoint: str = "last"  # which checkpoint the final test evaluation scores (best = val-selected)


@dataclass
class ExperimentConfig:
    experiment: str = "default"
    seed: int = 0
    output_dir: str = "runs"
    device: str = "auto"
    method: MethodConfig = field(default_factory=MethodConfig)
    dataset: DatasetConfig = field(default_factory=DatasetConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


CHOICES: dict[str, tuple[str, ...]] = {
    "train.optimizer": ("adamw", "sgd"),
    "train.schedule": ("constant", "cosine", "step"),
    "train.amp": ("auto", "off", "bf16", "fp16"),
    "protocol.name": ("full", "parameter_efficient", "few_shot"),
    "eval.threshold_policy": ("oracle-test", "fixed", "val"),
    "eval.checkpoint": ("last", "best"),
    "device": ("auto", "cpu", "cuda"),
}


# --------------------------------------------------------------------------- typed merging


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, key: str, source: str) -> Any:
    """`value` converted to the annotation `tp`, or ConfigError naming key and expected type."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        errors = []
        for option in typing.get_args(tp):
            if option is type(None):
                if value is None:
                    return None
                continue
            try:
                return _coerce(value, option, key, source)
            except ConfigError as error:
                errors.append(error)
        expected = " or ".join(_type_name(a) for a in typing.get_args(tp))
        raise ConfigError(f"{source}{key}: expected {expected}, got {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp)
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{source}{key}: expected a list of {_type_name(item_tp)}, got {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]", source) for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}{key}: expected a mapping, got {value!r}")
        return copy.deepcopy(value)
    if tp is Any:
        return value
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{source}{key}: expected true or false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise ConfigError(f"{source}{key}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise ConfigError(f"{source}{key}: expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        raise ConfigError(f"{source}{key}: expected a string, got {value!r}")
    raise ConfigError(f"{source}{key}: unsupported type {tp}")  # pragma: no cover - programming error


def merge(obj: Any, updates: dict[str, Any], source: str = "", prefix: str = "") -> None:
    """Apply a nested mapping onto a config dataclass in place, checking every key and type."""
    if not isinstance(updates, dict):
        raise ConfigError(f"{source}{prefix.rstrip('.') or '<top>'}: expected a mapping, got {updates!r}")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    for key, value in updates.items():
        dotted = f"{prefix}{key}"
        if key not in names:
            valid = [f"{prefix}{n}" for n in names]
            raise ConfigError(
                f"{source}unknown config key {dotted!r}{closest(dotted, valid)}; valid here: {', '.join(valid)}"
            )
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            merge(current, value, source, f"{dotted}.")
        elif isinstance(current, dict) and isinstance(value, dict):
            current.update(copy.deepcopy(value))
        else:
            setattr(obj, key, _coerce(value, hints[key], dotted, source))


def parse_set(assignment: str) -> dict[str, Any]:
    """`a.b=c` → {'a': {'b': c}}, with c parsed as YAML (numbers, booleans, lists)."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. train.lr=1e-4")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    if not key:
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: cannot parse {raw!r}: {error}") from None
    if isinstance(value, str) and _looks_numeric(value):
        value = float(value)  # YAML 1.1 reads "1e-4" as a string
    nested: dict[str, Any] = value
    for part in reversed(key.split(".")):
        nested = {part: nested}
    return nested


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def load_yaml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def plugin_yaml(package_dir: str, name: str) -> Path:
    """Where a built-in method's or dataset's YAML lives (next to its module)."""
    import importlib

    package = importlib.import_module(f"wsolbench.{package_dir}")
    return Path(package.__path__[0]) / f"{name}.yaml"


def method_layer(method: str, dataset: str) -> tuple[dict[str, Any], str]:
    """The method card's defaults for `dataset`, from methods/<method>.yaml (empty if none)."""
    path = plugin_yaml("methods", method)
    if not path.is_file():
        return {}, str(path)
    data = load_yaml(path)
    unknown = set(data) - {"defaults", "datasets", "backbones"}
    if unknown:
        raise ConfigError(
            f"{path}: unknown top-level key {sorted(unknown)[0]!r}; expected defaults, datasets, backbones"
        )
    layer = copy.deepcopy(data.get("defaults") or {})
    _deep_update(layer, (data.get("datasets") or {}).get(dataset) or {})
    return layer, str(path)


def backbone_layer(method: str, dataset: str, backbone: str | None) -> tuple[dict[str, Any], str]:
    """Per-backbone recipe from methods/<method>.yaml, applied over `method_layer` (empty if none).

    `backbones: {<backbone>: {defaults: ..., datasets: {<dataset>: ...}}}` (e.g. CAM's lr and
    weight decay differ per backbone and dataset, cam.md §5).
    """
    path = plugin_yaml("methods", method)
    if backbone is None or not path.is_file():
        return {}, str(path)
    entry = (load_yaml(path).get("backbones") or {}).get(backbone) or {}
    unknown = set(entry) - {"defaults", "datasets"}
    if unknown:
        raise ConfigError(f"{path}: backbones.{backbone}: unknown key {sorted(unknown)[0]!r}; "
                          "expected defaults, datasets")
    layer = copy.deepcopy(entry.get("defaults") or {})
    _deep_update(layer, (entry.get("datasets") or {}).get(dataset) or {})
    return layer, f"{path} (backbones.{backbone})"


def _deep_update(base: dict[str, Any], update: dict[str, Any]) -> None:
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            _deep_update(base[key], value)
        else:
            base[key] = copy.deepcopy(value)


def resolve(
    *,
    method: str | None = None,
    dataset: str | None = None,
    user: dict[str, Any] | None = None,
    user_source: str = "",
    overrides: list[str] = (),
    base: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Layer everything into one validated ExperimentConfig (see the module docstring).

    `base` is a mapping applied after the method and dataset YAML layers and before the user
    layers (the embedded `run` defaults use it: a tiny recipe that replaces the cards' recipes);
    `method` / `dataset` override what the user layers name.
    """
    user = copy.deepcopy(user or {})
    set_layers = [parse_set(s) for s in overrides]
    # Which method and dataset pick the plugin layers: the most specific layer that names them wins.
    probe: dict[str, Any] = {}
    for layer in [base or {}, user, *set_layers]:
        _deep_update(probe, layer)
    method_name = method or (probe.get("method") or {}).get("name") or MethodConfig.name
    dataset_name = dataset or (probe.get("dataset") or {}).get("name") or DatasetConfig.name

    config = ExperimentConfig()
    layer, source = method_layer(method_name, dataset_name)
    merge(config, layer, f"{source}: ")
    backbone_name = (probe.get("method") or {}).get("backbone") or config.method.backbone
    layer, source = backbone_layer(method_name, dataset_name, backbone_name)
    merge(config, layer, f"{source}: ")
    dataset_yaml = plugin_yaml("datasets", dataset_name)
    if dataset_yaml.is_file():
        merge(config, load_yaml(dataset_yaml), f"{dataset_yaml}: ")
    if base:
        merge(config, base, "run defaults: ")
    merge(config, user, f"{user_source}: " if user_source else "")
    for assignment, layer in zip(overrides, set_layers, strict=True):
        merge(config, layer, f"--set {assignment}: ")
    config.method.name = method_name
    config.dataset.name = dataset_name
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """Check values (choices, ranges, registered names); ConfigError names the key."""
    from wsolbench.registry import DATASETS, METHODS

    for key, choices in CHOICES.items():
        value = get_key(config, key)
        if value not in choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(choices)}{closest(str(value), choices)}")
    if config.method.name not in METHODS:
        valid = METHODS.names()
        raise ConfigError(f"method.name: unknown method {config.method.name!r}{closest(config.method.name, valid)}; "
                          f"valid: {', '.join(valid)}")
    if config.dataset.name not in DATASETS:
        valid = DATASETS.names()
        raise ConfigError(
            f"dataset.name: unknown dataset {config.dataset.name!r}{closest(config.dataset.name, valid)}; "
            f"valid: {', '.join(valid)}"
        )
    from wsolbench.metrics.protocols import EVAL_PROTOCOLS

    if config.eval.protocol not in EVAL_PROTOCOLS:  # checked here, not after training
        raise ConfigError(
            f"eval.protocol: unknown evaluation protocol {config.eval.protocol!r}"
            f"{closest(config.eval.protocol, EVAL_PROTOCOLS)}; valid: {', '.join(EVAL_PROTOCOLS)}"
        )
    hparams = METHODS.get(config.method.name).default_hparams
    for key in config.method.hparams:
        if key not in hparams:
            raise ConfigError(
                f"method.hparams.{key}: {config.method.name} has no such hyperparameter"
                f"{closest(key, list(hparams))}; valid: {', '.join(sorted(hparams)) or '(none)'}"
            )
    positive = ["train.epochs", "train.batch_size", "train.grad_accum", "eval.batch_size",
                "dataset.crop_size", "dataset.resize_size"]
    for key in positive:
        if get_key(config, key) <= 0:
            raise ConfigError(f"{key}: must be positive, got {get_key(config, key)}")
    for key in ["train.lr", "train.weight_decay", "train.min_lr", "train.warmup_epochs",
                "dataset.val_per_class", "protocol.shots", "protocol.trainable_blocks",
                "train.checkpoint_every_steps", "dataset.num_workers"]:
        if get_key(config, key) < 0:
            raise ConfigError(f"{key}: must be ≥ 0, got {get_key(config, key)}")
    if config.dataset.resize_size < config.dataset.crop_size:
        raise ConfigError(
            f"dataset.resize_size ({config.dataset.resize_size}) must be ≥ "
            f"dataset.crop_size ({config.dataset.crop_size})"
        )
    if not 0 < config.eval.cam_curve_interval < 1:
        raise ConfigError(f"eval.cam_curve_interval: must lie in (0, 1), got {config.eval.cam_curve_interval}")
    for i, delta in enumerate(config.eval.iou_thresholds):
        if not 0 < delta <= 100:
            raise ConfigError(f"eval.iou_thresholds[{i}]: must lie in (0, 100], got {delta}")
    for i, tau in enumerate(config.eval.thresholds):
        if not 0 <= tau < 1:
            raise ConfigError(f"eval.thresholds[{i}]: must lie in [0, 1), got {tau}")
    if config.eval.threshold_policy == "fixed" and not config.eval.thresholds:
        raise ConfigError("eval.thresholds: the 'fixed' threshold policy needs at least one threshold")
    intervals = decay_intervals(config.train)
    if config.train.schedule == "step" and not (intervals and all(every > 0 for every in intervals)):
        raise ConfigError("train.lr_decay_every: the 'step' schedule needs positive decay intervals, "
                          f"got {config.train.lr_decay_every!r}")
    if config.protocol.name == "few_shot" and config.protocol.shots <= 0:
        raise ConfigError("protocol.shots: the few_shot protocol needs images per class > 0")


def decay_intervals(train: TrainConfig) -> list[int]:
    """train.lr_decay_every as a list (one interval or several); empty when it is 0 or []."""
    every = train.lr_decay_every
    return list(every) if isinstance(every, list) else ([every] if every else [])


def get_key(config: Any, dotted: str) -> Any:
    value = config
    for part in dotted.split("."):
        value = getattr(value, part)
    return value


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def from_dict(data: dict[str, Any], source: str = "") -> ExperimentConfig:
    """Rebuild a saved config (e.g. a run's config.yaml), with the same checks."""
    config = ExperimentConfig()
    merge(config, data, source)
    validate(config)
    return config


def resolve_saved(
    saved: dict[str, Any],
    *,
    source: str,
    base: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    user_source: str = "",
    overrides: list[str] = (),
) -> tuple[ExperimentConfig, list[str]]:
    """A saved config (a run's, or the one our checkpoints carry) with the user's layers on top.

    The method YAML layers are not applied again: the saved config is complete. `base` (an evaluation
    protocol's official defaults) goes on before the user's layers. Returns the validated config and one
    `key: saved → now` line per value that `base` or the user's layers changed.
    """
    config = from_dict(saved, f"{source}: ")
    before = _flatten(to_dict(config))
    merge(config, base or {}, "protocol defaults: ")
    merge(config, user or {}, f"{user_source}: " if user_source else "")
    for assignment in overrides:
        merge(config, parse_set(assignment), f"--set {assignment}: ")
    validate(config)
    after = _flatten(to_dict(config))
    changes = [f"{key}: {before.get(key)!r} → {after.get(key)!r}"
               for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]
    return config, changes


def _flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict) and value:
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def dump(config: ExperimentConfig) -> str:
    return yaml.safe_dump(to_dict(config), sort_keys=False)
