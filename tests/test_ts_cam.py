"""TS-CAM: the fast method agrees with a plain reference written from the official formulas.

The reference below uses explicit softmax attention with the full N×N matrix, per-head loops and
the formulas of the official code (docs/methods.md); it reads the model's own parameters by their official
(timm / TS-CAM) names, so gradients can be compared parameter by parameter.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import wsolbench
from wsolbench.contracts.method import CheckpointError

NUM_CLASSES = 5
TINY = dict(
    backbone="deit_tiny_patch16_224",
    img_size=64,
    drop_path_rate=0.0,
    backbone_kwargs={"embed_dim": 32, "depth": 3, "num_heads": 2},
)
HEADS = 2


# --------------------------------------------------------------------------- plain reference


def official_params(model: torch.nn.Module) -> dict[str, Tensor]:
    """The model's parameters by their official checkpoint names (`backbone.` dropped)."""
    return {model.official_name(n): p for n, p in model.named_parameters()}


def _layer_norm(x: Tensor, p: dict[str, Tensor], name: str) -> Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-6) * p[f"{name}.weight"] + p[f"{name}.bias"]


def reference_encoder(p: dict[str, Tensor], images: Tensor, heads: int) -> tuple[Tensor, list[Tensor]]:
    """Final-LN tokens (B, 1+P, D) and each block's post-softmax attention (B, H, N, N)."""
    patches = F.conv2d(images, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=16)
    b, d, gh, gw = patches.shape
    tokens = [patches[:, :, r, c] for r in range(gh) for c in range(gw)]  # row-major
    x = torch.stack([p["cls_token"][0, 0].expand(b, d), *tokens], dim=1) + p["pos_embed"]
    n = x.shape[1]
    hd = d // heads
    attentions = []
    depth = 1 + max(int(k.split(".")[1]) for k in p if k.startswith("blocks."))
    for i in range(depth):
        pre = f"blocks.{i}"
        y = _layer_norm(x, p, f"{pre}.norm1")
        qkv = y @ p[f"{pre}.attn.qkv.weight"].T + p[f"{pre}.attn.qkv.bias"]
        q, k, v = qkv[..., :d], qkv[..., d : 2 * d], qkv[..., 2 * d :]
        outs, probs = [], []
        for h in range(heads):
            sl = slice(h * hd, (h + 1) * hd)
            logits = q[..., sl] @ k[..., sl].transpose(1, 2) / math.sqrt(hd)  # (B, N, N)
            e = torch.exp(logits - logits.max(-1, keepdim=True).values)
            prob = e / e.sum(-1, keepdim=True)
            probs.append(prob)
            outs.append(prob @ v[..., sl])
        attentions.append(torch.stack(probs, dim=1))
        assert attentions[-1].shape == (b, heads, n, n)
        x = x + torch.cat(outs, -1) @ p[f"{pre}.attn.proj.weight"].T + p[f"{pre}.attn.proj.bias"]
        y = _layer_norm(x, p, f"{pre}.norm2")
        hidden = y @ p[f"{pre}.mlp.fc1.weight"].T + p[f"{pre}.mlp.fc1.bias"]
        hidden = 0.5 * hidden * (1 + torch.erf(hidden / math.sqrt(2)))  # exact GELU
        x = x + hidden @ p[f"{pre}.mlp.fc2.weight"].T + p[f"{pre}.mlp.fc2.bias"]
    return _layer_norm(x, p, "norm"), attentions


def reference_semantic_and_attention(
    p: dict[str, Tensor], images: Tensor, heads: int
) -> tuple[Tensor, Tensor]:
    """S (B, C, h, w): 3x3 conv head on the patch tokens; a (B, h, w): Σ_l head-mean cls row."""
    tokens, attentions = reference_encoder(p, images, heads)
    b, n, d = tokens.shape
    g = math.isqrt(n - 1)
    feature = tokens[:, 1:].transpose(1, 2).reshape(b, d, g, g)
    semantic = F.conv2d(feature, p["head.weight"], p["head.bias"], padding=1)
    attention = sum(att.mean(dim=1)[:, 0, 1:] for att in attentions)  # cls query, patch keys
    return semantic, attention.reshape(b, g, g)


def reference_tscam(p: dict[str, Tensor], images: Tensor, class_ids: Tensor | None, heads: int):
    semantic, attention = reference_semantic_and_attention(p, images, heads)
    logits = semantic.mean(dim=(2, 3))
    if class_ids is None:
        class_ids = logits.argmax(1)
    maps = torch.stack([attention[i] * semantic[i, int(c)] for i, c in enumerate(class_ids)])
    return logits, maps


# --------------------------------------------------------------------------- helpers


def tiny_model(**extra) -> wsolbench.WSOLMethod:
    torch.manual_seed(0)
    return wsolbench.create_method("ts_cam", num_classes=NUM_CLASSES, **{**TINY, **extra}).double()


def images(batch: int = 2, size: int = 64) -> Tensor:
    return torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(1), dtype=torch.float64)


def per_block_numel(d: int) -> int:
    return 2 * d + (3 * d * d + 3 * d) + (d * d + d) + 2 * d + (4 * d * d + 4 * d) + (4 * d * d + d)


# --------------------------------------------------------------------------- tests


def test_attributes_and_registry() -> None:
    cls = type(tiny_model())
    assert cls.name == "ts_cam"
    assert cls.default_backbone == "deit_small_patch16_224"
    assert "deit_small_patch16_224" in cls.backbones
    assert cls.default_hparams == {}


def test_state_dict_keys_map_one_to_one_onto_the_official_layout() -> None:
    model = tiny_model()
    names = model.official_names()
    assert list(names) == list(model.state_dict())  # the official order is ours
    assert all(ours in (official, f"backbone.{official}") for ours, official in names.items())
    state = model.official_state_dict()
    expected = ["cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias"]
    for i in range(3):
        expected += [f"blocks.{i}.{m}.{t}" for m in ("norm1", "attn.qkv", "attn.proj", "norm2", "mlp.fc1",
                                                    "mlp.fc2") for t in ("weight", "bias")]
    expected += ["norm.weight", "norm.bias", "head.weight", "head.bias"]
    assert list(state) == expected
    assert state["head.weight"].shape == (NUM_CLASSES, 32, 3, 3)
    assert state["pos_embed"].shape == (1, 17, 32)


def test_eval_logits_and_maps_match_reference() -> None:
    model = tiny_model().eval()
    x = images()
    with torch.no_grad():
        ref_logits, ref_maps = reference_tscam(official_params(model), x, None, HEADS)
        loc = model.localize(x)
        out = model(x)
    assert loc.maps.shape == (2, 4, 4)
    torch.testing.assert_close(loc.logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loc.maps, ref_maps, atol=1e-5, rtol=1e-5)
    # maps for requested classes, not only the top-1 one
    class_ids = torch.tensor([3, 0])
    with torch.no_grad():
        _, ref_maps = reference_tscam(official_params(model), x, class_ids, HEADS)
        loc = model.localize(x, class_ids)
    torch.testing.assert_close(loc.maps, ref_maps, atol=1e-5, rtol=1e-5)
    assert not loc.maps.requires_grad


def test_loss_and_gradients_match_reference() -> None:
    model = tiny_model().train()
    x, labels = images(), torch.tensor([1, 4])
    terms = model.loss(model(x), labels)
    assert set(terms) == {"loss", "cls"}
    ref_logits, _ = reference_tscam(official_params(model), x, None, HEADS)
    ref_loss = F.cross_entropy(ref_logits, labels)
    torch.testing.assert_close(terms["cls"], ref_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["loss"], ref_loss, atol=1e-5, rtol=1e-5)
    params = list(official_params(model).items())
    grads = torch.autograd.grad(terms["loss"], [v for _, v in params])
    ref_grads = torch.autograd.grad(ref_loss, [v for _, v in params])
    for (name, _), g, r in zip(params, grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5, msg=name)
    assert any(g.abs().sum() > 0 for (n, _), g in zip(params, grads, strict=True) if n == "cls_token")


def official_checkpoint(model: torch.nn.Module, path, drop: str | None = None, add: str | None = None):
    state = {f"module.{k}": v.clone() for k, v in official_params(model).items()}
    if drop:
        del state[f"module.{drop}"]
    if add:
        state[f"module.{add}"] = torch.zeros(1)
    torch.save({"epoch": 7, "state_dict": state, "best_map": 0.87}, path)


def test_official_checkpoint_loads(tmp_path) -> None:
    source = tiny_model()
    with torch.no_grad():
        for p in source.parameters():
            p.add_(0.01 * torch.randn_like(p))
    official_checkpoint(source, tmp_path / "model_best.pth")
    target = tiny_model()
    extras = target.load_checkpoint(tmp_path / "model_best.pth")
    assert extras == {"epoch": 7, "best_map": 0.87}
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, atol=0, rtol=0)
    # our own checkpoints (keys as in our state_dict) load as well
    torch.save({"model": source.state_dict()}, tmp_path / "ours.pt")
    target = tiny_model()
    target.load_checkpoint(tmp_path / "ours.pt")
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, atol=0, rtol=0)


def test_wrong_keys_fail_listing_them(tmp_path) -> None:
    official_checkpoint(tiny_model(), tmp_path / "bad.pth", drop="blocks.1.norm2.bias", add="layers.0.thred")
    with pytest.raises(CheckpointError, match=r"(?s)missing keys \(1\): backbone\.blocks\.1\.norm2\.bias.*"
                       r"unexpected keys \(1\): layers\.0\.thred"):
        tiny_model().load_checkpoint(tmp_path / "bad.pth")


def test_param_groups_full_split_weight_decay() -> None:
    model = tiny_model()
    groups = model.param_groups("full")
    d, depth = 32, 3
    decay = [g for g in groups if g.weight_decay]
    no_decay = [g for g in groups if not g.weight_decay]
    decay_names = {n for g in decay for n, _ in g.params}
    no_decay_names = {n for g in no_decay for n, _ in g.params}
    assert not decay_names & no_decay_names
    assert decay_names | no_decay_names == {n for n, _ in model.named_parameters()}
    assert all(g.lr_scale == 1.0 for g in groups)
    decay_numel = (d * 3 * 16 * 16 + depth * (3 * d * d + d * d + 4 * d * d + 4 * d * d)
                   + NUM_CLASSES * d * 9)
    assert sum(g.numel for g in decay) == decay_numel
    assert no_decay_names >= {"backbone.pos_embed", "backbone.cls_token", "head.bias",
                              "backbone.blocks.0.norm1.weight"}
    assert all(p.ndim > 1 for g in decay for _, p in g.params)


def test_param_groups_parameter_efficient_counts() -> None:
    model = tiny_model()
    d = 32
    head = NUM_CLASSES * d * 9 + NUM_CLASSES
    for k in (0, 1, 3):
        groups = model.param_groups("parameter_efficient", trainable_blocks=k)
        assert sum(g.numel for g in groups) == head + k * per_block_numel(d)
    names = {n for g in model.param_groups("parameter_efficient", trainable_blocks=1) for n, _ in g.params}
    assert {n.split(".")[2] for n in names if n.startswith("backbone.blocks.")} == {"2"}
    assert "norm.weight" not in names and "head.weight" in names
    with pytest.raises(ValueError, match="trainable_blocks"):
        model.param_groups("parameter_efficient", trainable_blocks=4)
    with pytest.raises(ValueError, match="training regime"):
        model.param_groups("linear_probe")


def test_small_grid_in_float32() -> None:
    """A 32-px input gives a 2x2 grid; float32 paths run and agree with the reference."""
    torch.manual_seed(0)
    model = wsolbench.create_method("ts_cam", num_classes=3, **{**TINY, "img_size": 32}).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        loc = model.localize(x)
        ref_logits, ref_maps = reference_tscam(official_params(model), x, None, HEADS)
    assert loc.maps.shape == (3, 2, 2)
    torch.testing.assert_close(loc.maps, ref_maps, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(loc.logits, ref_logits, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("file_classes", [NUM_CLASSES, 7])
def test_pretrained_deit_file_keeps_the_classifier_bias_only_when_it_fits(tmp_path, file_classes) -> None:
    """As the official loader: head.weight is always dropped; head.bias is kept when its shape fits."""
    deit = {k: v.detach().float() + 0.5 for k, v in official_params(tiny_model()).items()
            if not k.startswith("head.")}
    deit["head.weight"] = torch.randn(file_classes, 32)
    deit["head.bias"] = torch.arange(file_classes, dtype=torch.float32)
    torch.save({"model": deit}, tmp_path / "deit.pth")
    torch.manual_seed(0)
    model = wsolbench.create_method("ts_cam", num_classes=NUM_CLASSES, pretrained=str(tmp_path / "deit.pth"),
                                    **TINY)
    loaded = official_params(model)
    torch.testing.assert_close(loaded["blocks.1.attn.qkv.weight"].detach(), deit["blocks.1.attn.qkv.weight"])
    torch.testing.assert_close(loaded["pos_embed"].detach(), deit["pos_embed"])
    fresh = official_params(tiny_model().float())
    torch.testing.assert_close(loaded["head.weight"].detach(), fresh["head.weight"].detach())
    expected_bias = deit["head.bias"] if file_classes == NUM_CLASSES else fresh["head.bias"].detach()
    torch.testing.assert_close(loaded["head.bias"].detach(), expected_bias)


def test_localize_rejects_class_ids_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match=r"class_ids must have shape \(2,\), got \(3,\)"):
        tiny_model().eval().localize(images(), torch.tensor([0, 1, 2]))
