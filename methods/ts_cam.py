"""TS-CAM (Gao et al., ICCV 2021): token semantic coupled attention maps, as the official
code computes them (https://github.com/vasgaowei/TS-CAM, `lib/models/deit.py`; docs/methods.md).

- Semantic-aware maps S (B, C, h, w): the final-LN patch tokens as a (B, D, h, w) map through a
  3x3 conv head (PyTorch default init); logits = GAP(S). The cls token's output is discarded.
- Semantic-agnostic attention a (B, h, w): for every block, the cls-query row of the post-softmax
  attention, averaged over heads, keys 1..P kept (not renormalized), summed over all blocks.
  The row is computed explicitly next to the fused SDPA call, with the softmax in fp32.
- Coupled map of class c: a ⊙ S_c on the grid, unrectified and unnormalized.

timm's ViT is the `backbone` submodule. Official checkpoints (`{"epoch", "state_dict", "best_map"}`,
`module.` prefix, the ViT's timm keys at the top level plus `head.*`) load strictly through
`load_checkpoint`, which puts the ViT's keys back under `backbone.`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import Tensor, nn
from wsolbench.methods._vit import (
    VIT_BACKBONE_NAMES,
    ViTWeights,
    attention_with_row,
    block_forward,
    block_stages,
    create_vit,
    grid_size,
    plain_attention,
)

from wsolbench.contracts.method import Localization, MethodOutput, WSOLMethod
from wsolbench.registry import register_method

DROP_PATH_RATE = 0.1  # the argparse default of TS-CAM's and SCM's official scripts


@register_method("ts_cam")
class TSCAM(WSOLMethod):
    """TS-CAM on a timm ViT/DeiT (`backbone`) with a conv `head`; official keys drop the `backbone.` prefix."""

    name: ClassVar[str] = "ts_cam"
    display_name: ClassVar[str] = "TS-CAM"
    default_hparams: ClassVar[dict[str, Any]] = {}
    default_backbone: ClassVar[str | None] = "deit_small_patch16_224"
    weights_hub: ClassVar[str | None] = "timm"
    backbones: ClassVar[tuple[str, ...]] = tuple(VIT_BACKBONE_NAMES)
    backbone_names: ClassVar[dict[str, str]] = VIT_BACKBONE_NAMES
    official_flattens: ClassVar[tuple[str, ...]] = ("backbone",)

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        weights = ViTWeights.read(self.backbone_name, self.pretrained) if self.pretrained else None
        self.backbone = create_vit(
            self.backbone_name,
            img_size=self.img_size,
            drop_path_rate=DROP_PATH_RATE if self.drop_path_rate is None else self.drop_path_rate,
            backbone_kwargs=self.backbone_kwargs,
            weights=weights,
        )
        dim = self.backbone.embed_dim
        self.head = nn.Conv2d(dim, self.num_classes, kernel_size=3, padding=1)  # PyTorch default init
        self.embed_dim = dim
        self.depth = len(self.backbone.blocks)
        self.grid_size = grid_size(self.backbone)
        if weights is not None:
            self._load_classifier_bias(weights)

    # ------------------------------------------------------------------ shared computation

    def encode(self, images: Tensor, with_attention: bool) -> tuple[Tensor, Tensor | None]:
        """S (B, C, h, w) and, if asked, a (B, h, w) = Σ_blocks head-mean cls-row attention to patches.

        The attention row is differentiable; the token updates use fused SDPA either way.
        """
        vit = self.backbone
        patches = vit.patch_embed(images)
        cls = vit.cls_token.expand(patches.shape[0], -1, -1)
        x = vit.pos_drop(torch.cat([cls, patches], dim=1) + vit.pos_embed)
        attention = None
        if with_attention:
            rows: list[Tensor] = []

            def attend(attn: nn.Module, h: Tensor) -> Tensor:
                out, logits = attention_with_row(attn, h, row=0)
                probs = logits.to(torch.promote_types(logits.dtype, torch.float32)).softmax(dim=-1)
                rows.append(probs.mean(dim=1)[:, 1:])
                return out

            for block in vit.blocks:
                x = block_forward(block, x, attend)
            attention = torch.stack(rows).sum(dim=0)
        else:
            for block in vit.blocks:
                x = block_forward(block, x, plain_attention)
        x = vit.norm(x)
        b, _, d = x.shape
        gh, gw = self.grid_size
        feature = x[:, 1:].transpose(1, 2).reshape(b, d, gh, gw)
        semantic = self.head(feature)
        if attention is not None:
            attention = attention.reshape(b, gh, gw)
        return semantic, attention

    @staticmethod
    def couple(attention: Tensor, semantic: Tensor, class_ids: Tensor) -> Tensor:
        """attention ⊙ S_c for each image's class c: (B, h, w), with S detached."""
        picked = semantic.detach()[torch.arange(semantic.shape[0], device=semantic.device), class_ids]
        return attention * picked

    # ------------------------------------------------------------------ the contract

    def forward(self, images: Tensor) -> MethodOutput:
        """logits = GAP(S); extras["semantic"] = S. No attention rows are computed (maps only need them)."""
        semantic, _ = self.encode(images, with_attention=False)
        return MethodOutput(semantic.mean(dim=(2, 3)), {"semantic": semantic})

    @torch.no_grad()
    def localize(self, images: Tensor, class_ids: Tensor | None = None) -> Localization:
        """Logits GAP(S) and raw coupled maps a ⊙ S_c (B, h, w) for `class_ids` (top-1 when None).

        The caller sets eval mode (drop path is active in training mode).
        """
        semantic, attention = self.encode(images, with_attention=True)
        logits = semantic.mean(dim=(2, 3))
        return Localization(logits, self.couple(attention, semantic, self.target_classes(logits, class_ids)))

    # Parameter groups: AdamW's "decay" and "no_decay" with the base class's rule (timm's, as the
    # official optimizer applied it: 1-D tensors, biases and `no_weight_decay()`), lr scale 1 for both.
    # The loss is the base class's plain cross-entropy on the GAP logits.

    def own_parameters(self) -> tuple[str, ...]:
        """Parts this method adds to the ViT, trained under every training regime: the head."""
        return ("head",)

    def stages(self) -> tuple[tuple[str, ...], ...]:
        """The transformer blocks, last first."""
        return block_stages(self.backbone)

    def no_weight_decay(self) -> set[str]:
        return {"backbone.pos_embed", "backbone.cls_token"}

    # ------------------------------------------------------------------ ImageNet weights

    def _load_classifier_bias(self, weights: ViTWeights) -> None:
        """Keep DeiT's classifier bias as the conv head's bias when the shapes agree (ILSVRC).

        The official loader drops `head.weight` always and `head.bias` only when its shape differs.
        """
        bias = weights.state.get("head.bias")
        if bias is not None and bias.shape == self.head.bias.shape:
            with torch.no_grad():
                self.head.bias.copy_(bias)

