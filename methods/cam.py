"""CAM (Zhou et al., CVPR 2016) on wsolevaluation's modified backbones
(https://github.com/clovaai/wsolevaluation, `wsol/`; docs/methods.md).

`create_method("cam", backbone=...)` builds one of three families, each with state-dict keys equal
to the official wsolevaluation checkpoints (so `load_checkpoint` reads them unchanged):

- `resnet50` (and `resnet18`, the tiny option with the same changes): torchvision ResNet, layer4
  stride 1, layer3 stride 2 (1 with `large_feature_map`); head GAP → fc. CAM from layer4.
- `vgg16`: the 13 torchvision convs without the 5th pool (nor the 4th with `large_feature_map`);
  head conv6 (3x3, 512→1024) + ReLU → GAP → fc. CAM from conv6 + ReLU.
- `inception_v3`: torchvision stem … Mixed_6e with a padded Conv2d_1a, padded ceil-mode stem pools,
  a non-reducing Mixed_6a and an extra pool after Mixed_5d (omitted with `large_feature_map`);
  head dropout/SPG_A3_1b/dropout/SPG_A3_2b/dropout/SPG_A4 (1x1 conv to C) → GAP. CAM = SPG_A4 map.

A 224 input gives a 14x14 feature grid (28x28 with `large_feature_map`). The CNNs take any input
size, so `img_size` is not used; of the other backbone options only `pretrained` applies.

CAM of class k (ResNet/VGG): mean over channels c of W_fc[k, c] · F_c(y, x), no bias, no ReLU,
as wsolevaluation's `wsol/resnet.py` and `wsol/vgg.py` compute it. Inception: channel k of the
SPG_A4 output, bias included.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models import inception as tv_inception

from wsolbench.contracts.method import (
    Localization,
    MethodOptionError,
    MethodOutput,
    ParamGroup,
    WSOLMethod,
    check_keys,
    read_state_dict,
)
from wsolbench.registry import register_method
from wsolbench.weights import published_file, published_weights


@register_method("cam")
class CAM(WSOLMethod):
    """CAM on a wsolevaluation backbone; `CAM(backbone=...)` returns the backbone family's subclass.

    Hyperparameters (wsolevaluation's names): `large_feature_map` (28x28 instead of 14x14 grid at 224 px),
    `lr_classifier_ratio` (the lr multiplier of the family's "classifier" group).
    """

    name: ClassVar[str] = "cam"
    display_name: ClassVar[str] = "CAM"
    default_hparams: ClassVar[dict[str, Any]] = {"large_feature_map": False, "lr_classifier_ratio": 10.0}
    default_backbone: ClassVar[str | None] = "resnet50"
    weights_hub: ClassVar[str | None] = "torchvision"
    backbones: ClassVar[tuple[str, ...]] = ("resnet50", "vgg16", "inception_v3", "resnet18")
    backbone_names: ClassVar[dict[str, str]] = {"resnet50": "ResNet50", "vgg16": "VGG16", "inception_v3": "InceptionV3",
                                                "resnet18": "ResNet18"}
    backbone_options: ClassVar[tuple[str, ...]] = ("pretrained",)

    def __new__(cls, *args: Any, backbone: str | None = None, **kwargs: Any) -> CAM:
        if cls is CAM:
            backbone = backbone or CAM.default_backbone
            families: dict[str, type[CAM]] = {
                "resnet18": ResNetCAM,
                "resnet50": ResNetCAM,
                "vgg16": VggCAM,
                "inception_v3": InceptionCAM,
            }
            if backbone not in families:
                raise MethodOptionError(f"cam: unknown backbone {backbone!r}; valid: {', '.join(CAM.backbones)}")
            cls = families[backbone]
        return super().__new__(cls)

    def __init__(self, *, large_feature_map: bool = False, lr_classifier_ratio: float = 10.0, **options: Any) -> None:
        super().__init__(**options)
        if not isinstance(large_feature_map, bool):
            raise MethodOptionError(f"cam: large_feature_map must be true or false, got {large_feature_map!r}")
        if lr_classifier_ratio <= 0:
            raise MethodOptionError(f"cam: lr_classifier_ratio must be > 0, got {lr_classifier_ratio}")
        self.large_feature_map = large_feature_map
        self.lr_classifier_ratio = float(lr_classifier_ratio)
        self._build()
        self._init_weights()
        if self.pretrained:
            self.load_pretrained(self.pretrained)

    # ------------------------------------------------------------------ family hooks

    def _build(self) -> None:  # pragma: no cover - contract
        raise NotImplementedError

    def _init_weights(self) -> None:  # pragma: no cover - contract
        raise NotImplementedError

    def feature_map(self, images: Tensor) -> Tensor:
        """(B, K, h, w): the map the CAM is taken from (ResNet/VGG features, Inception class maps)."""
        raise NotImplementedError  # pragma: no cover - contract

    def classify(self, features: Tensor) -> Tensor:
        """Logits (B, C) from `features`."""
        raise NotImplementedError  # pragma: no cover - contract

    def class_maps(self, features: Tensor, class_ids: Tensor) -> Tensor:
        """Raw CAMs (B, h, w) of `class_ids` (B,) from `features`."""
        raise NotImplementedError  # pragma: no cover - contract

    def is_classifier_param(self, name: str) -> bool:
        """Whether parameter `name` is in the lr × lr_classifier_ratio group."""
        raise NotImplementedError  # pragma: no cover - contract

    head_modules: tuple[str, ...] = ()  # the new head: what parameter_efficient trains
    stage_modules: tuple[tuple[str, ...], ...] = ()  # backbone stages as module names, last stage first

    def adapt_torchvision(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """A torchvision ImageNet state dict mapped onto this model, classifier keys dropped."""
        raise NotImplementedError  # pragma: no cover - contract

    # ------------------------------------------------------------------ the contract

    def forward(self, images: Tensor) -> MethodOutput:
        features = self.feature_map(images)
        return MethodOutput(self.classify(features), {"features": features})

    @torch.no_grad()
    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:
        """Logits and raw CAMs on the feature grid of `class_ids` (GT), or of the top-1 class when None.

        The caller sets eval mode (Inception's head dropout is active in training mode).
        """
        features = self.feature_map(images)
        logits = self.classify(features)
        return Localization(logits, self.class_maps(features, self.target_classes(logits, class_ids)))

    # ------------------------------------------------------------------ parameter groups

    def own_parameters(self) -> tuple[str, ...]:
        """The new head (ResNet: fc; VGG: conv6 + fc; Inception: SPG_*)."""
        return self.head_modules

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """ResNet: layer4, layer3, …; VGG: conv blocks 5, 4, …; Inception: Mixed_6e, Mixed_6d, …"""
        return self.stage_modules

    def empty_param_groups(self) -> list[ParamGroup]:
        """`base` (lr × 1) and `classifier` (lr × lr_classifier_ratio), both with weight decay.

        Under `parameter_efficient` each trained stage keeps its full-regime multiplier.
        """
        return [ParamGroup("base", [], 1.0, True), ParamGroup("classifier", [], self.lr_classifier_ratio, True)]

    def param_group_of(self, name: str, param: nn.Parameter) -> str:
        """`classifier` for what wsolevaluation's name rule puts at 10x (ResNet: layer4 + fc; VGG: conv6 + fc;
        Inception: the SPG_* head), `base` for the rest."""
        return "classifier" if self.is_classifier_param(name) else "base"

    # ------------------------------------------------------------------ ImageNet weights

    def load_pretrained(self, pretrained: bool | str) -> None:
        """Load torchvision ImageNet weights: `True` → torchvision's IMAGENET1K_V1 file, the file wsolevaluation
        loads (from the torch hub cache, downloaded when missing; WeightsError within seconds when it cannot
        be had), a path → that file.

        Classifier keys wsolevaluation drops are removed (`adapt_torchvision`); every other key must fit,
        and only this model's new head may be left missing, else CheckpointError lists the keys.
        """
        if pretrained is True:
            pretrained = published_file(published_weights(self.weights_hub, self.backbone_name), self.name)
        source = str(pretrained)
        state_dict, _ = read_state_dict(pretrained)
        state_dict = self.adapt_torchvision(state_dict)
        check_keys(
            self.state_dict(),
            state_dict,
            f"{source} does not fit cam/{self.backbone_name} as torchvision ImageNet weights:",
            may_miss=tuple(f"{q}." for q in self.head_modules),
        )
        self.load_state_dict(state_dict, strict=False)


def _drop(state_dict: dict[str, Tensor], prefixes: tuple[str, ...]) -> dict[str, Tensor]:
    return {k: v for k, v in state_dict.items() if not k.startswith(prefixes)}


def _linear_cam(weight: Tensor, features: Tensor, class_ids: Tensor) -> Tensor:
    """mean_c W[k, c] · F_c(y, x) for each image's class k: (B, h, w)."""
    return torch.einsum("bc,bchw->bhw", weight[class_ids], features) / features.shape[1]


class ResNetCAM(CAM):
    """ResNet CAM (wsolevaluation `wsol/resnet.py`): layer4 stride 1, layer3 stride 2 (1 with large_feature_map)."""

    head_modules = ("fc",)
    stage_modules = (("layer4",), ("layer3",), ("layer2",), ("layer1",))

    def _build(self) -> None:
        net = getattr(torchvision.models, self.backbone_name)(weights=None)
        for stage, stride in (("layer3", 1 if self.large_feature_map else 2), ("layer4", 1)):
            _set_first_block_stride(getattr(net, stage)[0], stride)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"):
            setattr(self, name, getattr(net, name))
        self.fc = nn.Linear(net.fc.in_features, self.num_classes)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def feature_map(self, images: Tensor) -> Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(images))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))

    def classify(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))

    def class_maps(self, features: Tensor, class_ids: Tensor) -> Tensor:
        return _linear_cam(self.fc.weight, features, class_ids)

    def is_classifier_param(self, name: str) -> bool:
        return name.startswith(("layer4.", "fc."))

    def adapt_torchvision(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Keeps the ImageNet fc only when it fits (1000 classes: ILSVRC, as wsolevaluation), else drops it."""
        fc = state_dict.get("fc.weight")
        if fc is not None and fc.shape == self.fc.weight.shape:
            return dict(state_dict)
        return _drop(state_dict, ("fc.",))


def _set_first_block_stride(block: nn.Module, stride: int) -> None:
    """Set the stride of a torchvision Basic/Bottleneck block (its strided conv and downsample)."""
    strided = block.conv2 if isinstance(block, torchvision.models.resnet.Bottleneck) else block.conv1
    strided.stride = (stride, stride)
    if block.downsample is not None:
        block.downsample[0].stride = (stride, stride)


class VggCAM(CAM):
    """VGG16 CAM (wsolevaluation `wsol/vgg.py`): 13 convs without the 5th pool (nor the 4th with large_feature_map)."""

    head_modules = ("conv6", "fc")

    def _build(self) -> None:
        pools_kept = 3 if self.large_feature_map else 4
        layers: list[nn.Module] = []
        blocks: list[list[str]] = [[]]  # conv module prefixes per VGG block
        in_channels = 3
        for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512):
            if width == "M":
                if len(blocks) <= pools_kept:
                    layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
                blocks.append([])
                continue
            blocks[-1].append(f"features.{len(layers)}")
            layers += [nn.Conv2d(in_channels, width, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
            in_channels = width
        self.features = nn.Sequential(*layers)
        self.stage_modules = tuple(tuple(block) for block in reversed(blocks))
        self.conv6 = nn.Conv2d(512, 1024, kernel_size=3, padding=1)
        self.fc = nn.Linear(1024, self.num_classes)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0.0, 0.01)
                nn.init.zeros_(module.bias)

    def feature_map(self, images: Tensor) -> Tensor:
        return F.relu(self.conv6(self.features(images)))

    def classify(self, features: Tensor) -> Tensor:
        return self.fc(features.mean(dim=(2, 3)))

    def class_maps(self, features: Tensor, class_ids: Tensor) -> Tensor:
        return _linear_cam(self.fc.weight, features, class_ids)

    def is_classifier_param(self, name: str) -> bool:
        return not name.startswith("features.")

    def adapt_torchvision(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Drops `classifier.*`; re-aligns the `features.N` convs in order onto this model's indices."""
        state_dict = _drop(state_dict, ("classifier.",))
        ours = [int(m.group(1)) for k in self.state_dict()
                if (m := re.fullmatch(r"features\.(\d+)\.weight", k))]
        theirs = sorted({int(m.group(1)) for k in state_dict
                         if (m := re.fullmatch(r"features\.(\d+)\.(?:weight|bias)", k))})
        if len(theirs) != len(ours):
            return state_dict  # the key check in load_pretrained reports the mismatch
        index = dict(zip(theirs, ours, strict=True))
        out = {}
        for key, value in state_dict.items():
            m = re.fullmatch(r"features\.(\d+)\.(weight|bias)", key)
            out[f"features.{index[int(m.group(1))]}.{m.group(2)}" if m else key] = value
        return out


class _NonReducingInceptionB(tv_inception.InceptionB):
    """Mixed_6a with stride-1, padding-1 3x3 convs and max-pool (wsolevaluation)."""

    def __init__(self, in_channels: int) -> None:
        super().__init__(in_channels)
        for conv in (self.branch3x3.conv, self.branch3x3dbl_3.conv):
            conv.stride, conv.padding = (1, 1), (1, 1)

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch3x3 = self.branch3x3(x)
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [branch3x3, branch3x3dbl, F.max_pool2d(x, kernel_size=3, stride=1, padding=1)]


class InceptionCAM(CAM):
    """InceptionV3 CAM (wsolevaluation `wsol/inception.py`): stem … Mixed_6e, then the SPG_A3/SPG_A4
    class-map head."""

    head_modules = ("SPG_A3_1b", "SPG_A3_2b", "SPG_A4")
    stage_modules = tuple((f"Mixed_{n}",) for n in ("6e", "6d", "6c", "6b", "6a", "5d", "5c", "5b"))

    def _build(self) -> None:
        conv = tv_inception.BasicConv2d  # conv (no bias) + BN(eps 0.001) + ReLU
        self.Conv2d_1a_3x3 = conv(3, 32, kernel_size=3, stride=2, padding=1)
        self.Conv2d_2a_3x3 = conv(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = conv(32, 64, kernel_size=3, padding=1)
        self.Conv2d_3b_1x1 = conv(64, 80, kernel_size=1)
        self.Conv2d_4a_3x3 = conv(80, 192, kernel_size=3)
        self.Mixed_5b = tv_inception.InceptionA(192, pool_features=32)
        self.Mixed_5c = tv_inception.InceptionA(256, pool_features=64)
        self.Mixed_5d = tv_inception.InceptionA(288, pool_features=64)
        self.Mixed_6a = _NonReducingInceptionB(288)
        self.Mixed_6b = tv_inception.InceptionC(768, channels_7x7=128)
        self.Mixed_6c = tv_inception.InceptionC(768, channels_7x7=160)
        self.Mixed_6d = tv_inception.InceptionC(768, channels_7x7=160)
        self.Mixed_6e = tv_inception.InceptionC(768, channels_7x7=192)
        self.SPG_A3_1b = nn.Sequential(nn.Conv2d(768, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.SPG_A3_2b = nn.Sequential(nn.Conv2d(1024, 1024, kernel_size=3, padding=1), nn.ReLU(inplace=True))
        self.SPG_A4 = nn.Conv2d(1024, self.num_classes, kernel_size=1)

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.xavier_uniform_(module.weight)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def feature_map(self, images: Tensor) -> Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(images)))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, kernel_size=3, stride=2, padding=1, ceil_mode=True)
        x = self.Mixed_5d(self.Mixed_5c(self.Mixed_5b(x)))
        if not self.large_feature_map:
            x = F.max_pool2d(x, kernel_size=3, stride=2, ceil_mode=True)
        x = self.Mixed_6e(self.Mixed_6d(self.Mixed_6c(self.Mixed_6b(self.Mixed_6a(x)))))
        x = self.SPG_A3_1b(F.dropout(x, 0.5, self.training))
        x = self.SPG_A3_2b(F.dropout(x, 0.5, self.training))
        return self.SPG_A4(F.dropout(x, 0.5, self.training))

    def classify(self, features: Tensor) -> Tensor:
        return features.mean(dim=(2, 3))

    def class_maps(self, features: Tensor, class_ids: Tensor) -> Tensor:
        return features[torch.arange(features.shape[0], device=features.device), class_ids]

    def is_classifier_param(self, name: str) -> bool:
        return not ("Mixed" in name or re.match(r"Conv2d_[1-4]", name) is not None)

    def adapt_torchvision(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Drops `fc.*`, `AuxLogits.*` and the removed `Mixed_7*` blocks."""
        return _drop(state_dict, ("fc.", "AuxLogits.", "Mixed_7"))
