"""SAT (methods/sat.py) against a plain reference written here from the official formulas (docs/methods.md)."""

from __future__ import annotations

import pytest
import timm
import torch
import torch.nn.functional as F
from scipy.stats import norm as normal
from wsolbench.methods.sat import gaussian_kernel

import wsolbench
from wsolbench.config import ExperimentConfig, merge, method_layer
from wsolbench.contracts.method import CheckpointError

TINY = {"embed_dim": 32, "depth": 4, "num_heads": 2}


def tiny_sat(**hparams) -> torch.nn.Module:
    torch.manual_seed(0)
    return wsolbench.create_method(
        "sat", num_classes=5, backbone="deit_tiny_patch16_224", img_size=48, drop_path_rate=0.0,
        backbone_kwargs=TINY, **hparams,
    )


def card_kernel() -> torch.Tensor:
    """The official `get_kernel` written out: CDF differences at 4 edges, sqrt of the outer product, normalized."""
    nsig, kernlen = 6.0, 3
    interval = (2 * nsig + 1) / kernlen
    edges = [-nsig - interval / 2 + i * (2 * nsig + interval) / kernlen for i in range(kernlen + 1)]
    k = [normal.cdf(edges[i + 1]) - normal.cdf(edges[i]) for i in range(kernlen)]
    kern = torch.tensor([[(k[i] * k[j]) ** 0.5 for j in range(3)] for i in range(3)], dtype=torch.float64)
    return kern / kern.sum()


def reference_sat(model, images, labels, tau, spatial_blocks=3):
    """Explicit SAT: softmax attention, column mask on P, per-head loop for the mask, loops for G⋆M.

    Reads the model's parameters by their official checkpoint names."""
    p = {model.official_name(n): v for n, v in model.named_parameters()}
    B = images.shape[0]
    D, H, L = model.embed_dim, TINY["num_heads"], TINY["depth"]
    d = D // H
    gh, gw = model.grid_size
    P = gh * gw
    patches = F.conv2d(images, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=16)
    patches = patches.flatten(2).transpose(1, 2)
    x = torch.cat([p["cls_token"].expand(B, 1, D), patches, p["loc_token"].expand(B, 1, D)], dim=1)
    x = x + torch.cat([p["pos_embed"], p["loc_embed"]], dim=1)
    N = x.shape[1]

    def ln(t, name):
        return F.layer_norm(t, (D,), p[f"{name}.weight"], p[f"{name}.bias"], eps=1e-6)

    masks = []
    for layer in range(L):
        b = f"blocks.{layer}."
        h = ln(x, b + "norm1")
        qkv = h @ p[b + "attn.qkv.weight"].T + p[b + "attn.qkv.bias"]
        q, k, v = (qkv[..., i * D : (i + 1) * D].reshape(B, N, H, d).transpose(1, 2) for i in range(3))
        S = q @ k.transpose(-1, -2) * d**-0.5
        A = torch.exp(S - S.amax(-1, keepdim=True))
        A = A / A.sum(-1, keepdim=True)
        s = sum(S[:, head, N - 1, :] for head in range(H)) / H
        m = 1 / (1 + torch.exp(-s))  # (B, N)
        if layer >= L - spatial_blocks:
            A = A * m[:, None, None, :]  # every key column, every head and query row; no renormalization
            masks.append(m)
        out = (A @ v).transpose(1, 2).reshape(B, N, D)
        x = x + out @ p[b + "attn.proj.weight"].T + p[b + "attn.proj.bias"]
        hidden = F.gelu(ln(x, b + "norm2") @ p[b + "mlp.fc1.weight"].T + p[b + "mlp.fc1.bias"])
        x = x + hidden @ p[b + "mlp.fc2.weight"].T + p[b + "mlp.fc2.bias"]
    x = ln(x, "norm")
    M = (sum(masks) / len(masks))[:, 1 : 1 + P].reshape(B, gh, gw)
    feats = x[:, 1 : 1 + P].transpose(1, 2).reshape(B, D, gh, gw)
    logits = F.conv2d(feats, p["head.weight"], p["head.bias"], padding=1).mean(dim=(2, 3))

    cls = -(torch.log_softmax(logits, -1)[torch.arange(B), labels]).mean()
    area = (sum(M[i].mean() for i in range(B)) / B - tau).abs()
    G = card_kernel().to(M.dtype)
    norm_terms = []
    for i in range(B):
        for u in range(gh):
            for w in range(gw):
                value = sum(
                    G[a + 1, c + 1] * M[i, u + a, w + c]
                    for a in (-1, 0, 1)
                    for c in (-1, 0, 1)
                    if 0 <= u + a < gh and 0 <= w + c < gw
                )
                norm_terms.append(value * (1 - value))
    norm_loss = sum(norm_terms) / len(norm_terms)
    return logits, M, {"cls": cls, "area": area, "norm": norm_loss, "loss": cls + area + norm_loss}


def test_kernel_matches_card():
    kernel = gaussian_kernel()
    assert kernel.shape == (1, 1, 3, 3) and kernel.dtype == torch.float32
    corner_row = torch.tensor([0.0026285, 0.0460116, 0.0026285])
    torch.testing.assert_close(kernel[0, 0, 0], corner_row, atol=5e-8, rtol=0)
    assert abs(kernel[0, 0, 1, 1].item() - 0.8054397) < 5e-8
    torch.testing.assert_close(kernel[0, 0].double(), card_kernel(), atol=1e-7, rtol=0)
    smoothed = tiny_sat().smooth(torch.ones(1, 4, 4))[0]
    assert abs(smoothed[1, 1].item() - 1.0) < 1e-6
    assert abs(smoothed[0, 1].item() - 0.94873) < 1e-5
    assert abs(smoothed[0, 0].item() - 0.90009) < 1e-5


def test_forward_loss_and_gradients_match_reference():
    model = tiny_sat(area_threshold=0.3).double()
    torch.manual_seed(1)
    images = torch.randn(3, 3, 48, 48, dtype=torch.float64)
    labels = torch.tensor([0, 4, 2])
    params = [p for n, p in model.named_parameters() if n != "weight"]

    out = model(images)
    terms = model.loss(out, labels)
    assert set(terms) == {"loss", "cls", "area", "norm"}
    ref_logits, ref_maps, ref_terms = reference_sat(model, images, labels, tau=0.3)
    assert out.logits.shape == (3, 5) and out.extras["maps"].shape == (3, 3, 3)
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-10, rtol=1e-8)
    torch.testing.assert_close(out.extras["maps"], ref_maps, atol=1e-10, rtol=1e-8)
    for key in ref_terms:
        torch.testing.assert_close(terms[key], ref_terms[key], atol=1e-10, rtol=1e-8)
    grads = torch.autograd.grad(terms["loss"], params)
    ref_grads = torch.autograd.grad(ref_terms["loss"], params)
    for name, g, g_ref in zip([n for n, _ in model.named_parameters() if n != "weight"], grads, ref_grads,
                              strict=True):
        torch.testing.assert_close(g, g_ref, atol=1e-10, rtol=1e-8, msg=name)
    # each term's gradient separately (the area term reaches M only through the last 3 blocks)
    for key in ("area", "norm"):
        g = torch.autograd.grad(model.loss(model(images), labels)[key], params, materialize_grads=True)
        g_ref = torch.autograd.grad(reference_sat(model, images, labels, tau=0.3)[2][key], params,
                                    materialize_grads=True)
        for a, b in zip(g, g_ref, strict=True):
            torch.testing.assert_close(a, b, atol=1e-10, rtol=1e-8)
    names = [n for n, _ in model.named_parameters() if n != "weight"]
    assert grads[names.index("backbone.cls_token")].abs().sum() > 0  # cls_token gets gradient


def test_spatial_blocks_and_loss_switches():
    model = tiny_sat(spatial_blocks=2, use_area_loss=False).double()
    images = torch.randn(2, 3, 48, 48, dtype=torch.float64)
    labels = torch.tensor([1, 3])
    out = model(images)
    terms = model.loss(out, labels)
    _, ref_maps, ref_terms = reference_sat(model, images, labels, tau=0.25, spatial_blocks=2)
    torch.testing.assert_close(out.extras["maps"], ref_maps, atol=1e-10, rtol=1e-8)
    assert set(terms) == {"loss", "cls", "norm"}
    torch.testing.assert_close(terms["loss"], ref_terms["cls"] + ref_terms["norm"], atol=1e-10, rtol=1e-8)
    only_cls = tiny_sat(use_area_loss=False, use_norm_loss=False)
    cls_terms = only_cls.loss(only_cls(images.float()), labels)
    assert set(cls_terms) == {"loss", "cls"} and torch.equal(cls_terms["loss"], cls_terms["cls"])
    with pytest.raises(ValueError, match="spatial_blocks must be in 1..4"):
        tiny_sat(spatial_blocks=5)


def test_localize_returns_unsmoothed_class_agnostic_map():
    model = tiny_sat().eval()
    images = torch.randn(2, 3, 48, 48)
    loc = model.localize(images, class_ids=torch.tensor([0, 1]))
    out = model(images)
    assert not loc.maps.requires_grad and loc.maps.shape == (2, 3, 3)
    torch.testing.assert_close(loc.maps, out.extras["maps"])
    torch.testing.assert_close(model.localize(images).maps, loc.maps)
    assert (loc.maps > 0).all() and (loc.maps < 1).all()


def test_deit_small_keys_counts_and_weight_decay_groups():
    model = wsolbench.create_method("sat", num_classes=200)
    names = model.official_names()  # ours -> official, in the official order
    assert set(names) == set(model.state_dict()) and len(names) == 155
    assert len(set(names.values())) == 155  # one-to-one
    assert {ours for ours, official in names.items() if ours != official} == {
        k for k in model.state_dict() if k.startswith("backbone.")}
    assert all(ours == f"backbone.{official}" for ours, official in names.items() if ours != official)
    state = model.official_state_dict()
    assert len(state) == 155
    assert list(state)[:7] == [
        "cls_token", "loc_token", "pos_embed", "loc_embed", "weight",
        "patch_embed.proj.weight", "patch_embed.proj.bias",
    ]
    assert list(state)[-4:] == ["norm.weight", "norm.bias", "head.weight", "head.bias"]
    assert state["pos_embed"].shape == (1, 197, 384) and state["head.weight"].shape == (200, 384, 3, 3)
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == 22_357_832
    assert sum(p.numel() for p in model.parameters() if not p.requires_grad) == 9
    decay, no_decay = model.param_groups("full")
    assert (len(decay.params), decay.numel, decay.weight_decay) == (54, 22_296_576, True)
    assert (len(no_decay.params), no_decay.numel, no_decay.weight_decay) == (100, 61_256, False)
    decayed = {"backbone.cls_token", "loc_token", "backbone.pos_embed", "loc_embed"}
    assert decayed <= {n for n, _ in decay.params}  # official: decayed
    official_order = list(state)
    for group in (decay, no_decay):  # in the official optimizer's order
        order = [official_order.index(names[n]) for n, _ in group.params]
        assert order == sorted(order)


@pytest.mark.parametrize(("blocks", "tensors", "numel"), [(0, 4, 1509), (1, 16, 14_213), (4, 52, 52_325)])
def test_parameter_efficient_counts(blocks, tensors, numel):
    # D=32, C=5: loc_token + loc_embed 64, head 5·32·9 + 5 = 1445, one block 12·32² + 13·32 = 12704
    groups = tiny_sat().param_groups("parameter_efficient", trainable_blocks=blocks)
    names = [n for g in groups for n, _ in g.params]
    assert (len(names), sum(g.numel for g in groups)) == (tensors, numel)
    assert {"loc_token", "loc_embed", "head.weight", "head.bias"} <= set(names)
    assert not any(n.startswith(("backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed",
                                 "backbone.norm.")) for n in names)
    trained_blocks = {n.split(".")[2] for n in names if n.startswith("backbone.blocks.")}
    assert trained_blocks == {str(i) for i in range(4 - blocks, 4)}


def test_parameter_efficient_rejects_bad_block_count():
    with pytest.raises(ValueError, match=r"trainable_blocks must lie in \[0, 4\], got 5"):
        tiny_sat().param_groups("parameter_efficient", trainable_blocks=5)
    with pytest.raises(ValueError, match="unknown training regime 'linear'"):
        tiny_sat().param_groups("linear")


def test_official_checkpoint_loads(tmp_path):
    source = tiny_sat()
    torch.manual_seed(3)
    with torch.no_grad():
        for param in source.parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.1)
    official_state = source.official_state_dict()  # the official keys: cls_token, ..., blocks.*, norm.*, head.*
    assert "blocks.0.attn.qkv.weight" in official_state and "cls_token" in official_state
    wrapped = {f"module.{k}": v for k, v in official_state.items()}
    official = {"model": wrapped, "best_thr": 0.35, "epoch": 29}
    torch.save(official, tmp_path / "best_loc.pth.tar", _use_new_zipfile_serialization=False)
    without_kernel = {k: v for k, v in official_state.items() if k != "weight"}
    torch.save({"model": without_kernel, "best_thr": 0, "epoch": 1}, tmp_path / "no_kernel.pth")
    # written by earlier wsolbench versions, whose keys were the official ones
    torch.save({"model": official_state, "optimizer": {}, "epoch": 2}, tmp_path / "earlier.pt")
    torch.save({"model": source.state_dict(), "optimizer": {}, "epoch": 3}, tmp_path / "ours.pt")
    images = torch.randn(2, 3, 48, 48)
    expected = source.eval()(images).logits
    for name, extras in [("best_loc.pth.tar", {"best_thr": 0.35, "epoch": 29}),
                         ("no_kernel.pth", {"best_thr": 0, "epoch": 1}),
                         ("earlier.pt", {"optimizer": {}, "epoch": 2}),
                         ("ours.pt", {"optimizer": {}, "epoch": 3})]:
        target = tiny_sat(area_threshold=0.35)
        assert target.load_checkpoint(tmp_path / name) == extras
        for key, value in source.state_dict().items():  # every tensor where it belongs
            torch.testing.assert_close(target.state_dict()[key], value, atol=0, rtol=0, msg=f"{name}: {key}")
        torch.testing.assert_close(target.eval()(images).logits, expected, atol=0, rtol=0)
        torch.testing.assert_close(target.weight, gaussian_kernel(), atol=0, rtol=0)


def test_wrong_checkpoint_keys_are_listed(tmp_path):
    state = {f"module.{k}": v for k, v in tiny_sat().official_state_dict().items()}
    state["module.spa_token"] = state.pop("module.loc_token")
    del state["module.blocks.2.mlp.fc1.bias"]
    state["module.head.weight"] = torch.zeros(7, 32, 3, 3)
    torch.save({"model": state}, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as info:
        tiny_sat().load_checkpoint(tmp_path / "bad.pth")
    message = str(info.value)
    assert "missing keys (2): backbone.blocks.2.mlp.fc1.bias, loc_token" in message
    assert "the official ones lack the prefix `backbone.`" in message
    assert "unexpected keys (1): spa_token" in message
    assert "head.weight: file (7, 32, 3, 3) vs model (5, 32, 3, 3)" in message


def test_pretrained_deit_file_initializes_backbone_only(tmp_path):
    torch.manual_seed(5)
    deit = timm.create_model("deit_tiny_patch16_224", num_classes=1000, img_size=48, **TINY)
    torch.save({"model": deit.state_dict()}, tmp_path / "deit_tiny.pth")
    model = wsolbench.create_method(
        "sat", num_classes=5, backbone="deit_tiny_patch16_224", img_size=48, backbone_kwargs=TINY,
        pretrained=str(tmp_path / "deit_tiny.pth"),
    )
    for key, value in deit.state_dict().items():
        if not key.startswith("head."):
            torch.testing.assert_close(model.backbone.state_dict()[key], value, atol=0, rtol=0)
    assert model.head.weight.shape == (5, 32, 3, 3)
    assert 0.005 < model.loc_token.std().item() < 0.04  # trunc-normal std 0.02, not from the file


def test_yaml_layers_follow_the_card():
    for dataset, tau, lr, epochs, batch in [("cub", 0.25, 1e-4, 30, 256), ("ilsvrc", 0.35, 1.5e-5, 1, 512)]:
        layer, _ = method_layer("sat", dataset)
        config = ExperimentConfig()
        merge(config, layer)
        assert config.method.backbone == "deit_small_patch16_224" and config.method.drop_path_rate == 0.1
        assert config.method.hparams["area_threshold"] == tau
        assert (config.train.lr, config.train.epochs, config.train.batch_size) == (lr, epochs, batch)
        assert (config.train.optimizer, config.train.weight_decay, config.train.schedule) == ("adamw", 0.05,
                                                                                             "constant")
    for dataset in ("openimages", "synthetic"):
        layer, _ = method_layer("sat", dataset)
        merge(ExperimentConfig(), layer)
