"""SCM (Bai et al., ECCV 2022): TS-CAM plus a training-only spatial calibration module, as the
official code computes it (https://github.com/164140757/SCM, `lib/models/deit.py` and
`lib/models/graphFusion.py`; docs/methods.md).

- S^0 and the attention vector a are TS-CAM's (ts_cam.py); F^0 = per-image min–max of a over the
  patches (no epsilon, as the official code), differentiable in training.
- Training: 4 diffusion blocks (`layers.{k}`) refine (S, F) with a truncated Newton–Schulz
  inverse of M = L ⊙ (λ_k·cos − 1) over the 4-neighbour grid Laplacian L; logits = GAP(S^4).
- Eval (`model.eval()`): the blocks are skipped; logits = GAP(S^0), maps = F^0 ⊙ S^0_c.

The module's parameters keep the official names `layers.{k}.thred` (τ_k, init 0.5) and
`layers.{k}.fuse._loss_rate` (λ_k, init 1.0), so official checkpoints load strictly.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from wsolbench.methods.ts_cam import TSCAM

from wsolbench.contracts.method import Localization, MethodOutput
from wsolbench.registry import register_method

NEWTON_SCHULZ_STEPS = (16, 4, 4, 4)  # iterations per block, as the official code runs them
INITIAL_GUESS_SCALE = 0.002


def grid_laplacian(height: int, width: int) -> Tensor:
    """(N, N) Laplacian of the 4-neighbour grid, patch index r·width + c: degree on the diagonal,
    −1 for up/down/left/right neighbours, 0 elsewhere."""
    index = torch.arange(height * width).reshape(height, width)
    adjacency = torch.zeros(height * width, height * width)
    for src, dst in ((index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :])):
        adjacency[src.flatten(), dst.flatten()] = 1.0
        adjacency[dst.flatten(), src.flatten()] = 1.0
    return torch.diag(adjacency.sum(dim=0)) - adjacency


def min_max(x: Tensor) -> Tensor:
    """(x − min)/(max − min) over the last dimension, with no epsilon (as the official code)."""
    low = x.min(dim=-1, keepdim=True).values
    high = x.max(dim=-1, keepdim=True).values
    return (x - low) / (high - low)


class Fuse(nn.Module):
    """The coupled diffusion operator of one block: G ≈ M⁻¹ by truncated Newton–Schulz, with λ."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.steps = steps
        self._loss_rate = nn.Parameter(torch.ones(1))  # λ_k, unconstrained

    def forward(self, semantic: Tensor, laplacian: Tensor) -> Tensor:
        """G (B, N, N) for class scores `semantic` (B, C, N): X_0 = 0.002·Mᵀ (detached),
        X_{t+1} = X_t(2I − M·X_t), G = X_Tᵀ, M = L ⊙ (λ·cos(s_i, s_j) − 1)."""
        unit = semantic / semantic.norm(dim=1, keepdim=True)
        cosine = unit.transpose(1, 2) @ unit
        operator = laplacian * (self._loss_rate * cosine - 1)
        eye = torch.eye(operator.shape[-1], dtype=operator.dtype, device=operator.device)
        inverse = INITIAL_GUESS_SCALE * operator.transpose(1, 2).detach()
        for _ in range(self.steps):
            inverse = inverse @ (2 * eye - operator @ inverse)
        return inverse.transpose(1, 2)


class CalibrationBlock(nn.Module):
    """One SCM block (official `Encoder`): propagate F through G, shrink, rescale S and F."""

    def __init__(self, steps: int) -> None:
        super().__init__()
        self.fuse = Fuse(steps)
        self.thred = nn.Parameter(torch.full((1,), 0.5))  # τ_k, unconstrained

    def forward(self, semantic: Tensor, attention: Tensor, laplacian: Tensor) -> tuple[Tensor, Tensor]:
        """(S, F) (B, C, N), (B, N) → (S ⊙ (1 + u), F + u) with u = minmax(tanhshrink(G·F / (τ·max F)))."""
        diffusion = self.fuse(semantic, laplacian)
        u = (diffusion @ attention.unsqueeze(-1)).squeeze(-1)
        u = u / (self.thred * attention.max(dim=-1, keepdim=True).values)
        u = min_max(u - torch.tanh(u))
        return semantic * (1 + u.unsqueeze(1)), attention + u


@register_method("scm")
class SCM(TSCAM):
    """TS-CAM's keys plus `layers.{0..3}.thred` / `layers.{0..3}.fuse._loss_rate` (8 learnable scalars)."""

    name: ClassVar[str] = "scm"
    display_name: ClassVar[str] = "SCM"
    default_hparams: ClassVar[dict[str, Any]] = {}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layers = nn.ModuleList(CalibrationBlock(steps) for steps in NEWTON_SCHULZ_STEPS)
        self.register_buffer("laplacian", grid_laplacian(*self.grid_size), persistent=False)

    def base_maps(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """S^0 (B, C, h, w) and F^0 (B, h, w) = per-image min–max of TS-CAM's summed attention."""
        semantic, attention = self.encode(images, with_attention=True)
        return semantic, min_max(attention.flatten(1)).reshape(attention.shape)

    def calibrate(self, semantic: Tensor, attention: Tensor) -> tuple[Tensor, Tensor]:
        """Run the 4 blocks on S^0 (B, C, h, w), F^0 (B, h, w); returns S^4, F^4 in the same shapes.

        Computed in at least fp32 with autocast off, as the official code (fp32 throughout)."""
        dtype = torch.promote_types(semantic.dtype, torch.float32)
        with torch.autocast(semantic.device.type, enabled=False):
            s = semantic.flatten(2).to(dtype)
            f = attention.flatten(1).to(dtype)
            laplacian = self.laplacian.to(dtype)
            for block in self.layers:
                s, f = block(s, f, laplacian)
        return s.reshape(semantic.shape), f.reshape(attention.shape)

    def forward(self, images: Tensor) -> MethodOutput:
        """Training mode: logits = GAP(S^4) after the 4 blocks. Eval mode: logits = GAP(S^0), no blocks.

        extras: `semantic` (S^0), `attention` (F^0), and in training `calibrated` (S^4).
        """
        semantic, attention = self.base_maps(images)
        extras = {"semantic": semantic, "attention": attention}
        if not self.training:
            return MethodOutput(semantic.mean(dim=(2, 3)), extras)
        calibrated, _ = self.calibrate(semantic, attention)
        extras["calibrated"] = calibrated
        return MethodOutput(calibrated.mean(dim=(2, 3)), extras)

    @torch.no_grad()
    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:
        """Logits GAP(S^0) and raw maps F^0 ⊙ S^0_c (B, h, w) for `class_ids` (top-1 when None);
        the calibration blocks are not run."""
        semantic, attention = self.base_maps(images)
        logits = semantic.mean(dim=(2, 3))
        return Localization(logits, self.couple(attention, semantic, self.target_classes(logits, class_ids)))

    def own_parameters(self) -> tuple[str, ...]:
        return ("head", "layers")
