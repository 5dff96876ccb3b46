"""SAT: Spatial-Aware Token for WSOL (Wu et al., ICCV 2023), as its official code computes it
(https://github.com/wpy1999/SAT, `Model/SAT.py`; docs/methods.md).

Tokens are [cls, patches (row-major), spa] with position embeddings concat(pos_embed, loc_embed).
In each of the last K = `spatial_blocks` blocks (spatial-query attention) the spatial token's
query row gives per-key logits; m = sigmoid(mean over heads) scales every key column of the
post-softmax attention, done here as value scaling inside fused SDPA (exact, since m depends on
the key only). The map M is the mean of those K masks on the patch keys, reshaped to the patch
grid. The head is LN → patch tokens → Conv3x3 → global average pool. The earlier blocks' masks
feed nothing, so they are not computed (the official code computes and discards them).

Losses: cls = CE; area = |mean_b mean_cells M − area_threshold| (batch area loss, unsmoothed M);
norm = mean of G⋆M·(1 − G⋆M) with the official fixed 3x3 kernel G (zero padding); total =
cls + area + norm, all weights 1. Ā is the mean over the batch the loss sees: under DDP that is
each rank's batch, as in the official ImageNet script; on one device, the whole batch.
`use_area_loss` / `use_norm_loss` switch a term off for ablations: a switched-off term is left out
of the returned dict and of the total.

timm's ViT is the `backbone` submodule; the method's own parts are loc_token, loc_embed, weight (the
fixed kernel) and head.*. The official checkpoints hold the ViT's keys at the top level, in the order
cls_token, loc_token, pos_embed, loc_embed, weight, patch_embed.*, blocks.*, norm.*, head.*; they load
unchanged (`WSOLMethod.adapt_state_dict`), and the parameters train in that order.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from timm.layers import trunc_normal_
from timm.models.vision_transformer import Attention
from torch import Tensor, nn
from wsolbench.methods._vit import (
    VIT_BACKBONE_NAMES,
    ViTWeights,
    block_forward,
    block_stages,
    create_vit,
    fused_attention,
    grid_size,
    plain_attention,
    query_row_logits,
    split_qkv,
)

from wsolbench.contracts.method import Localization, MethodOptionError, MethodOutput, WSOLMethod
from wsolbench.registry import register_method


def gaussian_kernel(kernlen: int = 3, nsig: float = 6.0) -> Tensor:
    """SAT's smoothing kernel (official `get_kernel`), (1, 1, k, k) float32, summing to 1.

    1-D weights are differences of the standard-normal CDF at `kernlen + 1` equally spaced edges
    over [-nsig - interval/2, nsig + interval/2], interval = (2·nsig + 1)/kernlen; the 2-D kernel is
    the element-wise square root of their outer product, normalized.
    """
    interval = (2 * nsig + 1) / kernlen
    edges = torch.linspace(-nsig - interval / 2, nsig + interval / 2, kernlen + 1, dtype=torch.float64)
    cdf = 0.5 * (1 + torch.erf(edges / math.sqrt(2)))
    k1 = cdf.diff()
    k2 = torch.outer(k1, k1).sqrt()
    return (k2 / k2.sum()).float().view(1, 1, kernlen, kernlen)


@register_method("sat")
class SAT(WSOLMethod):
    """SAT on a timm ViT/DeiT; any grid and depth ≥ `spatial_blocks` (the paper's K = 3 last blocks).

    `localize` returns the class-agnostic map M (B, h, w) in (0, 1), unsmoothed; `class_ids` is
    ignored because SAT has one foreground map per image, not one per class.
    """

    name: ClassVar[str] = "sat"
    display_name: ClassVar[str] = "SAT"
    default_backbone: ClassVar[str] = "deit_small_patch16_224"
    weights_hub: ClassVar[str] = "timm"
    backbones: ClassVar[tuple[str, ...]] = tuple(VIT_BACKBONE_NAMES)
    backbone_names: ClassVar[dict[str, str]] = VIT_BACKBONE_NAMES
    default_hparams: ClassVar[dict[str, Any]] = {
        "area_threshold": 0.25,
        "use_area_loss": True,
        "use_norm_loss": True,
        "spatial_blocks": 3,
    }

    frozen_parameters: ClassVar[tuple[str, ...]] = ("weight",)  # the fixed smoothing kernel
    official_flattens: ClassVar[tuple[str, ...]] = ("backbone",)
    official_order: ClassVar[tuple[str, ...]] = (
        "cls_token", "loc_token", "pos_embed", "loc_embed", "weight", "patch_embed", "blocks", "norm", "head",
    )

    def __init__(
        self,
        *,
        area_threshold: float,
        use_area_loss: bool,
        use_norm_loss: bool,
        spatial_blocks: int,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        weights = ViTWeights.read(self.backbone_name, self.pretrained) if self.pretrained else None
        self.backbone = create_vit(
            self.backbone_name, img_size=self.img_size, drop_path_rate=self.drop_path_rate,
            backbone_kwargs=self.backbone_kwargs, weights=weights,
        )
        depth = len(self.backbone.blocks)
        if not 1 <= spatial_blocks <= depth:
            raise MethodOptionError(f"sat: spatial_blocks must be in 1..{depth}, got {spatial_blocks}")
        if not 0.0 <= area_threshold <= 1.0:
            raise MethodOptionError(f"sat: area_threshold must be in [0, 1], got {area_threshold}")
        dim = self.backbone.embed_dim
        self.loc_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.loc_embed = nn.Parameter(torch.zeros(1, 1, dim))
        self.weight = nn.Parameter(gaussian_kernel(), requires_grad=False)
        self.head = nn.Conv2d(dim, self.num_classes, kernel_size=3, padding=1)  # PyTorch default init, as official
        trunc_normal_(self.loc_token, std=0.02)
        trunc_normal_(self.loc_embed, std=0.02)

        self.embed_dim = dim
        self.depth = depth
        self.grid_size = grid_size(self.backbone)
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.area_threshold = float(area_threshold)
        self.use_area_loss = bool(use_area_loss)
        self.use_norm_loss = bool(use_norm_loss)
        self.spatial_blocks = int(spatial_blocks)

    def tokens(self, images: Tensor) -> Tensor:
        """(B, P+2, D): [cls, patches, spa] plus concat(pos_embed, loc_embed), after pos_drop."""
        vit = self.backbone
        patches = vit.patch_embed(images)
        batch = patches.shape[0]
        cls, spa = vit.cls_token.expand(batch, -1, -1), self.loc_token.expand(batch, -1, -1)
        x = torch.cat([cls, patches, spa], dim=1)
        return vit.pos_drop(x + torch.cat([vit.pos_embed, self.loc_embed], dim=1))

    def forward(self, images: Tensor) -> MethodOutput:
        """logits (B, C) and extras["maps"]: M (B, h, w), the mean of the last K SQA masks on patches."""
        x = self.tokens(images)
        masks: list[Tensor] = []
        first_spatial = self.depth - self.spatial_blocks
        for index, block in enumerate(self.backbone.blocks):
            attention = plain_attention if index < first_spatial else _spatial_query_attention(masks)
            x = block_forward(block, x, attention)
        batch = x.shape[0]
        h, w = self.grid_size
        maps = torch.stack(masks).mean(0)[:, 1 : 1 + self.num_patches].reshape(batch, h, w)
        patches = self.backbone.norm(x)[:, 1 : 1 + self.num_patches]
        features = patches.transpose(1, 2).reshape(batch, self.embed_dim, h, w)
        logits = self.head(features).mean(dim=(2, 3))
        return MethodOutput(logits=logits, extras={"maps": maps})

    def smooth(self, maps: Tensor) -> Tensor:
        """G ⋆ M with the fixed kernel and zero padding, (B, h, w)."""
        return F.conv2d(maps[:, None], self.weight.to(maps.dtype), padding=1)[:, 0]

    def loss(self, output: MethodOutput, labels: Tensor) -> dict[str, Tensor]:
        """{"loss", "cls", "area", "norm"}; a term switched off by its hparam is absent and not summed."""
        maps = output.extras["maps"]
        terms = {"cls": F.cross_entropy(output.logits, labels)}
        if self.use_area_loss:
            terms["area"] = (maps.mean(dim=(1, 2)).mean() - self.area_threshold).abs()
        if self.use_norm_loss:
            smoothed = self.smooth(maps)
            terms["norm"] = (smoothed * (1 - smoothed)).mean()
        terms["loss"] = sum(terms.values())
        return terms

    @torch.no_grad()
    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:
        """logits and M (B, h, w) in (0, 1), unsmoothed; class-agnostic, so `class_ids` is ignored."""
        output = self(images)
        return Localization(logits=output.logits, maps=output.extras["maps"])

    # Parameter groups: the base class's "decay" (≥2-D weights, the tokens and position embeddings
    # included, as the official optimizer has it) and "no_decay" (1-D or `.bias`). The fixed kernel
    # `weight` never trains.

    def own_parameters(self) -> tuple[str, ...]:
        """What `parameter_efficient` always trains: the spatial token, its position embedding, the head."""
        return ("loc_token", "loc_embed", "head")

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The transformer blocks, last first."""
        return block_stages(self.backbone)

    def adapt_state_dict(self, state_dict: dict[str, Tensor]) -> dict[str, Tensor]:
        """Official names renamed onto ours; official checkpoints carry `weight` (the fixed kernel),
        one without it gets ours."""
        state_dict = super().adapt_state_dict(state_dict)
        if "weight" not in state_dict:
            state_dict = {**state_dict, "weight": self.weight.detach().clone()}
        return state_dict


def _spatial_query_attention(masks: list[Tensor]) -> Callable[[Attention, Tensor], Tensor]:
    """Spatial-query attention: m = sigmoid(mean_h q_spa·kᵀ/√d) over all keys scales each value row; appends m."""

    def attention(attn: Attention, x: Tensor) -> Tensor:
        q, k, v = split_qkv(attn, x)
        mask = torch.sigmoid(query_row_logits(attn, q, k, row=-1).mean(dim=1))
        masks.append(mask)
        return fused_attention(attn, q, k, v, value_scale=mask)

    return attention
