"""Shared ViT/DeiT pieces for the transformer methods (SAT, TS-CAM, SCM).

- `create_vit`: timm's ViT/DeiT model itself, without a classifier, checked to be a plain ViT. The
  methods keep it as their `backbone` submodule, so its state_dict keys are timm's (`cls_token`,
  `pos_embed`, `patch_embed.*`, `blocks.*`, `norm.*`) under `backbone.`; the official checkpoints
  hold the same keys without that prefix (`WSOLMethod.official_flattens` renames them).
- `attention_with_row` / `block_forward`: a timm block's attention through
  `F.scaled_dot_product_attention`, plus the explicit pre-softmax logits of the one query row a
  method needs (TS-CAM/SCM: the cls row; SAT: the spatial-token row), differentiable.
- `ViTWeights` / `load_vit_weights`: published weights (timm hub file, timm safetensors, original DeiT
  `.pth`), read once and loaded into the timm model.

Nothing here assumes a 14x14 grid or a 224 input: the grid comes from timm's patch embedding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from torch import Tensor, nn

from wsolbench.contracts.method import check_keys, read_state_dict
from wsolbench.weights import published_file, published_weights

# Classifier heads of published ViT/DeiT checkpoints; no WSOL method reuses them.
HEAD_PREFIXES = ("head.", "head_dist.")
# The DeiT backbones the ViT methods offer, with their display names in tables and plots.
VIT_BACKBONE_NAMES = {"deit_tiny_patch16_224": "DeiT-T", "deit_small_patch16_224": "DeiT-S",
                      "deit_base_patch16_224": "DeiT-B"}
# The top-level names of a plain ViT's weights, in timm's (and the official methods') order.
VIT_KEYS = ("cls_token", "pos_embed", "patch_embed", "blocks", "norm")


def create_vit(
    name: str,
    *,
    img_size: int | None,
    drop_path_rate: float | None,
    backbone_kwargs: dict,
    weights: ViTWeights | None = None,
) -> VisionTransformer:
    """timm's ViT/DeiT `name`, built once, without weights and without a classifier.

    `timm.create_model(name, pretrained=False, num_classes=0, img_size=..., drop_path_rate=...,
    **backbone_kwargs)`, so its state_dict keys are exactly timm's backbone keys. Only plain ViTs are
    accepted (one cls token, no register/distillation tokens, pos_embed covering the cls token, no
    patch dropout, pre-norm, fc_norm or attention pooling: weights under `VIT_KEYS` only); anything
    else raises ValueError. `weights`, when given, are loaded with `load_vit_weights`.
    """
    kwargs = dict(backbone_kwargs)
    if img_size is not None:
        kwargs["img_size"] = img_size
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = drop_path_rate
    vit = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
    _check_plain_vit(vit, name)
    if weights is not None:
        load_vit_weights(vit, weights, name)
    return vit


def block_stages(vit: VisionTransformer) -> tuple[tuple[str, ...], ...]:
    """The `backbone.blocks.<i>` stages of a method holding `vit` as `backbone`, last block first."""
    return tuple((f"backbone.blocks.{i}",) for i in reversed(range(len(vit.blocks))))


def grid_size(vit: VisionTransformer) -> tuple[int, int]:
    """The patch grid (rows, columns) of `vit`'s input size."""
    return tuple(vit.patch_embed.grid_size)


def _check_plain_vit(vit: nn.Module, name: str) -> None:
    problems = []
    if not isinstance(vit, VisionTransformer):
        problems.append(f"it is a {type(vit).__name__}, not a timm VisionTransformer")
    else:
        if vit.cls_token is None or vit.num_prefix_tokens != 1:
            problems.append("it must have exactly one prefix token (cls; no register/distillation tokens)")
        if vit.no_embed_class or vit.pos_embed is None:
            problems.append("its pos_embed must cover the cls token (no_embed_class=False)")
        if getattr(vit, "dynamic_img_size", False):
            problems.append("dynamic_img_size is not supported")
        if not isinstance(vit.patch_drop, nn.Identity) or not isinstance(vit.norm_pre, nn.Identity):
            problems.append("patch dropout and pre-norm are not supported")
        if not all(isinstance(b, Block) and isinstance(b.attn, Attention) for b in vit.blocks):
            problems.append("every block must be a timm Block with a standard Attention")
        unused = sorted({key.split(".")[0] for key in vit.state_dict()} - set(VIT_KEYS))
        if unused:
            problems.append(f"it has weights the methods do not use: {', '.join(unused)}")
    if problems:
        raise ValueError(f"backbone {name!r} is not a plain ViT/DeiT: {'; '.join(problems)}")


# --------------------------------------------------------------------------- attention


def split_qkv(attn: Attention, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """q, k, v of a timm Attention for the LayerNorm'ed tokens x (B, N, D), each (B, H, N, d)."""
    B, N, _ = x.shape
    qkv = attn.qkv(x).reshape(B, N, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k, v = qkv.unbind(0)
    return attn.q_norm(q), attn.k_norm(k), v


def query_row_logits(attn: Attention, q: Tensor, k: Tensor, row: int) -> Tensor:
    """Pre-softmax scaled logits q_row·kᵀ·d^-0.5 of one query row, (B, H, N), differentiable."""
    return ((q[:, :, row, :] * attn.scale).unsqueeze(-2) @ k.transpose(-2, -1)).squeeze(-2)


def fused_attention(
    attn: Attention, q: Tensor, k: Tensor, v: Tensor, value_scale: Tensor | None = None
) -> Tensor:
    """softmax(qkᵀ·d^-0.5)·(value_scale ⊙ v), projected: the block's attention output (B, N, D).

    `value_scale` (B, N) multiplies each value row (all heads, all channels). This equals scaling
    each key column of the post-softmax attention without renormalization (SAT's mask).
    """
    if value_scale is not None:
        v = v * value_scale[:, None, :, None].to(v.dtype)
    out = F.scaled_dot_product_attention(q, k, v, dropout_p=attn.attn_drop.p if attn.training else 0.0)
    B, _, N, _ = out.shape
    out = attn.norm(out.transpose(1, 2).reshape(B, N, attn.attn_dim))
    return attn.proj_drop(attn.proj(out))


def attention_with_row(
    attn: Attention, x: Tensor, row: int, value_scale: Tensor | None = None
) -> tuple[Tensor, Tensor]:
    """Block attention output via F.scaled_dot_product_attention, plus the explicit pre-softmax
    logits of query row `row`, shape (B, H, N), differentiable. value_scale (B, N) scales each
    value row (SAT's key mask).

    x is the block's norm1 output (B, N, D); the output is what timm's `Attention.forward` returns.
    """
    q, k, v = split_qkv(attn, x)
    return fused_attention(attn, q, k, v, value_scale), query_row_logits(attn, q, k, row)


def block_forward(block: Block, x: Tensor, attention: Callable[[Attention, Tensor], Tensor]) -> Tensor:
    """One pre-norm timm block with its attention computed by `attention(block.attn, norm1(x))`.

    Same residual structure as timm's `Block.forward` (layer scale, drop path), so with
    `attention=plain_attention` it reproduces timm's block.
    """
    x = x + block.drop_path1(block.ls1(attention(block.attn, block.norm1(x))))
    return x + block.drop_path2(block.ls2(block.mlp(block.norm2(x))))


def plain_attention(attn: Attention, x: Tensor) -> Tensor:
    """timm's attention through SDPA, without any extra row."""
    return fused_attention(attn, *split_qkv(attn, x))


# --------------------------------------------------------------------------- weights


@dataclass(frozen=True)
class ViTWeights:
    """Published ViT/DeiT weights read once: the file's tensors (classifier heads included) and where
    they came from. A method that also needs the classifier (TS-CAM's head bias) reads it from here."""

    state: dict[str, Tensor]
    source: str

    @classmethod
    def read(cls, name: str, pretrained: bool | str) -> ViTWeights:
        """`True`: the timm hub file of backbone `name` (downloaded into the hub cache when needed; a
        WeightsError within seconds when it cannot be); a string: that local file, either timm
        safetensors or a torch file such as the original DeiT `.pth` ({"model": ...}; `state_dict`
        wrappers and `module.` prefixes accepted)."""
        path = published_file(published_weights("timm", name), name) if pretrained is True else str(pretrained)
        return cls(read_state_dict(path)[0], f"{path} ({name} ImageNet weights)" if pretrained is True else path)


def load_vit_weights(vit: VisionTransformer, weights: ViTWeights, name: str) -> None:
    """Load published ViT/DeiT weights into timm's model `vit` (built by `create_vit`).

    The file's keys are timm's, as `vit`'s are. Classifier heads (`head.*`, `head_dist.*`) are
    dropped; pos_embed is resampled when the grid differs. Raises CheckpointError listing missing,
    unexpected or wrongly shaped keys; never loads partially.
    """
    state = {k: v for k, v in weights.state.items() if not k.startswith(HEAD_PREFIXES)}
    target = vit.state_dict()
    pos = state.get("pos_embed")
    if pos is not None and pos.shape != target["pos_embed"].shape:
        state["pos_embed"] = resample_abs_pos_embed(pos, new_size=list(grid_size(vit)), num_prefix_tokens=1)
    check_keys(target, state, f"{weights.source} does not fit backbone {name!r}:")
    with torch.no_grad():
        for key, value in state.items():
            target[key].copy_(value)
