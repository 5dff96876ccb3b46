"""methods/_vit.py: timm-compatible keys, SDPA attention with an explicit row, weight loading."""

from __future__ import annotations

import pytest
import timm
import torch
from safetensors.torch import save_file
from wsolbench.methods._vit import (
    ViTWeights,
    attention_with_row,
    block_forward,
    create_vit,
    grid_size,
    load_vit_weights,
    plain_attention,
)

from wsolbench.contracts.method import CheckpointError

TINY = {"embed_dim": 32, "depth": 2, "num_heads": 2}


def tiny_backbone(img_size: int = 32, **kwargs) -> torch.nn.Module:
    return create_vit("deit_tiny_patch16_224", img_size=img_size, drop_path_rate=0.0,
                      backbone_kwargs={**TINY, **kwargs})


def read(path) -> ViTWeights:
    return ViTWeights.read("deit_tiny_patch16_224", str(path))


def test_keys_and_features_equal_timm():
    torch.manual_seed(0)
    vit = timm.create_model("deit_tiny_patch16_224", num_classes=0, img_size=48, **TINY).eval()
    backbone = create_vit("deit_tiny_patch16_224", img_size=48, drop_path_rate=None, backbone_kwargs=TINY).eval()
    assert list(backbone.state_dict()) == list(vit.state_dict())
    assert [k for k in backbone.state_dict() if not k.startswith("blocks.")] == [
        "cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias", "norm.weight", "norm.bias"]
    backbone.load_state_dict(vit.state_dict())
    assert grid_size(backbone) == (3, 3)
    assert (backbone.embed_dim, len(backbone.blocks), backbone.blocks[0].attn.num_heads) == (32, 2, 2)
    images = torch.randn(2, 3, 48, 48)
    patches = backbone.patch_embed(images)  # [cls, patches (row-major)] plus pos_embed
    x = torch.cat([backbone.cls_token.expand(2, -1, -1), patches], dim=1) + backbone.pos_embed
    assert x.shape == (2, 10, 32)
    for block in backbone.blocks:
        x = block_forward(block, x, plain_attention)
    torch.testing.assert_close(backbone.norm(x), vit.forward_features(images), atol=1e-5, rtol=1e-5)


def reference_attention(attn, x, row, value_scale):
    """Explicit softmax attention with the post-softmax key columns scaled (no renormalization)."""
    B, N, D = x.shape
    H = attn.num_heads
    d = D // H
    w, b = attn.qkv.weight, attn.qkv.bias
    q = (x @ w[:D].T + b[:D]).reshape(B, N, H, d).transpose(1, 2)
    k = (x @ w[D : 2 * D].T + b[D : 2 * D]).reshape(B, N, H, d).transpose(1, 2)
    v = (x @ w[2 * D :].T + b[2 * D :]).reshape(B, N, H, d).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / d**0.5
    probs = torch.softmax(logits, dim=-1)
    if value_scale is not None:
        probs = probs * value_scale[:, None, None, :]
    out = (probs @ v).transpose(1, 2).reshape(B, N, D)
    return attn.proj(out), logits[:, :, row, :]


@pytest.mark.parametrize("row", [0, -1])
@pytest.mark.parametrize("scaled", [False, True])
def test_attention_with_row_matches_explicit_reference(row, scaled):
    torch.manual_seed(1)
    backbone = tiny_backbone().double()
    attn = backbone.blocks[0].attn
    x = torch.randn(3, 5, 32, dtype=torch.float64, requires_grad=True)
    scale = torch.rand(3, 5, dtype=torch.float64, requires_grad=True) if scaled else None

    def run(fn):
        out, logits = fn(attn, x, row, scale)
        assert logits.shape == (3, 2, 5)
        weights = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).view_as(out)
        loss = (out * weights).sum() + logits.pow(2).sum()
        inputs = [x, attn.qkv.weight, attn.proj.weight] + ([scale] if scaled else [])
        return out, logits, torch.autograd.grad(loss, inputs)

    fast, ref = run(attention_with_row), run(reference_attention)
    torch.testing.assert_close(fast[0], ref[0], atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(fast[1], ref[1], atol=1e-10, rtol=1e-8)
    for g_fast, g_ref in zip(fast[2], ref[2], strict=True):
        torch.testing.assert_close(g_fast, g_ref, atol=1e-10, rtol=1e-8)


def published_state(img_size: int = 32) -> dict[str, torch.Tensor]:
    """A timm/DeiT-style state dict with classifier heads, as published files have."""
    torch.manual_seed(2)
    vit = timm.create_model("deit_tiny_patch16_224", num_classes=7, img_size=img_size, **TINY)
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    state["head_dist.weight"] = torch.zeros(7, 32)
    state["head_dist.bias"] = torch.zeros(7)
    return state


def test_load_safetensors_and_deit_pth(tmp_path):
    state = published_state()
    assert "head.weight" in state
    save_file(state, str(tmp_path / "model.safetensors"))
    torch.save({"model": state, "epoch": 300}, tmp_path / "deit.pth")
    for file in ("model.safetensors", "deit.pth"):
        backbone = tiny_backbone()
        load_vit_weights(backbone, read(tmp_path / file), "deit_tiny_patch16_224")
        for key, value in backbone.state_dict().items():
            torch.testing.assert_close(value, state[key], atol=0, rtol=0)
    built = create_vit(
        "deit_tiny_patch16_224", img_size=32, drop_path_rate=0.0, backbone_kwargs=TINY,
        weights=read(tmp_path / "deit.pth"),
    )
    fc2 = built.blocks[1].mlp.fc2.weight
    torch.testing.assert_close(fc2, state["blocks.1.mlp.fc2.weight"], atol=0, rtol=0)


def test_load_resamples_pos_embed_to_the_model_grid(tmp_path):
    state = published_state(img_size=64)  # 4x4 grid
    torch.save(state, tmp_path / "w.pth")
    backbone = tiny_backbone(img_size=32)  # 2x2 grid
    load_vit_weights(backbone, read(tmp_path / "w.pth"), "deit_tiny_patch16_224")
    assert backbone.pos_embed.shape == (1, 5, 32)
    torch.testing.assert_close(backbone.pos_embed[:, 0], state["pos_embed"][:, 0], atol=0, rtol=0)


def test_load_wrong_keys_lists_them(tmp_path):
    state = published_state()
    del state["blocks.1.attn.qkv.bias"]
    state["dist_token"] = torch.zeros(1, 1, 32)
    state["norm.weight"] = torch.zeros(5)
    torch.save({"model": state}, tmp_path / "bad.pth")
    backbone = tiny_backbone()
    before = backbone.blocks[0].attn.qkv.weight.clone()
    with pytest.raises(CheckpointError) as info:
        load_vit_weights(backbone, read(tmp_path / "bad.pth"), "deit_tiny_patch16_224")
    message = str(info.value)
    assert "missing keys (1): blocks.1.attn.qkv.bias" in message
    assert "unexpected keys (1): dist_token" in message
    assert "norm.weight: file (5,) vs model (32,)" in message
    torch.testing.assert_close(backbone.blocks[0].attn.qkv.weight, before, atol=0, rtol=0)  # nothing loaded


def test_non_plain_vit_is_rejected():
    with pytest.raises(ValueError, match="exactly one prefix token"):
        tiny_backbone(reg_tokens=1)
    with pytest.raises(ValueError, match="weights the methods do not use: fc_norm"):
        tiny_backbone(global_pool="avg")
