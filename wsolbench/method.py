"""The WSOLMethod contract that the engine, the CLI and users' notebooks rely on.

A method is an `nn.Module` with four jobs:

- `forward(images) -> MethodOutput`: `.logits` (B, C) always, plus whatever its losses need;
- `loss(output, labels) -> dict`: named scalar terms, `"loss"` being the total that is optimized;
- `localize(images, class_ids=None) -> Localization`: logits and the raw localization maps on the
  feature grid, exactly as the method's card defines them (no upsampling, no normalization);
- `param_groups(protocol)`: which parameters train under `full` / `parameter_efficient`, with lr
  scales and weight-decay flags.

`load_checkpoint(path)` reads our checkpoints and the official ones (`model` / `state_dict`
wrappers, `module.` prefixes); a method adapts anything else in `adapt_state_dict`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from wsolbench.errors import WsolbenchError
from wsolbench.registry import METHODS, closest

PROTOCOLS = ("full", "parameter_efficient", "few_shot")


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


class WSOLMethod(nn.Module):
    """Base class of every method. Subclasses set `name` and `default_hparams`."""

    name: ClassVar[str] = ""
    default_hparams: ClassVar[dict[str, Any]] = {}
    default_backbone: ClassVar[str | None] = None
    weights_hub: ClassVar[str | None] = None  # where `pretrained=True` weights come from: "timm" / "torchvision"

    def forward(self, images: Tensor) -> MethodOutput:  # pragma: no cover - contract
        raise NotImplementedError

    def loss(self, output: MethodOutput, labels: Tensor) -> dict[str, Tensor]:  # pragma: no cover
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

    def param_groups(self, protocol: str, **options: Any) -> list[ParamGroup]:  # pragma: no cover
        raise NotImplementedError

    def adapt_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Map an official checkpoint's keys onto ours; the default keeps them as they are."""
        return state_dict

    def load_checkpoint(self, path: str | Path) -> dict[str, Any]:
        """Load weights strictly; returns the checkpoint's other top-level entries (epoch, best_thr…).

        Accepts a bare state dict or one wrapped in `model` / `state_dict`, with or without the
        `module.` prefix of DataParallel/DDP. Raises CheckpointError naming every missing,
        unexpected or wrongly shaped key.
        """
        state_dict, extras = read_state_dict(path)
        state_dict = self.adapt_state_dict(state_dict)
        check_state_dict(self, state_dict, path)
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
        raise FileNotFoundError(f"weight file {path} does not exist")
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


def check_state_dict(model: nn.Module, state_dict: Mapping[str, Tensor], path: Path | str) -> None:
    """Raise CheckpointError listing missing, unexpected and wrongly shaped keys, if any."""
    check_keys(model.state_dict(), state_dict, f"{path} does not fit {type(model).__name__}:")


def create_method(
    name: str,
    *,
    num_classes: int,
    backbone: str | None = None,
    pretrained: bool | str = False,
    img_size: int | None = None,
    drop_path_rate: float | None = None,
    backbone_kwargs: dict[str, Any] | None = None,
    **hparams: Any,
) -> WSOLMethod:
    """Build a registered method. Unknown hyperparameters fail, naming the closest valid one.

    `pretrained=True` loads the backbone's published weights (timm hub / torchvision names);
    a string is a local weight file. `backbone_kwargs` go through to timm (embed_dim, depth, ...).
    """
    cls = METHODS.get(name)
    unknown = sorted(set(hparams) - set(cls.default_hparams))
    if unknown:
        valid = sorted(cls.default_hparams)
        key = unknown[0]
        raise TypeError(
            f"method {name!r} has no hyperparameter {key!r}{closest(key, valid)}; "
            f"valid: {', '.join(valid) or '(none)'}"
        )
    return cls(
        num_classes=num_classes,
        backbone=backbone or cls.default_backbone,
        pretrained=pretrained,
        img_size=img_size,
        drop_path_rate=drop_path_rate,
        backbone_kwargs=dict(backbone_kwargs or {}),
        **{**cls.default_hparams, **hparams},
    )
