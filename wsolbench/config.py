"""Typed experiment configuration (pydantic models) and its layering.

    defaults (the models below)
      ← method YAML (`methods/<method>.yaml`: `defaults:`, then its `recipes:` table keyed
        `<backbone>/<dataset>`: any/<dataset>, then <backbone>/any and <backbone>/<dataset> for the
        backbone those layers, or the user's, name)
      ← dataset YAML (`datasets/<dataset>.yaml`, optional)
      ← `base` (the embedded `bench.py run` recipe, when given)
      ← user YAML (`--config file.yaml`)
      ← overrides, applied in order: `--set a.b=c` text from the user, parsed once (YAML scalars, read
        against the key's type: `experiment=2024` stays the string "2024", `train.amp=off` the string "off"),
        or `(dotted key, value)` pairs that typed CLI flags pass as data.

Every layer is checked against the models before any work starts (types, choices, ranges): an unknown key
names the closest valid one, and every error names the dotted key and the layer it came from. Checks that
span several keys or need the registries run once on the fully layered config. The resolved config
(`to_dict`) is what a run saves as `config.yaml`; `from_dict` loads it back.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, model_validator

from wsolbench.errors import WsolbenchError
from wsolbench.registry import closest, unknown_name

Override = str | tuple[str, Any]
"""One override: `--set` text ("a.b=c") or a typed (dotted key, value) pair."""


class ConfigError(WsolbenchError, ValueError):
    """A bad key, type or value; the message names the dotted key (and the source, when known)."""


def _within(low: float, high: float, *, low_open: bool, high_open: bool) -> AfterValidator:
    """A field check: the value lies between `low` and `high`, each end open or closed."""
    left, right = "(" if low_open else "[", ")" if high_open else "]"

    def check(value: float) -> float:
        if (value <= low if low_open else value < low) or (value >= high if high_open else value > high):
            raise ValueError(f"must lie in {left}{low:g}, {high:g}{right}, got {value}")
        return value

    return AfterValidator(check)


Positive = Annotated[int, Field(gt=0)]
NonNegativeInt = Annotated[int, Field(ge=0)]
NonNegative = Annotated[float, Field(ge=0)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class MethodConfig(_Section):
    name: str = "sat"
    backbone: str | None = None
    pretrained: bool | str = False
    img_size: int | None = None
    drop_path_rate: float | None = None
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    hparams: dict[str, Any] = Field(default_factory=dict)


class DatasetConfig(_Section):
    name: str = "synthetic"
    data_root: str = "data"
    resize_size: Positive = 256
    crop_size: Positive = 224
    val_per_class: NonNegativeInt = 0  # train-fullsup images per class (0 = all), as num_val_sample_per_class
    num_workers: NonNegativeInt = 2


class TrainConfig(_Section):
    epochs: Positive = 30
    batch_size: Positive = 256
    grad_accum: Positive = 1
    optimizer: Literal["adamw", "sgd"] = "adamw"
    lr: NonNegative = 1e-4
    min_lr: NonNegative = 0.0
    momentum: float = 0.9
    weight_decay: NonNegative = 0.05
    schedule: Literal["constant", "cosine", "step"] = "constant"
    warmup_epochs: NonNegative = 0.0
    lr_decay_every: int | list[int] = 0  # step schedule: decay at 1-based epochs divisible by (any of) these
    lr_decay_factor: float = 0.1
    amp: Literal["auto", "off", "bf16", "fp16"] = "auto"
    compile: bool = False
    clip_grad: float | None = None
    checkpoint_every_steps: NonNegativeInt = 0  # also save last.pt every n optimizer steps (0: at epoch ends only)


REGIMES = ("full", "parameter_efficient", "few_shot")
"""The training regimes (config key `regime.name`)."""


class RegimeConfig(_Section):
    """The training regime: which parameters train (`full`, `parameter_efficient`) and on which images
    (`few_shot`: `shots` per class)."""

    name: Literal[REGIMES] = "full"
    trainable_blocks: NonNegativeInt = 0
    shots: NonNegativeInt = 0


class EvalConfig(_Section):
    protocol: str = "wsolevaluation"
    threshold_policy: Literal["oracle-test", "fixed", "val"] = "oracle-test"
    cam_curve_interval: Annotated[float, _within(0, 1, low_open=True, high_open=True)] = 0.001
    iou_thresholds: list[Annotated[int, _within(0, 100, low_open=True, high_open=False)]] = Field(
        default_factory=lambda: [30, 50, 70])
    thresholds: list[Annotated[float, _within(0, 1, low_open=False, high_open=True)]] = Field(default_factory=list)
    batch_size: Positive = 64
    ten_crop: bool = False
    checkpoint: Literal["last", "best"] = "last"  # which checkpoint the final test evaluation scores


class ExperimentConfig(_Section):
    experiment: str = "default"
    seed: int = 0
    output_dir: str = "runs"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    method: MethodConfig = Field(default_factory=MethodConfig)
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    regime: RegimeConfig = Field(default_factory=RegimeConfig)
    eval: EvalConfig = Field(default_factory=EvalConfig)

    @model_validator(mode="after")
    def _consistent(self, info: Any) -> ExperimentConfig:
        """Checks across keys; skipped while a layer is merged (a later layer may complete a pair)."""
        if (info.context or {}).get("partial"):
            return self
        if self.dataset.resize_size < self.dataset.crop_size:
            raise ValueError(f"dataset.resize_size ({self.dataset.resize_size}) must be ≥ "
                             f"dataset.crop_size ({self.dataset.crop_size})")
        if self.eval.threshold_policy == "fixed" and not self.eval.thresholds:
            raise ValueError("eval.thresholds: the 'fixed' threshold policy needs at least one threshold")
        decay_intervals(self.train)  # raises when the step schedule lacks positive intervals
        if self.regime.name == "few_shot" and self.regime.shots <= 0:
            raise ValueError("regime.shots: the few_shot regime needs images per class > 0")
        return self


def _choices(model: type[BaseModel], prefix: str = "") -> dict[str, tuple[str, ...]]:
    found: dict[str, tuple[str, ...]] = {}
    for name, field in model.model_fields.items():
        if typing.get_origin(field.annotation) is Literal:
            found[f"{prefix}{name}"] = typing.get_args(field.annotation)
        elif isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel):
            found.update(_choices(field.annotation, f"{prefix}{name}."))
    return found


CHOICES: dict[str, tuple[str, ...]] = _choices(ExperimentConfig)
"""The allowed values of every key with a fixed set of choices (read from the models' Literal types)."""


# --------------------------------------------------------------------------- validation with readable errors

_EXPECTED = {
    "int_type": "an integer", "float_type": "a number", "bool_type": "true or false", "string_type": "a string",
    "list_type": "a list", "dict_type": "a mapping", "model_type": "a mapping", "model_attributes_type": "a mapping",
}


def _locate(model: type[BaseModel], loc: tuple[Any, ...]) -> tuple[str, type[BaseModel] | None, Any]:
    """The dotted key an error location names (union member tags dropped), the model that holds the
    last named field, and that field's annotation."""
    dotted, holder, annotation = "", model, None
    current: type[BaseModel] | None = model
    for item in loc:
        if isinstance(item, int):
            dotted += f"[{item}]"
        elif current is not None and item in current.model_fields:
            holder, annotation = current, current.model_fields[item].annotation
            dotted = f"{dotted}.{item}" if dotted else item
            is_model = isinstance(annotation, type) and issubclass(annotation, BaseModel)
            current = annotation if is_model else None
        elif current is not None:  # an unknown key at this level
            dotted = f"{dotted}.{item}" if dotted else str(item)
            holder, annotation, current = current, None, None
        else:  # a union member's tag
            break
    return dotted, holder, annotation


def _message(model: type[BaseModel], error: Any, same_key: list[Any]) -> str:
    loc, kind, value = error["loc"], error["type"], error.get("input")
    dotted, holder, annotation = _locate(model, loc)
    if kind == "extra_forbidden":
        parent = dotted.rpartition(".")[0]
        valid = [f"{parent}.{name}" if parent else name for name in holder.model_fields]
        return f"unknown config key {dotted!r}{closest(dotted, valid)}; valid here: {', '.join(valid)}"
    if kind == "literal_error":
        choices = typing.get_args(annotation)
        return f"{dotted}: {value!r} is not one of {', '.join(choices)}{closest(str(value), choices)}"
    if kind == "greater_than":
        return f"{dotted}: must be positive, got {value}"
    if kind == "greater_than_equal":
        return f"{dotted}: must be ≥ 0, got {value}"
    if kind in _EXPECTED:
        expected = " or ".join(dict.fromkeys(_EXPECTED.get(e["type"], e["type"]) for e in same_key))
        return f"{dotted}: expected {expected}, got {value!r}"
    text = error["msg"].removeprefix("Value error, ")
    return f"{dotted}: {text}" if dotted else text


def _validated(model: type[BaseModel], data: dict[str, Any], source: str, partial: bool) -> Any:
    """`model` built from `data`, or ConfigError naming the source and the dotted key of the first error.

    `partial` skips the checks across keys (a later layer may still complete a pair).
    """
    try:
        return model.model_validate(data, context={"partial": partial})
    except ValidationError as failure:
        errors = failure.errors()
        key = _locate(model, errors[0]["loc"])[0]
        same_key = [e for e in errors if _locate(model, e["loc"])[0] == key]
        raise ConfigError(f"{source}{_message(model, errors[0], same_key)}") from None


RENAMED_KEYS = {"protocol": "regime"}
"""Top-level keys renamed since configs were first saved: old name → new name."""


def merge(obj: BaseModel, updates: dict[str, Any], source: str = "") -> None:
    """Apply a nested mapping onto a config model in place, checking every key, type and range.

    A renamed key (RENAMED_KEYS) is refused with a pointer to its new name; saved configs are read
    through `migrate_saved` instead. The checks across keys and against the registries (`validate`)
    wait for the fully layered config.
    """
    if not isinstance(updates, dict):
        raise ConfigError(f"{source}<top>: expected a mapping, got {updates!r}")
    for old, new in RENAMED_KEYS.items():
        if isinstance(obj, ExperimentConfig) and old in updates:
            raise ConfigError(f"{source}config key {old!r} is now {new!r} (the training regime: {new}.name, "
                              f"{new}.shots, {new}.trainable_blocks); evaluation conventions stay under eval.protocol")
    state = obj.model_dump()
    _deep_update(state, updates)
    merged = _validated(type(obj), state, source, partial=True)
    for name in type(obj).model_fields:
        setattr(obj, name, getattr(merged, name))


# --------------------------------------------------------------------------- overrides


def _annotation(dotted: str) -> Any:
    """The type of the config key `dotted`, or None where the models do not fix one (hparams, unknown keys)."""
    current: Any = ExperimentConfig
    annotation = None
    for part in dotted.split("."):
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        annotation = current = current.model_fields[part].annotation
    return annotation


def _accepts(annotation: Any, value: Any) -> bool:
    try:
        TypeAdapter(annotation).validate_python(value, strict=True)
    except ValidationError:
        return False
    return True


def parse_set(assignment: str) -> dict[str, Any]:
    """`a.b=c` → {'a': {'b': c}}: c parsed as YAML (numbers, booleans, lists), unless the key takes text that
    YAML would read as something else (`experiment=2024` → "2024", `train.amp=off` → "off")."""
    if "=" not in assignment:
        raise ConfigError(f"--set {assignment!r}: expected key=value, e.g. train.lr=1e-4")
    key, raw = assignment.split("=", 1)
    key, text = key.strip(), raw.strip()
    if not key:
        raise ConfigError(f"--set {assignment!r}: empty key")
    try:
        value = yaml.safe_load(raw) if text else ""
    except yaml.YAMLError as error:
        raise ConfigError(f"--set {key}: cannot parse {raw!r}: {error}") from None
    annotation = _annotation(key)
    if annotation is None or not _accepts(annotation, value):
        if annotation is not None and _accepts(annotation, text):
            value = text
        elif isinstance(value, str) and _looks_numeric(value):
            value = float(value)  # YAML 1.1 reads "1e-4" as a string
    return _nest(key, value)


def _nest(dotted: str, value: Any) -> dict[str, Any]:
    nested: Any = value
    for part in reversed(dotted.split(".")):
        nested = {part: nested}
    return nested


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _override_layers(overrides: Sequence[Override]) -> list[tuple[str, dict[str, Any]]]:
    """(source, nested mapping) per override, in order."""
    layers = []
    for item in overrides:
        if isinstance(item, str):
            layers.append((f"--set {item}: ", parse_set(item)))
        else:
            key, value = item
            layers.append((f"{key}={value!r}: ", _nest(key, value)))
    return layers


# --------------------------------------------------------------------------- files and layers


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


ANY = "any"
"""In a method's `recipes` table, the backbone or dataset part that matches every backbone or dataset."""


def recipe_table(method: str) -> tuple[dict[str, Any], dict[tuple[str, str], dict[str, Any]], Path]:
    """methods/<method>.yaml as (defaults, {(backbone, dataset): layer}, path); empty when the file is absent.

    The file holds `defaults:` and one `recipes:` table keyed `<backbone>/<dataset>`, either part `any`.
    A key must name one of the method's backbones and a registered dataset (or `any`); ConfigError names
    the file and the key otherwise.
    """
    from wsolbench.registry import DATASETS, METHODS

    path = plugin_yaml("methods", method)
    if not path.is_file():
        return {}, {}, path
    data = load_yaml(path)
    unknown = set(data) - {"defaults", "recipes"}
    if unknown:
        raise ConfigError(f"{path}: unknown top-level key {sorted(unknown)[0]!r}; expected defaults, recipes")
    table: dict[tuple[str, str], dict[str, Any]] = {}
    datasets = [ANY, *DATASETS.names()]
    backbones = [ANY, *(METHODS.get(method).backbones if method in METHODS else ())]
    for key, layer in (data.get("recipes") or {}).items():
        backbone, sep, dataset = str(key).partition("/")
        if not sep or not backbone or (backbone, dataset) == (ANY, ANY):
            raise ConfigError(f"{path}: recipes.{key}: expected <backbone>/<dataset> (either part '{ANY}', "
                              f"not both), e.g. {ANY}/cub or resnet50/{ANY}")
        if dataset not in datasets:
            raise ConfigError(f"{path}: recipes.{key}: {unknown_name('dataset', dataset, datasets)}")
        if backbone not in backbones:
            raise ConfigError(f"{path}: recipes.{key}: {method} has no backbone {backbone!r}"
                              f"{closest(backbone, backbones)}; valid: {', '.join(backbones)}")
        if not isinstance(layer, dict):
            raise ConfigError(f"{path}: recipes.{key}: expected a mapping, got {layer!r}")
        table[(backbone, dataset)] = layer
    return data.get("defaults") or {}, table, path


def method_layer(method: str, dataset: str) -> tuple[dict[str, Any], str]:
    """The method's recipe for `dataset` on any backbone: `defaults` ← `any/<dataset>` (empty if no file)."""
    defaults, table, path = recipe_table(method)
    layer = copy.deepcopy(defaults)
    _deep_update(layer, table.get((ANY, dataset)) or {})
    return layer, str(path)


def backbone_layer(method: str, dataset: str, backbone: str | None) -> tuple[dict[str, Any], str]:
    """What the recipe changes for `backbone`, applied over `method_layer`: `<backbone>/any` ←
    `<backbone>/<dataset>` (e.g. CAM's lr and weight decay differ per backbone and dataset)."""
    _, table, path = recipe_table(method)
    if backbone is None:
        return {}, str(path)
    layer = copy.deepcopy(table.get((backbone, ANY)) or {})
    _deep_update(layer, table.get((backbone, dataset)) or {})
    return layer, f"{path} (recipes.{backbone}/...)"


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
    overrides: Sequence[Override] = (),
    base: dict[str, Any] | None = None,
) -> ExperimentConfig:
    """Layer everything into one validated ExperimentConfig (see the module docstring).

    `base` is a mapping applied after the method and dataset YAML layers and before the user
    layers (the embedded `run` defaults use it: a tiny recipe that replaces the official recipes);
    `method` / `dataset` override what the user layers name.
    """
    user = copy.deepcopy(user or {})
    set_layers = _override_layers(overrides)
    # Which method and dataset pick the plugin layers: the most specific layer that names them wins.
    probe: dict[str, Any] = {}
    for layer in [base or {}, user, *(layer for _, layer in set_layers)]:
        _deep_update(probe, layer)
    method_name = method or (probe.get("method") or {}).get("name") or MethodConfig().name
    dataset_name = dataset or (probe.get("dataset") or {}).get("name") or DatasetConfig().name

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
    for source, layer in set_layers:
        merge(config, layer, source)
    config.method.name = method_name
    config.dataset.name = dataset_name
    validate(config)
    return config


def validate(config: ExperimentConfig) -> None:
    """The checks across keys, then the registered names (methods, datasets, evaluation protocols,
    hyperparameters); ConfigError names the key."""
    from wsolbench.registry import DATASETS, METHODS

    _validated(ExperimentConfig, config.model_dump(), "", partial=False)
    from wsolbench.metrics.protocols import EVAL_PROTOCOLS

    for key, kind, name, valid in (("method.name", "method", config.method.name, METHODS.names()),
                                   ("dataset.name", "dataset", config.dataset.name, DATASETS.names()),
                                   ("eval.protocol", "evaluation protocol", config.eval.protocol, EVAL_PROTOCOLS)):
        if name not in valid:  # the evaluation protocol too: checked here, not after training
            raise ConfigError(f"{key}: {unknown_name(kind, name, valid)}")
    hparams = METHODS.get(config.method.name).default_hparams
    for key in config.method.hparams:
        if key not in hparams:
            raise ConfigError(
                f"method.hparams.{key}: {config.method.name} has no such hyperparameter"
                f"{closest(key, list(hparams))}; valid: {', '.join(sorted(hparams)) or '(none)'}"
            )


def decay_intervals(train: TrainConfig) -> list[int]:
    """train.lr_decay_every as a list (one interval or several); empty when it is 0 or [].

    ValueError when the 'step' schedule does not get positive intervals."""
    every = train.lr_decay_every
    intervals = list(every) if isinstance(every, list) else ([every] if every else [])
    if train.schedule == "step" and not (intervals and all(n > 0 for n in intervals)):
        raise ValueError(f"train.lr_decay_every: the 'step' schedule needs positive decay intervals, got {every!r}")
    return intervals


def to_dict(config: ExperimentConfig) -> dict[str, Any]:
    """Plain nested dicts, lists and scalars, in the models' field order (what `config.yaml` holds)."""
    return config.model_dump()


def migrate_saved(data: dict[str, Any]) -> dict[str, Any]:
    """A saved config (a run's config.yaml, a checkpoint's `config`) with renamed keys under their new
    names (RENAMED_KEYS: runs saved before the rename hold `protocol:` for the training regime)."""
    if not isinstance(data, dict):
        return data
    migrated = dict(data)
    for old, new in RENAMED_KEYS.items():
        if old in migrated and new not in migrated:
            migrated[new] = migrated.pop(old)
    return migrated


def from_dict(data: dict[str, Any], source: str = "") -> ExperimentConfig:
    """Rebuild a saved config (e.g. a run's config.yaml), with the same checks; keys it lacks take their
    defaults, and keys saved under an old name are read under the new one (`migrate_saved`)."""
    config = ExperimentConfig()
    merge(config, migrate_saved(data), source)
    validate(config)
    return config


def resolve_saved(
    saved: dict[str, Any],
    *,
    source: str,
    base: dict[str, Any] | None = None,
    user: dict[str, Any] | None = None,
    user_source: str = "",
    overrides: Sequence[Override] = (),
) -> tuple[ExperimentConfig, list[str]]:
    """A saved config (a run's, or the one our checkpoints carry) with the user's layers on top.

    The method YAML layers are not applied again: the saved config is complete. `base` (an evaluation
    protocol's official defaults) goes on before the user's layers. Returns the validated config and one
    `key: saved → now` line per value that `base` or the user's layers changed.
    """
    config = from_dict(saved, f"{source}: ")
    before = to_dict(config)
    merge(config, base or {}, "protocol defaults: ")
    merge(config, user or {}, f"{user_source}: " if user_source else "")
    for layer_source, layer in _override_layers(overrides):
        merge(config, layer, layer_source)
    validate(config)
    return config, config_changes(before, to_dict(config))


def config_changes(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """One `section.key: before → after` line per dotted key whose value differs, sorted by key."""
    before, after = _flatten(before), _flatten(after)
    return [f"{key}: {before.get(key)!r} → {after.get(key)!r}"
            for key in sorted(set(before) | set(after)) if before.get(key) != after.get(key)]


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
