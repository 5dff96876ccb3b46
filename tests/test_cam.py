"""CAM baseline (wsolevaluation's, docs/methods.md): maps against the official formula, architecture pins,
official and torchvision weight files, parameter groups and the YAML recipe."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torchvision.models.vgg import cfgs, make_layers

import wsolbench
from wsolbench.config import ExperimentConfig, backbone_layer, merge, method_layer, resolve
from wsolbench.contracts.method import CheckpointError
from wsolbench.registry import METHODS


def cam(backbone: str = "resnet18", num_classes: int = 5, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return wsolbench.create_method("cam", num_classes=num_classes, backbone=backbone, **kwargs).eval()


def reference_linear_cam(weight: torch.Tensor, features: torch.Tensor, k: int, b: int) -> torch.Tensor:
    """CAM_k(y, x) = (1/K) Σ_c W[k, c] F_c(y, x), summed with an explicit loop over channels."""
    out = torch.zeros(features.shape[2:], dtype=torch.float64)
    for c in range(features.shape[1]):
        out += weight[k, c].double() * features[b, c].double()
    return out / features.shape[1]


@pytest.fixture(scope="module")
def vgg200():
    return cam("vgg16", num_classes=200)


@pytest.fixture(scope="module")
def inception200():
    return cam("inception_v3", num_classes=200)


# ----------------------------------------------------------------------------- registry


def test_registered_with_card_attributes():
    cls = METHODS.get("cam")
    assert cls.name == "cam" and cls.default_backbone == "resnet50"
    assert set(cls.backbones) == {"resnet50", "vgg16", "inception_v3", "resnet18"}
    assert cls.default_hparams == {"large_feature_map": False, "lr_classifier_ratio": 10.0}
    with pytest.raises(ValueError, match="unknown backbone 'resnet34'.*resnet50"):
        wsolbench.create_method("cam", num_classes=3, backbone="resnet34")
    with pytest.raises(ValueError, match="backbone_kwargs"):
        wsolbench.create_method("cam", num_classes=3, backbone="resnet18", backbone_kwargs={"depth": 2})


# ----------------------------------------------------------------------------- maps


@pytest.mark.parametrize("backbone", ["resnet18", "vgg16"])
def test_linear_cam_matches_card_formula(backbone):
    model = cam(backbone)
    images = torch.randn(2, 3, 64, 64)
    out = model(images)
    features = out.extras["features"]
    # the features are what GAP + fc classify, and are post-ReLU
    gap_fc = features.mean(dim=(2, 3)) @ model.fc.weight.T + model.fc.bias
    assert torch.allclose(out.logits, gap_fc, atol=1e-5)
    assert features.min() >= 0
    assert features.shape[1] == {"resnet18": 512, "vgg16": 1024}[backbone]
    gt = torch.tensor([3, 1])
    loc = model.localize(images, gt)
    assert loc.maps.shape == (2, 4, 4)
    assert torch.allclose(loc.logits, out.logits)
    for b in range(2):
        ref = reference_linear_cam(model.fc.weight, features, int(gt[b]), b)
        assert torch.allclose(loc.maps[b].double(), ref, atol=1e-5)
    top1 = model.localize(images)
    for b in range(2):
        ref = reference_linear_cam(model.fc.weight, features, int(out.logits[b].argmax()), b)
        assert torch.allclose(top1.maps[b].double(), ref, atol=1e-5)


def test_inception_cam_is_spg_a4_channel_with_bias():
    model = cam("inception_v3", num_classes=4)
    torch.nn.init.normal_(model.SPG_A4.bias)  # a non-zero bias must appear in the map
    captured = {}
    model.SPG_A4.register_forward_hook(lambda module, inputs, output: captured.update(x=inputs[0]))
    images = torch.randn(2, 3, 64, 64)
    loc = model.localize(images, torch.tensor([2, 0]))
    x = captured["x"]
    for b, k in enumerate([2, 0]):
        ref = torch.zeros(x.shape[2:])
        for c in range(x.shape[1]):
            ref += model.SPG_A4.weight[k, c, 0, 0] * x[b, c]
        ref += model.SPG_A4.bias[k]
        assert torch.allclose(loc.maps[b], ref, atol=1e-5)
    assert torch.allclose(loc.logits, model(images).logits, atol=1e-6)
    assert loc.maps.shape == (2, 4, 4)


def test_localize_rejects_bad_class_ids_and_loss_terms():
    model = cam()
    images = torch.randn(2, 3, 32, 32)
    with pytest.raises(ValueError, match=r"class_ids must have shape \(2,\)"):
        model.localize(images, torch.tensor([1, 2, 3]))
    out = model(images)
    labels = torch.tensor([0, 4])
    terms = model.loss(out, labels)
    assert set(terms) == {"loss", "cls"}
    assert torch.allclose(terms["loss"], F.cross_entropy(out.logits, labels))


# ----------------------------------------------------------------------------- architecture


def test_resnet_strides_and_grid():
    small, large = cam("resnet18"), cam("resnet18", large_feature_map=True)
    assert small.layer4[0].conv1.stride == (1, 1) and small.layer4[0].downsample[0].stride == (1, 1)
    assert small.layer3[0].conv1.stride == (2, 2) and small.layer3[0].downsample[0].stride == (2, 2)
    assert large.layer3[0].conv1.stride == (1, 1) and large.layer3[0].downsample[0].stride == (1, 1)
    x = torch.randn(1, 3, 224, 224)
    assert small.localize(x).maps.shape == (1, 14, 14)
    assert large.localize(x[..., :112, :112]).maps.shape == (1, 14, 14)

    r50 = cam("resnet50", num_classes=200)
    block = r50.layer4[0]
    assert isinstance(block, torchvision.models.resnet.Bottleneck)
    assert block.conv1.stride == (1, 1) and block.conv2.stride == (1, 1)
    assert block.downsample[0].stride == (1, 1) and r50.layer3[0].conv2.stride == (2, 2)
    n = sum(p.numel() for p in r50.parameters())
    assert n == 25_557_032 - (2048 * 1000 + 1000) + (2048 * 200 + 200) == 23_917_832
    assert r50(torch.randn(1, 3, 64, 64)).extras["features"].shape == (1, 2048, 4, 4)


def test_vgg_layers_and_grid(vgg200):
    small, large = vgg200, cam("vgg16", num_classes=3, large_feature_map=True)
    pools = [i for i, m in enumerate(small.features) if isinstance(m, torch.nn.MaxPool2d)]
    assert pools == [4, 9, 16, 23]
    assert [i for i, m in enumerate(large.features) if isinstance(m, torch.nn.MaxPool2d)] == [4, 9, 16]
    convs = [m for m in small.features if isinstance(m, torch.nn.Conv2d)]
    assert len(convs) == 13 and all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in small.modules())
    assert (small.conv6.in_channels, small.conv6.out_channels, small.conv6.kernel_size) == (512, 1024, (3, 3))
    n = sum(p.numel() for p in small.parameters())
    assert n == 14_714_688 + (512 * 9 * 1024 + 1024) + (1024 * 200 + 200) == 19_639_304
    x = torch.randn(1, 3, 64, 64)
    assert small.localize(x).maps.shape == (1, 4, 4)
    assert large.localize(x).maps.shape == (1, 8, 8)


def test_inception_resolution_path(inception200):
    model = inception200
    names = ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "Conv2d_3b_1x1", "Conv2d_4a_3x3",
             "Mixed_5b", "Mixed_5d", "Mixed_6a", "Mixed_6e", "SPG_A3_1b", "SPG_A4"]
    sizes = {}
    hooks = [
        getattr(model, name).register_forward_hook(
            lambda module, inputs, output, name=name: sizes.__setitem__(name, output.shape[-1]))
        for name in names
    ]
    model(torch.randn(1, 3, 224, 224))
    for hook in hooks:
        hook.remove()
    # wsolevaluation's InceptionV3: 112 → 110 → 110 → 56 → 56 → 54 → 28 (Mixed_5x) → 14 (extra pool) → 14 (Mixed_6x)
    assert sizes == {"Conv2d_1a_3x3": 112, "Conv2d_2a_3x3": 110, "Conv2d_2b_3x3": 110, "Conv2d_3b_1x1": 56,
                     "Conv2d_4a_3x3": 54, "Mixed_5b": 28, "Mixed_5d": 28, "Mixed_6a": 14, "Mixed_6e": 14,
                     "SPG_A3_1b": 14, "SPG_A4": 14}
    assert model.Conv2d_1a_3x3.conv.padding == (1, 1) and model.Conv2d_1a_3x3.bn.eps == 1e-3
    assert model.Mixed_6a.branch3x3.conv.stride == (1, 1)
    assert model.Mixed_6a.branch3x3dbl_3.conv.stride == (1, 1)
    assert not hasattr(model, "Mixed_7a") and not hasattr(model, "AuxLogits")
    assert sum(p.numel() for p in model.parameters()) == 25_687_976
    large = cam("inception_v3", num_classes=3, large_feature_map=True)
    assert large.localize(torch.randn(1, 3, 112, 112)).maps.shape == (1, 14, 14)
    # dropout acts in training mode only
    model.train()
    x = torch.randn(1, 3, 64, 64)
    assert not torch.equal(model(x).logits, model(x).logits)
    model.eval()
    assert torch.equal(model(x).logits, model(x).logits)


# ----------------------------------------------------------------------------- checkpoints


def official_resnet18_state_dict(num_classes: int) -> dict[str, torch.Tensor]:
    """wsolevaluation's ResNetCam keys are torchvision's, with a num_classes-way fc."""
    torch.manual_seed(1)
    state = torchvision.models.resnet18(weights=None).state_dict()
    state["fc.weight"] = torch.randn(num_classes, 512)
    state["fc.bias"] = torch.randn(num_classes)
    return state


@pytest.mark.parametrize("prefix", ["", "module."])
def test_official_resnet_checkpoint_loads(tmp_path, prefix):
    state = official_resnet18_state_dict(5)
    path = tmp_path / "last_checkpoint.pth.tar"
    torch.save({"architecture": "resnet18", "epoch": 3,
                "state_dict": {prefix + k: v for k, v in state.items()}}, path)
    model = cam()
    extras = model.load_checkpoint(path)
    assert extras == {"architecture": "resnet18", "epoch": 3}
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key]), key


def test_official_vgg_and_inception_checkpoints_load(tmp_path, vgg200, inception200):
    vgg_state = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    vgg_state.update({"conv6.weight": torch.randn(1024, 512, 3, 3), "conv6.bias": torch.randn(1024),
                      "fc.weight": torch.randn(200, 1024), "fc.bias": torch.randn(200)})
    torch.save({"state_dict": vgg_state}, tmp_path / "vgg.pth.tar")
    model = vgg200
    model.load_checkpoint(tmp_path / "vgg.pth.tar")
    assert all(torch.equal(v, vgg_state[k]) for k, v in model.state_dict().items())

    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    inc_state = {k: v for k, v in tv.items() if not k.startswith(("Mixed_7", "AuxLogits.", "fc."))}
    inc_state.update({"SPG_A3_1b.0.weight": torch.randn(1024, 768, 3, 3),
                      "SPG_A3_1b.0.bias": torch.randn(1024),
                      "SPG_A3_2b.0.weight": torch.randn(1024, 1024, 3, 3),
                      "SPG_A3_2b.0.bias": torch.randn(1024),
                      "SPG_A4.weight": torch.randn(200, 1024, 1, 1), "SPG_A4.bias": torch.randn(200)})
    torch.save({"state_dict": inc_state}, tmp_path / "inception.pth.tar")
    model = inception200
    model.load_checkpoint(tmp_path / "inception.pth.tar")
    assert all(torch.equal(v, inc_state[k]) for k, v in model.state_dict().items())


def test_wrong_checkpoint_keys_are_listed(tmp_path):
    state = official_resnet18_state_dict(5)
    del state["fc.bias"]
    state["bogus.weight"] = torch.zeros(1)
    state["fc.weight"] = torch.zeros(9, 512)
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        cam().load_checkpoint(tmp_path / "bad.pth")
    message = str(info.value)
    assert "missing keys (1): fc.bias" in message
    assert "unexpected keys (1): bogus.weight" in message
    assert "fc.weight: file (9, 512) vs model (5, 512)" in message


# ----------------------------------------------------------------------------- torchvision weights


def test_torchvision_resnet_weights_drop_fc_unless_1000_classes(tmp_path):
    torch.manual_seed(2)
    tv = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "resnet18-f37072fd.pth"
    torch.save(tv, path)
    model = cam(num_classes=10, pretrained=str(path))
    for key, value in model.state_dict().items():
        if key.startswith("fc."):
            assert value.shape[0] == 10
        else:
            assert torch.equal(value, tv[key]), key
    ilsvrc = cam(num_classes=1000, pretrained=str(path))  # as wsolevaluation: the ImageNet fc is kept
    assert torch.equal(ilsvrc.fc.weight, tv["fc.weight"]) and torch.equal(ilsvrc.fc.bias, tv["fc.bias"])
    tv["layer5.0.weight"] = torch.zeros(1)
    tv["conv1.weight"] = torch.zeros(64, 3, 3, 3)
    del tv["bn1.bias"]
    torch.save(tv, tmp_path / "other.pth")
    with pytest.raises(CheckpointError) as info:
        cam(pretrained=str(tmp_path / "other.pth"))
    message = str(info.value)
    assert "other.pth does not fit cam/resnet18 as torchvision ImageNet weights" in message
    assert "missing keys (1): bn1.bias" in message and "unexpected keys (1): layer5.0.weight" in message
    assert "conv1.weight: file (64, 3, 3, 3) vs model (64, 3, 7, 7)" in message
    with pytest.raises(FileNotFoundError, match="nothing.pth"):
        cam(pretrained=str(tmp_path / "nothing.pth"))


@pytest.mark.parametrize("large_feature_map", [False, True])
def test_torchvision_vgg_weights_drop_classifier_and_realign(tmp_path, large_feature_map):
    torch.manual_seed(3)
    tv = {f"features.{k}": v for k, v in make_layers(cfgs["D"]).state_dict().items()}
    tv_convs = [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28]
    assert sorted({int(k.split(".")[1]) for k in tv}) == tv_convs
    # torchvision's classifier keys (small stand-ins: they must be dropped, whatever their shape)
    tv.update({f"classifier.{i}.{p}": torch.zeros(2) for i in (0, 3, 6) for p in ("weight", "bias")})
    torch.save(tv, tmp_path / "vgg16-397923af.pth")
    model = cam("vgg16", num_classes=10, large_feature_map=large_feature_map,
                pretrained=str(tmp_path / "vgg16-397923af.pth"))
    ours = [i for i, m in enumerate(model.features) if isinstance(m, torch.nn.Conv2d)]
    expected = tv_convs if not large_feature_map else [0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 23, 25, 27]
    assert ours == expected
    for mine, theirs in zip(ours, tv_convs, strict=True):
        assert torch.equal(model.features[mine].weight, tv[f"features.{theirs}.weight"])
        assert torch.equal(model.features[mine].bias, tv[f"features.{theirs}.bias"])
    assert model.fc.weight.shape == (10, 1024)


def test_torchvision_inception_weights_drop_aux_fc_mixed7(tmp_path):
    tv = torchvision.models.inception_v3(weights=None, aux_logits=True, init_weights=False).state_dict()
    torch.save(tv, tmp_path / "inception_v3_google-0cc3c7bd.pth")
    torch.manual_seed(4)
    model = cam("inception_v3", num_classes=10, pretrained=str(tmp_path / "inception_v3_google-0cc3c7bd.pth"))
    state = model.state_dict()
    assert all(torch.equal(v, tv[k]) for k, v in state.items() if not k.startswith("SPG_"))
    assert {k for k in state if k not in tv} == {
        "SPG_A3_1b.0.weight", "SPG_A3_1b.0.bias", "SPG_A3_2b.0.weight", "SPG_A3_2b.0.bias",
        "SPG_A4.weight", "SPG_A4.bias"}


# ----------------------------------------------------------------------------- parameter groups


def group_names(groups):
    return {g.name: ({n for n, _ in g.params}, g.lr_scale, g.weight_decay) for g in groups}


def test_full_protocol_lr_groups_follow_card_name_rules(vgg200, inception200):
    model = cam("resnet18", num_classes=10)
    groups = group_names(model.param_groups("full"))
    classifier, scale, decay = groups["classifier"]
    assert scale == 10.0 and decay and groups["base"][1] == 1.0 and groups["base"][2]
    assert classifier == {n for n, _ in model.named_parameters() if n.startswith(("layer4.", "fc."))}
    assert groups["base"][0] | classifier == {n for n, _ in model.named_parameters()}
    assert model.param_groups("few_shot")[1].numel == model.param_groups("full")[1].numel

    vgg = group_names(vgg200.param_groups("full"))
    assert vgg["classifier"][0] == {"conv6.weight", "conv6.bias", "fc.weight", "fc.bias"}
    assert cam(lr_classifier_ratio=5.0).param_groups("full")[1].lr_scale == 5.0
    assert all(n.startswith("features.") for n in vgg["base"][0])

    inception = inception200
    groups = group_names(inception.param_groups("full"))
    assert groups["classifier"][0] == {"SPG_A3_1b.0.weight", "SPG_A3_1b.0.bias", "SPG_A3_2b.0.weight",
                                       "SPG_A3_2b.0.bias", "SPG_A4.weight", "SPG_A4.bias"}
    with pytest.raises(ValueError, match="unknown training regime 'linear'"):
        inception.param_groups("linear")
    with pytest.raises(ValueError, match="trainable_blocks applies to parameter_efficient only"):
        inception.param_groups("full", trainable_blocks=1)


def test_parameter_efficient_trainable_counts(vgg200, inception200):
    model = cam("resnet18", num_classes=10)
    head = model.param_groups("parameter_efficient")
    assert [g.name for g in head] == ["classifier"] and head[0].numel == 512 * 10 + 10
    with_layer4 = model.param_groups("parameter_efficient", trainable_blocks=1)
    assert sum(g.numel for g in with_layer4) == 5130 + 8_393_728
    with_layer3 = group_names(model.param_groups("parameter_efficient", trainable_blocks=2))
    assert all(n.startswith("layer3.") for n in with_layer3["base"][0])  # layer3 keeps the base lr
    with pytest.raises(ValueError, match=r"trainable_blocks must lie in \[0, 4\], got 5"):
        model.param_groups("parameter_efficient", trainable_blocks=5)

    vgg = vgg200
    assert sum(g.numel for g in vgg.param_groups("parameter_efficient")) == 4_719_616 + 205_000
    block5 = sum(g.numel for g in vgg.param_groups("parameter_efficient", trainable_blocks=1))
    assert block5 == 4_719_616 + 205_000 + 3 * (512 * 512 * 9 + 512)
    pe = inception200.param_groups("parameter_efficient", trainable_blocks=1)
    names = {n for g in pe for n, _ in g.params}
    assert {n.split(".")[0] for n in names} == {"SPG_A3_1b", "SPG_A3_2b", "SPG_A4", "Mixed_6e"}


# ----------------------------------------------------------------------------- recipe YAML


@pytest.mark.parametrize(
    ("dataset", "backbone", "lr", "weight_decay", "lfm", "epochs", "decay_every"),
    [
        ("cub", "vgg16", 1.268269e-5, 5e-4, False, 50, 15),
        ("cub", "resnet50", 2.3222617e-4, 1e-4, True, 50, 15),
        ("cub", "inception_v3", 2.24844746e-3, 5e-4, True, 50, 15),
        ("ilsvrc", "resnet50", 3.108411e-5, 1e-4, True, 10, 3),
        ("ilsvrc", "vgg16", 1.654502e-5, 5e-4, False, 10, 3),
        ("openimages", "vgg16", 2.27913316e-3, 5e-4, False, 10, 3),
        ("openimages", "resnet50", 1.07117324e-3, 1e-4, False, 10, 3),
        ("openimages", "inception_v3", 3e-4, 5e-4, True, 10, 3),
    ],
)
def test_yaml_recipe_per_dataset_and_backbone(dataset, backbone, lr, weight_decay, lfm, epochs, decay_every):
    config = ExperimentConfig()
    merge(config, method_layer("cam", dataset)[0])
    merge(config, backbone_layer("cam", dataset, backbone)[0])
    t = config.train
    assert (t.optimizer, t.momentum, t.schedule, t.lr_decay_factor) == ("sgd", 0.9, "step", 0.1)
    assert t.batch_size == 32
    assert (t.lr, t.weight_decay, t.epochs, t.lr_decay_every) == (lr, weight_decay, epochs, decay_every)
    assert config.method.hparams == {"large_feature_map": lfm, "lr_classifier_ratio": 10.0}
    assert config.method.pretrained is True


def test_yaml_synthetic_uses_tiny_resnet18_from_scratch():
    config = resolve(method="cam", dataset="synthetic")
    assert (config.method.backbone, config.method.pretrained) == ("resnet18", False)
    assert config.train.weight_decay == 1e-4
    vgg = resolve(method="cam", dataset="synthetic", overrides=["method.backbone=vgg16"])
    assert vgg.train.weight_decay == 5e-4
