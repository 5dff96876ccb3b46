"""Pretrained weights: actionable errors within seconds, the hub caches, and local files in timm's formats."""

from __future__ import annotations

import time

import huggingface_hub.constants
import pytest
import timm
import torch
import torchvision
import wsolbench.methods._vit
from click.testing import CliRunner
from safetensors.torch import save_file

from wsolbench.cli import main
from wsolbench.config import resolve
from wsolbench.contracts.method import CheckpointError, create_method
from wsolbench.engine.runner import build_model
from wsolbench.weights import WeightsError, check_pretrained, fetch_pretrained

TINY = {"embed_dim": 64, "depth": 4, "num_heads": 2}  # the synthetic recipe's DeiT


@pytest.fixture
def empty_caches(tmp_path, monkeypatch):
    """Empty Hugging Face and torch hub caches, and no downloads."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return tmp_path


def cli_run(tmp_path, method, *sets):
    args = ["run", "--methods", method, "--dataset", "synthetic", "--set", f"output_dir={tmp_path / 'runs'}",
            "--set", f"dataset.data_root={tmp_path / 'data'}"]
    for setting in sets:
        args += ["--set", setting]
    started = time.perf_counter()
    result = CliRunner().invoke(main, args)
    return result, time.perf_counter() - started


def test_missing_timm_weights_fail_in_seconds_before_any_folder(empty_caches):
    result, seconds = cli_run(empty_caches, "sat", "method.pretrained=true")
    assert result.exit_code == 2, result.output
    message = result.output
    assert "timm weights timm/deit_tiny_patch16_224.fb_in1k (file model.safetensors" in message
    assert "deit_tiny_patch16_224-a1311bcf.pth" in message
    assert "--set method.pretrained=/path/to/deit_tiny_patch16_224-a1311bcf.pth" in message
    assert seconds < 10
    assert not (empty_caches / "runs").exists() and not (empty_caches / "data").exists()


def test_missing_torchvision_weights_fail_in_seconds_before_any_folder(empty_caches):
    result, seconds = cli_run(empty_caches, "cam", "method.pretrained=true")
    assert result.exit_code == 2, result.output
    assert "torchvision weights ResNet18_Weights.IMAGENET1K_V1 (file resnet18-f37072fd.pth" in result.output
    assert "--set method.pretrained=/path/to/resnet18-f37072fd.pth" in result.output
    assert str(empty_caches / "torch") in result.output  # where it looked
    assert seconds < 10
    assert not (empty_caches / "runs").exists()


def test_missing_local_file_fails_before_any_folder(tmp_path):
    result, _ = cli_run(tmp_path, "sat", f"method.pretrained={tmp_path / 'nope.pth'}")
    assert result.exit_code == 2
    assert f"method.pretrained: weight file {tmp_path / 'nope.pth'} does not exist" in result.output
    assert not (tmp_path / "runs").exists()


def test_cached_hub_weights_are_used_offline(empty_caches):
    timm_model = timm.create_model("deit_tiny_patch16_224", img_size=32, num_classes=1000, **TINY)
    snapshot = empty_caches / "hf" / "models--timm--deit_tiny_patch16_224.fb_in1k"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("abc123")
    (snapshot / "snapshots" / "abc123").mkdir(parents=True)
    cached = snapshot / "snapshots" / "abc123" / "model.safetensors"
    save_file(timm_model.state_dict(), str(cached))
    assert "cached" in check_pretrained("sat", "deit_tiny_patch16_224", True)
    assert fetch_pretrained("sat", "deit_tiny_patch16_224", True) == str(cached)

    resnet = torchvision.models.resnet18(weights=None)
    (empty_caches / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(resnet.state_dict(), empty_caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    config = resolve(method="cam", dataset="synthetic", overrides=["method.pretrained=true"])
    cam = build_model(config, num_classes=10)
    torch.testing.assert_close(cam.layer1[0].conv1.weight, resnet.layer1[0].conv1.weight, atol=0, rtol=0)


def test_create_method_cam_pretrained_true_uses_the_same_cache_and_error(empty_caches):
    """The Python API resolves torchvision weights as the CLI does: the torch hub cache, and offline a
    WeightsError naming the file instead of a download."""
    with pytest.raises(WeightsError, match=r"--set method.pretrained=/path/to/resnet18-f37072fd.pth"):
        create_method("cam", num_classes=10, backbone="resnet18", pretrained=True)
    resnet = torchvision.models.resnet18(weights=None)
    (empty_caches / "torch" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(resnet.state_dict(), empty_caches / "torch" / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    cam = create_method("cam", num_classes=10, backbone="resnet18", pretrained=True)
    torch.testing.assert_close(cam.layer1[0].conv1.weight, resnet.layer1[0].conv1.weight, atol=0, rtol=0)


def _cache_timm_file(empty_caches, state) -> None:
    snapshot = empty_caches / "hf" / "models--timm--deit_tiny_patch16_224.fb_in1k"
    (snapshot / "refs").mkdir(parents=True)
    (snapshot / "refs" / "main").write_text("abc123")
    (snapshot / "snapshots" / "abc123").mkdir(parents=True)
    save_file(state, str(snapshot / "snapshots" / "abc123" / "model.safetensors"))


def test_pretrained_true_reads_the_hub_file_once_and_builds_one_timm_model(empty_caches, monkeypatch):
    torch.manual_seed(4)
    published = timm.create_model("deit_tiny_patch16_224", img_size=32, num_classes=1000, **TINY).state_dict()
    _cache_timm_file(empty_caches, published)
    built, read = [], []
    real_create, real_read = timm.create_model, wsolbench.methods._vit.read_state_dict
    monkeypatch.setattr(timm, "create_model", lambda *a, **k: built.append(k) or real_create(*a, **k))
    monkeypatch.setattr(wsolbench.methods._vit, "read_state_dict", lambda *a: read.append(a) or real_read(*a))
    model = create_method("ts_cam", num_classes=1000, backbone="deit_tiny_patch16_224", img_size=32,
                          backbone_kwargs=TINY, pretrained=True)
    assert len(built) == 1 and built[0]["pretrained"] is False and len(read) == 1
    for key in ("cls_token", "pos_embed", "blocks.3.attn.qkv.weight", "norm.bias"):
        torch.testing.assert_close(model.backbone.state_dict()[key], published[key], atol=0, rtol=0)
    torch.testing.assert_close(model.head.bias, published["head.bias"], atol=0, rtol=0)
    # 200 classes: the 1000-way classifier bias does not fit the head and is left alone
    model = create_method("ts_cam", num_classes=200, backbone="deit_tiny_patch16_224", img_size=32,
                          backbone_kwargs=TINY, pretrained=True)
    torch.testing.assert_close(model.backbone.pos_embed, published["pos_embed"], atol=0, rtol=0)
    built.clear()
    read.clear()
    model = create_method("sat", num_classes=200, backbone="deit_tiny_patch16_224", img_size=32,
                          backbone_kwargs=TINY, pretrained=True)
    assert len(built) == 1 and built[0]["pretrained"] is False and len(read) == 1
    torch.testing.assert_close(model.backbone.pos_embed, published["pos_embed"], atol=0, rtol=0)


def test_pretrained_true_without_the_hub_file_fails_naming_the_backbone(empty_caches):
    with pytest.raises(WeightsError, match="deit_tiny_patch16_224: pretrained weights not available.*HF_HUB_OFFLINE"):
        create_method("sat", num_classes=10, backbone="deit_tiny_patch16_224", img_size=32,
                      backbone_kwargs=TINY, pretrained=True)


@pytest.mark.parametrize("layout", ["state_dict.pth", "model_key.pth", "model.safetensors"])
def test_local_deit_file_in_timm_formats_loads(tmp_path, layout):
    torch.manual_seed(1)
    source = timm.create_model("deit_tiny_patch16_224", img_size=64, num_classes=1000, **TINY)
    state = source.state_dict()
    path = tmp_path / layout
    if layout == "state_dict.pth":
        torch.save(state, path)
    elif layout == "model_key.pth":
        torch.save({"model": state, "epoch": 300}, path)
    else:
        save_file(state, str(path))
    config = resolve(method="sat", dataset="synthetic", overrides=[f"method.pretrained={path}"])
    model = build_model(config, num_classes=10)
    for key in ("cls_token", "pos_embed", "patch_embed.proj.weight", "blocks.3.mlp.fc2.weight", "norm.bias"):
        torch.testing.assert_close(model.backbone.state_dict()[key], state[key], atol=0, rtol=0)


def test_local_file_of_another_architecture_names_the_keys(tmp_path):
    deeper = timm.create_model("deit_tiny_patch16_224", img_size=32, num_classes=0, **{**TINY, "depth": 5})
    torch.save(deeper.state_dict(), tmp_path / "deeper.pth")
    with pytest.raises(CheckpointError) as info:
        create_method("sat", num_classes=10, backbone="deit_tiny_patch16_224", img_size=32,
                      backbone_kwargs=TINY, pretrained=str(tmp_path / "deeper.pth"))
    assert "unexpected keys (12): blocks.4." in str(info.value)


def test_pretrained_for_a_method_without_weights_is_refused():
    with pytest.raises(WeightsError, match="center has no published pretrained weights"):
        check_pretrained("center", None, True)
