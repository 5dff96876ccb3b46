"""SCM: the fast method agrees with a plain reference written from the official formulas (docs/methods.md).

The reference builds the Laplacian, the cosine similarities and the operator M entry by entry and
runs each image's Newton–Schulz iterations on its own, on top of the explicit-attention
TS-CAM reference of test_ts_cam.py.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from test_ts_cam import (
    HEADS,
    TINY,
    images,
    official_params,
    per_block_numel,
    reference_semantic_and_attention,
)
from torch import Tensor

import wsolbench
from wsolbench.contracts.method import CheckpointError

NUM_CLASSES = 5
STEPS = (16, 4, 4, 4)


def reference_laplacian(h: int, w: int) -> Tensor:
    n = h * w
    lap = torch.zeros(n, n, dtype=torch.float64)
    for r in range(h):
        for c in range(w):
            i = r * w + c
            for dr, dc in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                if 0 <= r + dr < h and 0 <= c + dc < w:
                    lap[i, (r + dr) * w + c + dc] = -1.0
                    lap[i, i] += 1.0
    return lap


def reference_minmax(x: Tensor) -> Tensor:
    return (x - x.min()) / (x.max() - x.min())


def reference_block(s: Tensor, f: Tensor, lam: Tensor, tau: Tensor, steps: int, lap: Tensor):
    """One image: s (C, N), f (N) → (s ⊙ (1 + u), f + u), as one official diffusion block computes it."""
    n = s.shape[1]
    norms = torch.sqrt((s**2).sum(dim=0))
    rows = [(s[:, i : i + 1] * s).sum(dim=0) / (norms[i] * norms) for i in range(n)]  # row i: cos(s_i, s_j)
    similarity = torch.stack(rows)
    m = lap * (lam * similarity - 1)
    x = (0.002 * m.T).detach()
    eye = torch.eye(n, dtype=m.dtype)
    for _ in range(steps):
        x = x @ (2 * eye - m @ x)
    g = x.T
    u = g @ f
    u = u / (tau * f.max())
    u = u - torch.tanh(u)
    u = reference_minmax(u)
    return s + s * u, f + u


def reference_scm(p: dict[str, Tensor], x: Tensor, training: bool, class_ids: Tensor | None = None):
    """logits (training: GAP(S^4); eval: GAP(S^0)) and maps F^0 ⊙ S^0_c."""
    semantic, attention = reference_semantic_and_attention(p, x, HEADS)
    b, c, h, w = semantic.shape
    lap = reference_laplacian(h, w)
    f0 = torch.stack([reference_minmax(attention[i].flatten()) for i in range(b)])
    logits0 = semantic.mean(dim=(2, 3))
    if class_ids is None:
        class_ids = logits0.argmax(1)
    maps = torch.stack([f0[i].reshape(h, w) * semantic[i, int(k)] for i, k in enumerate(class_ids)])
    if not training:
        return logits0, maps
    logits = []
    for i in range(b):
        s, f = semantic[i].reshape(c, h * w), f0[i]
        for k, steps in enumerate(STEPS):
            s, f = reference_block(s, f, p[f"layers.{k}.fuse._loss_rate"][0], p[f"layers.{k}.thred"][0],
                                   steps, lap)
        logits.append(s.mean(dim=1))
    return torch.stack(logits), maps


def tiny_scm(**extra) -> wsolbench.WSOLMethod:
    torch.manual_seed(0)
    model = wsolbench.create_method("scm", num_classes=NUM_CLASSES, **{**TINY, **extra}).double()
    with torch.no_grad():  # move λ, τ off their initial values so their roles are exercised
        for k, layer in enumerate(model.layers):
            layer.fuse._loss_rate.fill_(1.0 + 0.1 * k)
            layer.thred.fill_(0.5 - 0.05 * k)
    return model


# --------------------------------------------------------------------------- tests


def test_attributes_and_official_parameter_names() -> None:
    model = wsolbench.create_method("scm", num_classes=NUM_CLASSES, **TINY)
    assert type(model).name == "scm" and type(model).default_backbone == "deit_small_patch16_224"
    extra = {k: v for k, v in model.state_dict().items() if k.startswith("layers.")}
    assert sorted(extra) == sorted([f"layers.{k}.thred" for k in range(4)]
                                   + [f"layers.{k}.fuse._loss_rate" for k in range(4)])
    assert all(v.shape == (1,) for v in extra.values())
    assert [model.layers[k].thred.item() for k in range(4)] == [0.5] * 4
    assert [model.layers[k].fuse._loss_rate.item() for k in range(4)] == [1.0] * 4
    assert "laplacian" not in model.state_dict()


def test_laplacian_matches_the_4_neighbour_grid() -> None:
    model = tiny_scm()
    torch.testing.assert_close(model.laplacian, reference_laplacian(4, 4), atol=0, rtol=0)
    assert sorted(set(torch.diagonal(model.laplacian).tolist())) == [2.0, 3.0, 4.0]


def test_training_logits_loss_and_gradients_match_reference() -> None:
    model = tiny_scm().train()
    x, labels = images(), torch.tensor([2, 0])
    out = model(x)
    terms = model.loss(out, labels)
    assert set(terms) == {"loss", "cls"}
    p = official_params(model)
    ref_logits, _ = reference_scm(p, x, training=True)
    ref_loss = F.cross_entropy(ref_logits, labels)
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["cls"], ref_loss, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(terms["loss"], ref_loss, atol=1e-5, rtol=1e-5)
    names = list(p)
    grads = torch.autograd.grad(terms["loss"], [p[n] for n in names])
    ref_grads = torch.autograd.grad(ref_loss, [p[n] for n in names])
    for name, g, r in zip(names, grads, ref_grads, strict=True):
        torch.testing.assert_close(g, r, atol=1e-5, rtol=1e-5, msg=name)
    by_name = dict(zip(names, grads, strict=True))
    # λ, τ and the cls-row attention (through F^0) all receive gradient
    for name in ("layers.0.fuse._loss_rate", "layers.3.thred", "blocks.0.attn.qkv.weight"):
        assert by_name[name].abs().sum() > 0, name


def test_eval_skips_the_blocks_and_maps_match_reference() -> None:
    model = tiny_scm().eval()
    x = images()
    p = official_params(model)
    with torch.no_grad():
        ref_logits, ref_maps = reference_scm(p, x, training=False)
        out = model(x)
        loc = model.localize(x)
        class_ids = torch.tensor([4, 1])
        _, ref_maps_gt = reference_scm(p, x, training=False, class_ids=class_ids)
        loc_gt = model.localize(x, class_ids)
    torch.testing.assert_close(out.logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loc.logits, ref_logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loc.maps, ref_maps, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loc_gt.maps, ref_maps_gt, atol=1e-5, rtol=1e-5)
    assert "calibrated" not in out.extras
    f0 = out.extras["attention"].flatten(1)
    assert torch.allclose(f0.min(1).values, torch.zeros(2, dtype=f0.dtype))
    assert torch.allclose(f0.max(1).values, torch.ones(2, dtype=f0.dtype))


def official_checkpoint(model: torch.nn.Module, path, drop: str | None = None) -> None:
    state = {f"module.{k}": v.detach().clone() for k, v in official_params(model).items()}
    if drop:
        del state[f"module.{drop}"]
    torch.save({"epoch": 30, "state_dict": state, "best_map": 96.6}, path)


def test_official_checkpoint_loads_with_its_scalars(tmp_path) -> None:
    source = tiny_scm()
    official_checkpoint(source, tmp_path / "model_best.pth")
    target = wsolbench.create_method("scm", num_classes=NUM_CLASSES, **TINY).double()
    assert target.load_checkpoint(tmp_path / "model_best.pth") == {"epoch": 30, "best_map": 96.6}
    assert target.layers[2].fuse._loss_rate.item() == pytest.approx(1.2)
    assert target.layers[3].thred.item() == pytest.approx(0.35)
    for key, value in source.state_dict().items():
        torch.testing.assert_close(target.state_dict()[key], value, atol=0, rtol=0)


def test_tscam_checkpoint_lacks_the_scm_scalars(tmp_path) -> None:
    official_checkpoint(tiny_scm(), tmp_path / "partial.pth", drop="layers.1.thred")
    with pytest.raises(CheckpointError, match=r"missing keys \(1\): layers\.1\.thred"):
        tiny_scm().load_checkpoint(tmp_path / "partial.pth")


def test_param_groups() -> None:
    model = tiny_scm()
    d, head = 32, NUM_CLASSES * 32 * 9 + NUM_CLASSES
    full = model.param_groups("full")
    no_decay = {n for g in full if not g.weight_decay for n, _ in g.params}
    scalars = {f"layers.{k}.thred" for k in range(4)} | {f"layers.{k}.fuse._loss_rate" for k in range(4)}
    assert scalars <= no_decay
    assert sum(g.numel for g in full) == sum(p.numel() for p in model.parameters())
    for k in (0, 2):
        groups = model.param_groups("parameter_efficient", trainable_blocks=k)
        assert sum(g.numel for g in groups) == head + 8 + k * per_block_numel(d)


def test_newton_schulz_is_truncated_not_an_exact_inverse() -> None:
    """After T steps from X_0 = 0.002·Mᵀ, I − M·X_T = (I − 0.002·M·Mᵀ)^(2^T): the
    4-step blocks stay far from M⁻¹ and are not replaced by an exact solve."""
    model = tiny_scm()
    s = torch.randn(1, NUM_CLASSES, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    unit = s[0] / s[0].norm(dim=0, keepdim=True)
    eye = torch.eye(16, dtype=torch.float64)
    for k, steps in ((0, 16), (1, 4)):
        with torch.no_grad():
            g = model.layers[k].fuse(s, model.laplacian)[0]
        lam = 1.0 + 0.1 * k
        m = model.laplacian * (lam * unit.T @ unit - 1)
        expected = torch.linalg.matrix_power(eye - 0.002 * m @ m.T, 2**steps)
        torch.testing.assert_close(eye - m @ g.T, expected, atol=1e-10, rtol=1e-8)
        if steps == 4:
            assert torch.linalg.norm(eye - m @ g.T) > 0.5 * torch.linalg.norm(eye)
