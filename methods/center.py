"""The centre baseline (the "center gaussian" no-learning row of wsolevaluation's tables): what a fixed map scores.

Nothing is learned and nothing is read from the image but its size:

- `localize` returns, for every image, the same centred isotropic Gaussian on a grid of
  `grid_size` × `grid_size` cells (default: the input side / 16, at least 3, like a stride-16
  feature grid), g(y, x) = exp(-((y - c_y)² / (σ n_y)² + (x - c_x)² / (σ n_x)²) / 2) with cell
  centres c = (n - 1) / 2 and σ = `sigma` as a fraction of the grid side. The map is symmetric
  about the image centre and decreases away from it, so after any protocol's symmetric upsampling
  and min-max normalization every threshold keeps a centred region and yields a centred box.
- Logits are all zero (uniform): classification is chance. argmax then picks class 0 for every
  image, so Top-1 cls/loc equal the share of class-0 images (≈ 1/C on balanced data).
- It has no parameters, so `param_groups` is [] for every training regime, and `loss` is the constant
  cross-entropy of uniform logits, log C. With no backbone, `backbone`, `pretrained`,
  `drop_path_rate` and `backbone_kwargs` must be left unset; `img_size` is not used.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor

from wsolbench.contracts.method import Localization, MethodOptionError, MethodOutput, WSOLMethod
from wsolbench.registry import register_method


@register_method("center")
class CenterBaseline(WSOLMethod):
    """A fixed centred Gaussian map with uniform logits; see the module docstring."""

    name: ClassVar[str] = "center"
    display_name: ClassVar[str] = "Center baseline"
    default_hparams: ClassVar[dict[str, Any]] = {"grid_size": None, "sigma": 0.25}
    default_backbone: ClassVar[str | None] = None
    backbones: ClassVar[tuple[str, ...]] = ()
    backbone_options: ClassVar[tuple[str, ...]] = ()

    def __init__(self, *, grid_size: int | None = None, sigma: float = 0.25, **options: Any) -> None:
        super().__init__(**options)
        if self.backbone_name is not None:
            raise MethodOptionError(f"center: the centre baseline has no backbone; got backbone={self.backbone_name!r}")
        if grid_size is not None and (isinstance(grid_size, bool) or not isinstance(grid_size, int)
                                      or grid_size < 3):
            raise MethodOptionError(f"center: grid_size must be an integer ≥ 3 or None, got {grid_size!r}")
        if not (isinstance(sigma, (int, float)) and sigma > 0):
            raise MethodOptionError(f"center: sigma must be a number > 0, got {sigma!r}")
        self.grid_size = grid_size
        self.sigma = float(sigma)

    def grid_shape(self, height: int, width: int) -> tuple[int, int]:
        """The map's (h, w) for an input of height × width."""
        if self.grid_size is not None:
            return self.grid_size, self.grid_size
        return max(height // 16, 3), max(width // 16, 3)

    def center_map(self, height: int, width: int, device: torch.device | str = "cpu") -> Tensor:
        """The (h, w) float32 centred Gaussian for an input of height × width (peak 1)."""
        n_y, n_x = self.grid_shape(height, width)

        def profile(n: int) -> Tensor:
            t = torch.arange(n, dtype=torch.float64, device=device)
            return torch.exp(-0.5 * ((t - (n - 1) / 2) / (self.sigma * n)) ** 2)

        return (profile(n_y)[:, None] * profile(n_x)[None, :]).float()

    def forward(self, images: Tensor) -> MethodOutput:
        logits = images.new_zeros(images.shape[0], self.num_classes)
        return MethodOutput(logits)

    @torch.no_grad()
    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:
        """Zero logits and the same centred map for every image (class_ids make no difference)."""
        batch, height, width = images.shape[0], images.shape[-2], images.shape[-1]
        maps = self.center_map(height, width, images.device).expand(batch, -1, -1).contiguous()
        return Localization(images.new_zeros(batch, self.num_classes), maps)
