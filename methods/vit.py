"""Shared ViT/DeiT pieces for the transformer methods (SAT, TS-CAM, SCM).

- `ViTBackbone`: a timm ViT/DeiT whose modules are timm's own, so its state_dict keys are timm's
  (`cls_token`, `pos_embed`, `patch_embed.*`, `blocks.*`, `norm.*`) and published weights load as is.
- `attention_with_row` / `block_forward`: a timm block's attention through
  `F.scaled_dot_product_attention`, plus the explicit pre-softmax logits of the one query row a
  method needs (TS-CAM/SCM: the cls row; SAT: the spatial-token row), differentiable.
- `load_vit_weights`: timm hub weights, timm safetensors files and original DeiT `.pth` files.

Nothing here assumes a 14x14 grid or a 224 input: the grid comes from timm's patch embedding.
"""

from __future__ import annotations

from collections.abc import Callable

import timm
import torch
import torch.nn.functional as F
from timm.layers import resample_abs_pos_embed
from timm.models.vision_transformer import Attention, Block, VisionTransformer
from torch import Tensor, nn

from wsolbench.method import check_keys, read_state_dict

# Classifier heads of published ViT/DeiT checkpoints; no WSOL method reuses them.
HEAD_PREFIXES = ("head.", "head_dist.")
BACKBONE_PREFIXES = ("cls_token", "pos_embed", "patch_embed.", "blocks.", "norm.")


class ViTBackbone(nn.Module):
    """timm ViT/DeiT; state_dict keys equal timm's (cls_token, pos_embed, patch_embed.*, blocks.*, norm.*).

    Built with `timm.create_model(name, pretrained=False, num_classes=0, img_size=..., drop_path_rate=...,
    **backbone_kwargs)`; only plain ViTs are accepted (one cls token, no register/distillation tokens,
    pos_embed covering the cls token, no patch dropout or pre-norm), anything else raises ValueError.
    `pretrained` (True or a local file) is loaded with `load_vit_weights`.
    """

    def __init__(
        self,
        name: str,
        *,
        img_size: int | None,
        drop_path_rate: float | None,
        pretrained: bool | str,
        backbone_kwargs: dict,
    ) -> None:
        super().__init__()
        kwargs = dict(backbone_kwargs)
        if img_size is not None:
            kwargs["img_size"] = img_size
        if drop_path_rate is not None:
            kwargs["drop_path_rate"] = drop_path_rate
        vit = timm.create_model(name, pretrained=False, num_classes=0, **kwargs)
        _check_plain_vit(vit, name)
        self.cls_token = vit.cls_token
        self.pos_embed = vit.pos_embed
        self.patch_embed = vit.patch_embed
        self.pos_drop = vit.pos_drop
        self.blocks: nn.Sequential = vit.blocks
        self.norm = vit.norm
        self.embed_dim: int = vit.embed_dim
        self.depth: int = len(vit.blocks)
        self.num_heads: int = vit.blocks[0].attn.num_heads
        self.grid_size: tuple[int, int] = tuple(self.patch_embed.grid_size)
        self.num_patches: int = self.grid_size[0] * self.grid_size[1]
        if pretrained:
            load_vit_weights(self, pretrained, name)


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


def load_vit_weights(model_or_backbone: nn.Module, pretrained: bool | str, name: str) -> None:
    """Load published ViT/DeiT weights into a `ViTBackbone` (or a model holding one, or a model whose
    own top-level keys are the ViT's, as SAT's are).

    `pretrained=True`: timm hub weights of `name` (`timm.create_model(name, pretrained=True)`).
    A string: a local file, either timm safetensors or a torch file such as the original DeiT
    `.pth` ({"model": ...}; `state_dict` wrappers and `module.` prefixes accepted). Classifier heads
    (`head.*`, `head_dist.*`) are dropped; pos_embed is resampled when the grid differs. Raises
    CheckpointError listing missing, unexpected or wrongly shaped keys; never loads partially.
    """
    source = f"timm hub weights of {name!r}" if pretrained is True else str(pretrained)
    if pretrained is True:
        state = timm.create_model(name, pretrained=True, num_classes=0).state_dict()
    else:
        state = read_state_dict(pretrained)[0]
    state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}

    prefix = _backbone_prefix(model_or_backbone)
    target = model_or_backbone.state_dict()
    wanted = {k for k in target if k.startswith(prefix) and k[len(prefix):].startswith(BACKBONE_PREFIXES)}
    state = {prefix + k: v for k, v in state.items()}
    pos_key = prefix + "pos_embed"
    if pos_key in state and pos_key in target and state[pos_key].shape != target[pos_key].shape:
        grid = _backbone_grid(model_or_backbone)
        state[pos_key] = resample_abs_pos_embed(state[pos_key], new_size=list(grid), num_prefix_tokens=1)

    check_keys({k: target[k] for k in wanted}, state, f"{source} does not fit backbone {name!r}:")
    with torch.no_grad():
        for key, value in state.items():
            target[key].copy_(value)


def _backbone_prefix(model: nn.Module) -> str:
    """'' for a ViTBackbone or a model with top-level ViT keys, else '<path>.' of its ViTBackbone."""
    if isinstance(model, ViTBackbone) or isinstance(getattr(model, "patch_embed", None), nn.Module):
        return ""
    found = [n for n, m in model.named_modules() if isinstance(m, ViTBackbone)]
    if len(found) != 1:
        raise ValueError(f"{type(model).__name__} holds {len(found)} ViTBackbones; expected exactly one")
    return found[0] + "."


def _backbone_grid(model: nn.Module) -> tuple[int, int]:
    prefix = _backbone_prefix(model)
    holder = model.get_submodule(prefix[:-1]) if prefix else model
    return tuple(holder.patch_embed.grid_size)
