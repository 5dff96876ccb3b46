"""The method contract that lives in the base class: common options, the factory's None handling,
the cross-entropy loss, the class_ids check and param_groups from the hooks, alike for every method."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from torch import Tensor, nn

import wsolbench
from wsolbench.contracts.method import REGIMES, Localization, MethodOptionError, MethodOutput, WSOLMethod
from wsolbench.errors import WsolbenchError
from wsolbench.registry import METHODS, register_method

MINI = "contract_mini"
VIT = {"backbone": "deit_tiny_patch16_224", "img_size": 32, "drop_path_rate": 0.0,
       "backbone_kwargs": {"embed_dim": 32, "depth": 3, "num_heads": 2}}


class Mini(WSOLMethod):
    """Two backbone stages (`stage1` with a bias, `stage2` without), a bias-free 1x1 head as its own
    part, a 2-D `prototype` kept out of weight decay by name, and a fixed `kernel` that never trains."""

    name: ClassVar[str] = MINI
    default_hparams: ClassVar[dict[str, Any]] = {"width": 4}
    default_backbone: ClassVar[str | None] = "mini"
    backbones: ClassVar[tuple[str, ...]] = ("mini",)
    backbone_options: ClassVar[tuple[str, ...]] = ("pretrained",)
    frozen_parameters: ClassVar[tuple[str, ...]] = ("kernel",)

    def __init__(self, *, width: int, **options: Any) -> None:
        super().__init__(**options)
        self.width = width
        self.kernel = nn.Parameter(torch.ones(3, 3), requires_grad=False)
        self.stage1 = nn.Conv2d(3, width, 3, padding=1)
        self.stage2 = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.head = nn.Conv2d(width, self.num_classes, 1, bias=False)
        self.prototype = nn.Parameter(torch.zeros(1, width))

    def own_parameters(self) -> tuple[str, ...]:
        return ("head",)

    def stages(self) -> tuple[tuple[str, ...], ...]:
        return (("stage2",), ("stage1",))

    def no_weight_decay(self) -> set[str]:
        return {"prototype"}

    def forward(self, images: Tensor) -> MethodOutput:
        cams = self.head(self.stage2(self.stage1(images)))
        return MethodOutput(cams.mean(dim=(2, 3)), {"cams": cams})

    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:
        output = self(images)
        ids = self.target_classes(output.logits, class_ids)
        return Localization(output.logits, output.extras["cams"][torch.arange(len(ids)), ids])


if MINI not in METHODS._items:
    register_method(MINI)(Mini)


def mini(**options: Any) -> Mini:
    return wsolbench.create_method(MINI, num_classes=3, **options)


def names(groups) -> list[tuple[str, list[str]]]:
    return [(g.name, [n for n, _ in g.params]) for g in groups]


# ----------------------------------------------------------------------------- options and factory


def test_factory_drops_none_options_so_defaults_apply() -> None:
    model = mini(backbone=None, pretrained=None, img_size=None, drop_path_rate=None, backbone_kwargs=None,
                 width=None)
    assert (model.num_classes, model.backbone_name, model.pretrained) == (3, "mini", False)
    assert (model.img_size, model.drop_path_rate, model.backbone_kwargs, model.width) == (None, None, {}, 4)
    assert mini(width=6, img_size=48).head.in_channels == 6
    sat = wsolbench.create_method("sat", num_classes=3, area_threshold=None, **VIT)
    assert sat.area_threshold == 0.25  # default_hparams, not None
    ts_cam = wsolbench.create_method("ts_cam", num_classes=3, **{**VIT, "drop_path_rate": None})
    assert ts_cam.backbone.blocks[-1].drop_path1.drop_prob == pytest.approx(0.1)  # TS-CAM's own default
    with pytest.raises(TypeError, match=r"no hyperparameter 'widht' \(did you mean 'width'\?\)"):
        mini(widht=None)


def test_options_a_method_cannot_honour_fail_naming_them() -> None:
    assert mini(drop_path_rate=0.0, backbone_kwargs={}).drop_path_rate == 0.0  # unset values are fine
    with pytest.raises(MethodOptionError, match=r"contract_mini: backbone mini takes no drop_path_rate; got 0\.1"):
        mini(drop_path_rate=0.1)
    with pytest.raises(MethodOptionError, match=r"takes no backbone_kwargs; got \{'depth': 2\}"):
        mini(backbone_kwargs={"depth": 2})
    with pytest.raises(MethodOptionError, match="cam: backbone resnet18 takes no drop_path_rate; got 0.1"):
        wsolbench.create_method("cam", num_classes=3, backbone="resnet18", drop_path_rate=0.1)
    with pytest.raises(MethodOptionError, match="center: the method has no backbone, so backbone_kwargs"):
        wsolbench.create_method("center", num_classes=3, backbone_kwargs={"depth": 2})
    with pytest.raises(MethodOptionError, match="num_classes must be ≥ 1, got 0"):
        wsolbench.create_method(MINI, num_classes=0)
    assert issubclass(MethodOptionError, WsolbenchError) and issubclass(MethodOptionError, ValueError)


# ----------------------------------------------------------------------------- loss and class_ids


def test_default_loss_is_cross_entropy() -> None:
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 3.0]])
    labels = torch.tensor([0, 1])
    terms = mini().loss(MethodOutput(logits), labels)
    reference = sum(torch.logsumexp(row, 0) - row[y] for row, y in zip(logits, labels, strict=True)) / 2
    assert set(terms) == {"loss", "cls"} and terms["loss"] is terms["cls"]
    torch.testing.assert_close(terms["loss"], reference)


def test_target_classes() -> None:
    model = mini()
    logits = torch.tensor([[0.0, 2.0, 1.0], [3.0, 0.0, 1.0]])
    assert model.target_classes(logits, None).tolist() == [1, 0]
    given = model.target_classes(logits, torch.tensor([2, 2], dtype=torch.int32))
    assert given.dtype == torch.int64 and given.tolist() == [2, 2]
    with pytest.raises(MethodOptionError, match=r"contract_mini\.localize: class_ids must have shape \(2,\), "
                                                r"got \(1, 2\)"):
        model.target_classes(logits, torch.tensor([[2, 2]]))


# ----------------------------------------------------------------------------- param_groups from the hooks


def test_full_trains_everything_but_frozen_parameters() -> None:
    model = mini()
    groups = model.param_groups("full")
    assert names(groups) == [("decay", ["stage1.weight", "stage2.weight", "head.weight"]),
                             ("no_decay", ["prototype", "stage1.bias"])]  # a module's own first
    assert [(g.lr_scale, g.weight_decay) for g in groups] == [(1.0, True), (1.0, False)]
    assert names(model.param_groups("few_shot")) == names(groups)
    with pytest.raises(MethodOptionError, match="trainable_blocks applies to parameter_efficient only, not 'full'"):
        model.param_groups("full", trainable_blocks=1)
    with pytest.raises(MethodOptionError, match=r"unknown training regime 'linear'; valid: full, parameter_efficient"):
        model.param_groups("linear")


def test_parameter_efficient_trains_own_parts_and_last_stages_without_empty_groups() -> None:
    model = mini()
    assert names(model.param_groups("parameter_efficient")) == [("decay", ["head.weight"])]
    assert names(model.param_groups("parameter_efficient", trainable_blocks=1)) == [
        ("decay", ["stage2.weight", "head.weight"])]
    assert names(model.param_groups("parameter_efficient", trainable_blocks=2)) == [
        ("decay", ["stage1.weight", "stage2.weight", "head.weight"]), ("no_decay", ["stage1.bias"])]
    for bad in (3, -1):
        with pytest.raises(MethodOptionError, match=rf"contract_mini \(mini\): trainable_blocks must lie in "
                                                    rf"\[0, 2\], got {bad}"):
            model.param_groups("parameter_efficient", trainable_blocks=bad)


def builtin_models() -> dict[str, WSOLMethod]:
    torch.manual_seed(0)
    return {
        "cam": wsolbench.create_method("cam", num_classes=3, backbone="resnet18", img_size=32),
        "sat": wsolbench.create_method("sat", num_classes=3, **VIT),
        "ts_cam": wsolbench.create_method("ts_cam", num_classes=3, **VIT),
        "scm": wsolbench.create_method("scm", num_classes=3, **VIT),
        "center": wsolbench.create_method("center", num_classes=3, img_size=32),
    }


def test_every_method_follows_the_same_group_rules() -> None:
    for name, model in builtin_models().items():
        trainable = {n for n, _ in model.named_parameters() if n not in model.frozen_parameters}
        stages = model.stages()
        for regime in REGIMES:
            for blocks in range(len(stages) + 1) if regime == "parameter_efficient" else [0]:
                groups = model.param_groups(regime, trainable_blocks=blocks)
                listed = [n for g in groups for n, _ in g.params]
                assert all(g.params for g in groups), (name, regime, blocks)  # no empty group
                assert len(listed) == len(set(listed)) and set(listed) <= trainable, (name, regime)
                if regime != "parameter_efficient":
                    assert set(listed) == trainable, (name, regime)
        if not trainable:
            assert name == "center" and model.param_groups("parameter_efficient", trainable_blocks=2) == []
            continue
        with pytest.raises(MethodOptionError, match=f"{name}: trainable_blocks applies to parameter_efficient"):
            model.param_groups("full", trainable_blocks=1)
        with pytest.raises(MethodOptionError, match=rf"trainable_blocks must lie in \[0, {len(stages)}\]"):
            model.param_groups("parameter_efficient", trainable_blocks=len(stages) + 1)


def test_the_documented_example_method_works() -> None:
    """docs/adding-a-method.md's example, run as written."""
    doc = (Path(__file__).resolve().parents[1] / "docs" / "adding-a-method.md").read_text()
    (code,) = re.findall(r"```python\n(.*?)```", doc, flags=re.S)
    if "my_cam" not in METHODS._items:
        exec(compile(code, "adding-a-method.md", "exec"), {"__name__": "docs_example"})
    model = wsolbench.create_method("my_cam", num_classes=3, img_size=None, width=8).eval()
    assert names(model.param_groups("parameter_efficient", trainable_blocks=1)) == [
        ("decay", ["block.0.weight", "head.weight"]), ("no_decay", ["block.0.bias", "head.bias"])]
    loc = model.localize(torch.randn(2, 3, 32, 32), torch.tensor([0, 2]))
    assert loc.logits.shape == (2, 3) and loc.maps.shape == (2, 8, 8)
    with pytest.raises(MethodOptionError, match="my_cam: backbone tiny_cnn takes no pretrained; got True"):
        wsolbench.create_method("my_cam", num_classes=3, pretrained=True)


# ----------------------------------------------------------------------------- official checkpoint names


class Trunked(WSOLMethod):
    """A `trunk` submodule whose entries the "official" checkpoints hold at the top level, and an
    official registration order (`token`, `scale`, `stem`, `head`) that ours (`scale`, `trunk.*`,
    `head`) does not follow."""

    name: ClassVar[str] = "trunked"
    official_flattens: ClassVar[tuple[str, ...]] = ("trunk",)
    official_order: ClassVar[tuple[str, ...]] = ("token", "scale", "stem", "head")

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.scale = nn.Parameter(torch.ones(1, 1))
        self.trunk = nn.Module()
        self.trunk.token = nn.Parameter(torch.zeros(1, 2))
        self.trunk.stem = nn.Conv2d(3, 2, 1)
        self.head = nn.Conv2d(2, self.num_classes, 1)


def trunked(seed: int) -> Trunked:
    torch.manual_seed(seed)
    model = Trunked(num_classes=3)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_()
    return model


def test_official_names_map_one_to_one_in_the_official_order() -> None:
    model = trunked(0)
    assert list(model.state_dict()) == ["scale", "trunk.token", "trunk.stem.weight", "trunk.stem.bias",
                                        "head.weight", "head.bias"]
    assert list(model.official_names().items()) == [
        ("trunk.token", "token"), ("scale", "scale"), ("trunk.stem.weight", "stem.weight"),
        ("trunk.stem.bias", "stem.bias"), ("head.weight", "head.weight"), ("head.bias", "head.bias")]
    official = model.official_state_dict()
    assert list(official) == ["token", "scale", "stem.weight", "stem.bias", "head.weight", "head.bias"]
    assert torch.equal(official["stem.weight"], model.trunk.stem.weight)
    # the optimizer sees the parameters in the official order, under our names
    assert names(model.param_groups("full")) == [("decay", ["trunk.token", "scale", "trunk.stem.weight",
                                                            "head.weight"]),
                                                 ("no_decay", ["trunk.stem.bias", "head.bias"])]


@pytest.mark.parametrize("naming", ["official", "ours"])
def test_checkpoints_under_either_naming_load_exactly(tmp_path, naming) -> None:
    source = trunked(1)
    state = source.official_state_dict() if naming == "official" else source.state_dict()
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}, "epoch": 4}, tmp_path / "c.pth")
    target = trunked(2)
    assert target.load_checkpoint(tmp_path / "c.pth") == {"epoch": 4}
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key


def test_checkpoint_name_errors_name_the_keys(tmp_path) -> None:
    state = trunked(1).official_state_dict()
    torch.save({**state, "trunk.stem.weight": state["stem.weight"]}, tmp_path / "both.pth")
    with pytest.raises(WsolbenchError, match=r"both\.pth: the checkpoint holds trunk\.stem\.weight twice: "
                                             r"as stem\.weight and as trunk\.stem\.weight"):
        trunked(2).load_checkpoint(tmp_path / "both.pth")
    del state["stem.bias"]
    state["tail.weight"] = torch.zeros(1)
    torch.save(state, tmp_path / "partial.pth")
    with pytest.raises(WsolbenchError) as info:
        trunked(2).load_checkpoint(tmp_path / "partial.pth")
    message = str(info.value)
    assert "partial.pth does not fit Trunked (keys by our names; the official ones lack the prefix `trunk.`)" in message
    assert "missing keys (1): trunk.stem.bias" in message and "unexpected keys (1): tail.weight" in message


def test_every_method_loads_its_official_state_dict_exactly(tmp_path) -> None:
    targets = builtin_models()
    for name, source in builtin_models().items():
        official = source.official_names()
        assert sorted(official) == sorted(source.state_dict()), name
        assert len(set(official.values())) == len(official), name  # one-to-one
        with torch.no_grad():
            for param in source.parameters():
                param.add_(1.0)
        torch.save(source.official_state_dict(), tmp_path / f"{name}.pth")
        targets[name].load_checkpoint(tmp_path / f"{name}.pth")
        for key, value in source.state_dict().items():
            assert torch.equal(targets[name].state_dict()[key], value), (name, key)
