"""The WSOLMethod contract that the engine, the CLI and users' notebooks rely on.

A method is an `nn.Module` with four jobs:

- `forward(images) -> MethodOutput`: `.logits` (B, C) always, plus whatever its losses need;
- `loss(output, labels) -> dict`: named scalar terms, `"loss"` being the total that is optimized;
- `localize(images, class_ids=None) -> Localization`: logits and the raw localization maps on the
  feature grid, exactly as the method's paper and official code define them (no upsampling, no normalization);
- `param_groups(regime)`: which parameters train under the training regime `full` / `parameter_efficient`, with lr
  scales and weight-decay flags.

The base class holds what every method shares: the common constructor options (`num_classes`,
`backbone`, `pretrained`, `img_size`, `drop_path_rate`, `backbone_kwargs`), the cross-entropy `loss`,
the `class_ids` check of `localize` (`target_classes`) and `param_groups`, which a method steers with
small hooks (`own_parameters`, `stages`, `no_weight_decay`, `frozen_parameters`, and for other lr
groups `empty_param_groups` / `param_group_of`).

`load_checkpoint(path)` reads our checkpoints and the official ones (`model` / `state_dict`
wrappers, `module.` prefixes). Where our module paths differ from the official code's, the method
says so in `official_flattens` / `official_order`, and `adapt_state_dict` renames the official keys
onto ours: that is the one place where the two namings meet (`official_names` maps the other way).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from wsolbench.config import REGIMES
from wsolbench.errors import MissingFileError, WsolbenchError
from wsolbench.registry import METHODS, closest


@dataclass
class MethodOutput:
    """What `forward` returns: logits always, and the tensors the method's losses need."""

    logits: Tensor
    extras: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class Localization:
    """What `localize` returns: logits (B, C) and raw maps (B, h, w) for the requested classes."""

    logits: Tensor
    maps: Tensor


@dataclass
class ParamGroup:
    """Parameters that train together: their names, lr multiplier and whether weight decay applies."""

    name: str
    params: list[tuple[str, nn.Parameter]]
    lr_scale: float = 1.0
    weight_decay: bool = True

    @property
    def numel(self) -> int:
        return sum(p.numel() for _, p in self.params)


class CheckpointError(WsolbenchError, RuntimeError):
    """A checkpoint that does not fit the model; the message lists the offending keys."""


class MethodOptionError(WsolbenchError, ValueError):
    """A constructor option, training regime or argument a method cannot take; the message names it."""


class UnknownHyperparameterError(MethodOptionError, TypeError):
    """A hyperparameter the method does not have (a TypeError too, as an unexpected keyword is)."""


def _under(name: str, prefixes: tuple[str, ...]) -> bool:
    """Whether parameter `name` is one of `prefixes` or lies in a module named by one of them."""
    return any(name == prefix or name.startswith(f"{prefix}.") for prefix in prefixes)


class WSOLMethod(nn.Module):
    """Base class of every method.

    Subclasses set `name`, `display_name` (how tables and plots name it), `default_hparams` (the
    hyperparameters `create_method` accepts, with their defaults), `default_backbone`, `backbones`
    (those it is built and tested on) with their `backbone_names` (display names), take their
    hyperparameters as keyword arguments and hand the common options on:

        def __init__(self, *, area_threshold: float, **options: Any) -> None:
            super().__init__(**options)  # sets num_classes, backbone_name, pretrained, img_size, ...

    `img_size` is an input-size hint every method accepts (CNNs take any size and may ignore it).
    A method that cannot honour `pretrained`, `drop_path_rate` or `backbone_kwargs` leaves it out of
    `backbone_options`; setting it then fails instead of being silently ignored.
    """

    name: ClassVar[str] = ""
    display_name: ClassVar[str] = ""  # empty: the registered name
    default_hparams: ClassVar[dict[str, Any]] = {}
    default_backbone: ClassVar[str | None] = None
    weights_hub: ClassVar[str | None] = None  # where `pretrained=True` weights come from: "timm" / "torchvision"
    backbones: ClassVar[tuple[str, ...]] = ()
    backbone_names: ClassVar[dict[str, str]] = {}  # display name of each of `backbones`
    backbone_options: ClassVar[tuple[str, ...]] = ("pretrained", "drop_path_rate", "backbone_kwargs")
    frozen_parameters: ClassVar[tuple[str, ...]] = ()  # parameters that never train (fixed kernels)
    # Submodules whose entries the official checkpoints hold at the top level: the ViT methods keep
    # timm's model as `backbone`, whose `backbone.blocks.0.norm1.weight` is `blocks.0.norm1.weight` there.
    official_flattens: ClassVar[tuple[str, ...]] = ()
    # The official code's top-level names in its registration order, when ours differs (SAT interleaves
    # its spatial token with the ViT's tokens): the order of its checkpoints and of its optimizer's
    # parameters. Names not listed follow the listed ones, in our order.
    official_order: ClassVar[tuple[str, ...]] = ()

    def __init__(
        self,
        *,
        num_classes: int,
        backbone: str | None = None,
        pretrained: bool | str = False,
        img_size: int | None = None,
        drop_path_rate: float | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise MethodOptionError(f"{self.name}: num_classes must be ≥ 1, got {num_classes}")
        self.num_classes = num_classes
        self.backbone_name = backbone or self.default_backbone
        self.pretrained = pretrained
        self.img_size = img_size
        self.drop_path_rate = drop_path_rate
        self.backbone_kwargs = dict(backbone_kwargs or {})
        given = {"pretrained": pretrained, "drop_path_rate": drop_path_rate, "backbone_kwargs": self.backbone_kwargs}
        for option, value in given.items():
            if value and option not in self.backbone_options:
                if self.backbone_name is None:
                    raise MethodOptionError(f"{self.name}: the method has no backbone, so {option} must be "
                                            f"left unset; got {value!r}")
                raise MethodOptionError(f"{self.name}: backbone {self.backbone_name} takes no {option}; "
                                        f"got {value!r}")

    def forward(self, images: Tensor) -> MethodOutput:  # pragma: no cover - contract
        raise NotImplementedError

    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:  # pragma: no cover
        """Logits and one raw localization map per image, for evaluation and notebooks.

        images: (B, 3, H, W), normalized with the ImageNet mean and std, H = W = the model's input size.
        class_ids: (B,) the class whose map to return per image; None = each image's top-1 predicted class.

        Returns Localization(logits (B, C), maps (B, h, w)). The maps are RAW: on the method's feature
        grid (14x14 for DeiT-S/16 at 224 px; 7x7 or 28x28 for CNNs), exactly as the method defines them,
        before any upsampling, normalization or thresholding, and with any sign and scale. Evaluation
        protocols turn them into boxes differently (bicubic or bilinear upsampling to the evaluation
        frame, min-max normalization before or after it, the threshold and box rule):
        `wsolbench.maps_to_boxes(maps, threshold, protocol)` applies a protocol's exact conventions,
        and docs/protocols.md describes each protocol. Gradients are not tracked.
        """
        raise NotImplementedError

    def loss(self, output: MethodOutput, labels: Tensor) -> dict[str, Tensor]:
        """Cross-entropy of the logits: {"loss": ce, "cls": ce}. Methods with more terms override it."""
        cls = F.cross_entropy(output.logits, labels)
        return {"loss": cls, "cls": cls}

    def target_classes(self, logits: Tensor, class_ids: Tensor | None) -> Tensor:
        """The class whose map `localize` returns for each image: `class_ids` (B,) as int64 on the
        logits' device, or the top-1 class when None. Any other shape raises MethodOptionError."""
        if class_ids is None:
            return logits.argmax(dim=1)
        if class_ids.shape != (logits.shape[0],):
            raise MethodOptionError(f"{self.name}.localize: class_ids must have shape ({logits.shape[0]},), "
                                    f"got {tuple(class_ids.shape)}")
        return class_ids.to(logits.device).long()

    # ------------------------------------------------------------------ parameter groups

    def own_parameters(self) -> tuple[str, ...]:
        """Parameters and modules the method adds to its backbone (a name covers everything under
        `name.`): `parameter_efficient` always trains them. Default: none."""
        return ()

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The backbone's stages as parameter/module names, last stage first: `parameter_efficient`
        trains the first `trainable_blocks` of them. Default: none."""
        return ()

    def no_weight_decay(self) -> set[str]:
        """Parameter names kept out of weight decay besides 1-D tensors and biases (timm's hook of
        the same name). Default: none."""
        return set()

    def empty_param_groups(self) -> list[ParamGroup]:
        """The groups `param_groups` sorts parameters into, in order, still empty. Default: timm's
        "decay" and "no_decay" (weight decay off), both at the base lr."""
        return [ParamGroup("decay", []), ParamGroup("no_decay", [], weight_decay=False)]

    def param_group_of(self, name: str, param: nn.Parameter) -> str:
        """The name of the group parameter `name` trains in. Default: timm's weight-decay rule,
        "no_decay" for 1-D tensors, biases and `no_weight_decay()` names, "decay" for the rest."""
        if param.ndim <= 1 or name.endswith(".bias") or name in self.no_weight_decay():
            return "no_decay"
        return "decay"

    def param_groups(self, regime: str, trainable_blocks: int = 0) -> list[ParamGroup]:
        """The parameters that train under the training `regime`, sorted into `empty_param_groups()` by
        `param_group_of`, in the official code's parameter order (`named_parameters` order unless
        `official_order` says otherwise); groups left empty are dropped.

        - `full` / `few_shot`: every parameter but the `frozen_parameters`; `trainable_blocks`
          must be 0.
        - `parameter_efficient`: `own_parameters()` plus the last `trainable_blocks` stages
          (0 ≤ trainable_blocks ≤ len(stages())).

        A method without parameters returns [] for every regime. An unknown regime or a
        `trainable_blocks` out of range raises MethodOptionError.
        """
        if regime not in REGIMES:
            raise MethodOptionError(f"{self.name}: unknown training regime {regime!r}; valid: {', '.join(REGIMES)}")
        named = [(n, p) for n, p in self.named_parameters() if n not in self.frozen_parameters]
        named.sort(key=lambda item: self._official_rank(item[0]))
        if not named:
            return []
        if regime == "parameter_efficient":
            stages = self.stages()
            if not 0 <= trainable_blocks <= len(stages):
                raise MethodOptionError(f"{self.name} ({self.backbone_name}): trainable_blocks must lie in "
                                        f"[0, {len(stages)}], got {trainable_blocks}")
            trained = self.own_parameters() + sum(stages[:trainable_blocks], ())
            named = [(n, p) for n, p in named if _under(n, trained)]
        elif trainable_blocks:
            raise MethodOptionError(f"{self.name}: trainable_blocks applies to parameter_efficient only, "
                                    f"not {regime!r}")
        groups = self.empty_param_groups()
        by_name = {group.name: group for group in groups}
        for n, p in named:
            by_name[self.param_group_of(n, p)].params.append((n, p))
        return [group for group in groups if group.params]

    # ------------------------------------------------------------------ checkpoints

    def official_name(self, key: str) -> str:
        """The name the official checkpoints give our state-dict key `key` (the `official_flattens`
        prefix dropped)."""
        for module in self.official_flattens:
            if key.startswith(f"{module}."):
                return key[len(module) + 1 :]
        return key

    def _official_rank(self, key: str) -> int:
        top = self.official_name(key).split(".")[0]
        return self.official_order.index(top) if top in self.official_order else len(self.official_order)

    def official_names(self) -> dict[str, str]:
        """Our state-dict keys → the official checkpoints' names for them, in the official order.

        One-to-one: `adapt_state_dict` inverts it."""
        keys = sorted(self.state_dict(), key=self._official_rank)
        return {key: self.official_name(key) for key in keys}

    def official_state_dict(self) -> dict[str, Tensor]:
        """Our weights under the official names, in the official order (what the official code loads)."""
        state = self.state_dict()
        return {official: state[ours] for ours, official in self.official_names().items()}

    def adapt_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """A checkpoint's keys on our names: official names are renamed (each entry of an
        `official_flattens` module gets its prefix back), our own names stay.

        A file that holds one tensor under both names raises CheckpointError naming both. A method
        with other differences extends this.
        """
        owners = {key.split(".")[0]: module for module in self.official_flattens
                  for key in self.get_submodule(module).state_dict()}
        renamed: dict[str, Tensor] = {}
        given: dict[str, str] = {}
        for key, value in state_dict.items():
            top = key.split(".")[0]
            ours = f"{owners[top]}.{key}" if top in owners else key
            if ours in renamed:
                raise CheckpointError(f"the checkpoint holds {ours} twice: as {given[ours]} and as {key}")
            renamed[ours], given[ours] = value, key
        return renamed

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Load weights strictly; returns the checkpoint's other top-level entries (epoch, best_thr…).

        Accepts a bare state dict or one wrapped in `model` / `state_dict`, with or without the
        `module.` prefix of DataParallel/DDP, under our key names or the official ones
        (`adapt_state_dict`). Raises CheckpointError naming every missing, unexpected or wrongly
        shaped key, by our names.
        """
        state_dict, extras = read_state_dict(path)
        try:
            state_dict = self.adapt_state_dict(state_dict)
        except CheckpointError as error:
            raise CheckpointError(f"{path}: {error}") from None
        prefixes = ", ".join(f"`{module}.`" for module in self.official_flattens)
        hint = f" (keys by our names; the official ones lack the prefix {prefixes})" if prefixes else ""
        check_keys(self.state_dict(), state_dict, f"{path} does not fit {type(self).__name__}{hint}:")
        self.load_state_dict(state_dict, strict=True)
        return extras


def unwrap_state_dict(obj: Any, path: Path | str = "<checkpoint>") -> tuple[dict[str, Tensor], dict]:
    """The tensor dict inside a checkpoint (`model` / `state_dict` wrappers, `module.` / `_orig_mod.` stripped).

    Not `timm.models.load_state_dict`: it drops the checkpoint's other top-level entries (epoch,
    best_thr), which `load_checkpoint` returns, and prefers EMA weights over the trained ones.
    """
    extras: dict[str, Any] = {}
    if isinstance(obj, Mapping):
        for wrapper in ("model", "state_dict"):
            if wrapper in obj and isinstance(obj[wrapper], Mapping):
                extras = {k: v for k, v in obj.items() if k != wrapper}
                obj = obj[wrapper]
                break
    if not isinstance(obj, Mapping) or not all(isinstance(v, Tensor) for v in obj.values()):
        raise CheckpointError(
            f"{path}: expected a state dict of tensors (optionally under 'model' or 'state_dict')"
        )
    from timm.models import clean_state_dict  # strips DDP `module.` and torch.compile `_orig_mod.` prefixes

    return clean_state_dict(dict(obj)), extras


def read_state_dict(path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors of a weight file and its other top-level entries.

    `.safetensors` files are read with safetensors; anything else with `torch.load(weights_only=True)`
    and `unwrap_state_dict`. A missing or unreadable file raises an error naming it.
    """
    path = Path(path)
    if not path.is_file():
        raise MissingFileError(f"weight file {path} does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path)), {}
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # noqa: BLE001 - re-raised with the file name
        raise CheckpointError(f"{path}: cannot be read as a torch checkpoint: {error}") from error
    return unwrap_state_dict(obj, path)


def check_keys(
    expected: Mapping[str, Tensor],
    given: Mapping[str, Tensor],
    header: str,
    may_miss: tuple[str, ...] = (),
) -> None:
    """Raise CheckpointError(header + lists of missing, unexpected and wrongly shaped keys), if any.

    Keys of `expected` starting with a prefix in `may_miss` may be absent from `given`.
    """
    missing = sorted(k for k in expected if k not in given and not k.startswith(may_miss))
    unexpected = sorted(set(given) - set(expected))
    shapes = sorted(
        f"{k}: file {tuple(given[k].shape)} vs model {tuple(v.shape)}"
        for k, v in expected.items()
        if k in given and tuple(given[k].shape) != tuple(v.shape)
    )
    if missing or unexpected or shapes:
        parts = [header]
        if missing:
            parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
        if shapes:
            parts.append(f"shape mismatches ({len(shapes)}): {'; '.join(shapes)}")
        raise CheckpointError("\n  ".join(parts))


def create_method(
    name: str,
    *,
    num_classes: int,
    backbone: str | None = None,
    pretrained: bool | str | None = None,
    img_size: int | None = None,
    drop_path_rate: float | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **hparams: Any,
) -> WSOLMethod:
    """Build a registered method. Unknown hyperparameters fail, naming the closest valid one.

    As in timm's `create_model`, options and hyperparameters given as None are dropped, so the
    method's own defaults apply (`default_backbone`, `default_hparams`, its constructor's defaults)
    and a method never has to accept an option it does not use only to be told it is unset.
    `pretrained=True` loads the backbone's published weights (timm hub / torchvision names);
    a string is a local weight file. `backbone_kwargs` go through to timm (embed_dim, depth, ...).
    """
    cls = METHODS.get(name)
    unknown = sorted(set(hparams) - set(cls.default_hparams))
    if unknown:
        valid = sorted(cls.default_hparams)
        key = unknown[0]
        raise UnknownHyperparameterError(
            f"method {name!r} has no hyperparameter {key!r}{closest(key, valid)}; "
            f"valid: {', '.join(valid) or '(none)'}"
        )
    options = {"backbone": backbone, "pretrained": pretrained, "img_size": img_size,
               "drop_path_rate": drop_path_rate, "backbone_kwargs": backbone_kwargs, **hparams}
    given = {key: value for key, value in options.items() if value is not None}
    return cls(num_classes=num_classes, **{**cls.default_hparams, **given})
