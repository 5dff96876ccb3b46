"""The evaluation loop: GT-class maps and logits of a split → metric accumulators → results.

Sharding: rank r of N evaluates images r, r+N, ... (no padding, so no image counts twice); the
accumulators hold integer counts only, summed over ranks exactly with an int64 all_reduce, so the
metrics equal a single-process evaluation bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Subset
from torchvision import transforms as T

from wsolbench.annotations import IMAGENET_MEAN, IMAGENET_STD, Metadata, MetadataError
from wsolbench.config import ExperimentConfig
from wsolbench.contracts.method import WSOLMethod
from wsolbench.engine.distributed import DistInfo, all_gather_object, all_reduce_sum_
from wsolbench.engine.loaders import WSOLDataset, collate
from wsolbench.metrics.accumulators import BoxAccumulator, MaskAccumulator, MetricResult
from wsolbench.metrics.maps import normalize_maps
from wsolbench.metrics.per_image import PerImage, concat
from wsolbench.metrics.protocols import EvalProtocol, get_protocol, threshold_list
from wsolbench.metrics.to_boxes import normalized_maps_to_boxes
from wsolbench.prepared_dataset import PreparedDataset

SAMPLE_COUNT = 8


def eval_protocol(config: ExperimentConfig) -> EvalProtocol:
    return get_protocol(config.eval.protocol, crop_size=config.dataset.crop_size,
                        resize_size=config.dataset.resize_size)


def selection_metric(metadata: Metadata) -> str:
    """The val metric that picks the best checkpoint: MaxBoxAccV2 for boxes, PxAP for masks."""
    return "pxap" if metadata.kind == "masks" else "maxboxaccv2"


def ten_crop_transform(resize: int, crop: int) -> T.Compose:
    """Resize to resize×resize, the ten crop×crop views, each normalized: a (10, 3, crop, crop) tensor."""
    normalize = T.Compose([T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])
    return T.Compose([
        T.Resize((resize, resize)),
        T.TenCrop(crop),
        T.Lambda(lambda crops: torch.stack([normalize(c) for c in crops])),
    ])


def _loader(dataset: Any, indices: list[int], config: ExperimentConfig) -> DataLoader:
    return DataLoader(
        Subset(dataset, indices),
        batch_size=config.eval.batch_size,
        shuffle=False,
        num_workers=config.dataset.num_workers,
        collate_fn=collate,
        generator=torch.Generator(),  # keeps the process RNG untouched (resume determinism)
    )


def top1_class_maps(
    model: WSOLMethod, images: torch.Tensor, labels: torch.Tensor, logits: torch.Tensor, maps: torch.Tensor
) -> torch.Tensor:
    """Raw maps (B, h, w) of each image's top-1 predicted class (argmax of `logits`, ties → lower index).

    `maps` (the GT-class maps) are reused where the prediction equals the label; the other images
    are localized again for their predicted class.
    """
    predicted = logits.float().argmax(-1).to(labels.device)
    wrong = predicted != labels
    out = maps.clone()
    if wrong.any():
        out[wrong.cpu()] = model.localize(images[wrong], class_ids=predicted[wrong]).maps.float().cpu()
    return out


@torch.no_grad()
def accumulate(
    model: WSOLMethod,
    prepared: PreparedDataset,
    metadata: Metadata,
    config: ExperimentConfig,
    info: DistInfo,
    record_images: bool = False,
) -> BoxAccumulator | MaskAccumulator:
    """Evaluate this rank's shard and return the accumulator with counts summed over all ranks.

    With `record_images` (box splits), the accumulator also records per-image results, which
    `gather_per_image` collects from every rank."""
    protocol = eval_protocol(config)
    thresholds = threshold_list(config.eval.cam_curve_interval)
    if metadata.kind == "labels":
        raise MetadataError(f"{prepared.name}: this split has no boxes or masks to evaluate localization on")
    masks = metadata.kind == "masks"
    accumulator = (
        MaskAccumulator(protocol, thresholds)
        if masks
        else BoxAccumulator(protocol, thresholds, iou_thresholds=tuple(config.eval.iou_thresholds),
                            record_images=record_images)
    )
    indices = list(range(info.rank, len(metadata), info.world_size))
    frame_loader = _loader(WSOLDataset(prepared, metadata, frame=protocol.frame), indices, config)
    crops: Any = None
    if config.eval.ten_crop:
        transform = ten_crop_transform(config.dataset.resize_size, config.dataset.crop_size)
        crops = iter(_loader(WSOLDataset(prepared, metadata, transform=transform), indices, config))
    was_training = model.training
    model.eval()
    device = info.device
    for batch in frame_loader:
        images = batch["image"].to(device)
        labels = batch["label"].to(device)
        localization = model.localize(images, class_ids=labels)
        maps = localization.maps.float().cpu()
        if masks:
            accumulator.update(maps, batch["mask"].numpy(), names=batch["image_id"])
            continue
        logits = localization.logits
        if crops is not None:
            views = next(crops)["image"].to(device)  # (B, 10, 3, S, S)
            flat = model(views.flatten(0, 1)).logits.float()
            logits = flat.softmax(-1).view(len(labels), views.shape[1], -1).mean(1)
        top1_maps = top1_class_maps(model, images, labels, logits, maps) if protocol.box_map == "top1_class" else None
        accumulator.update(maps, batch["boxes"], labels.cpu(), logits.float().cpu(), names=batch["image_id"],
                           top1_maps=top1_maps)
    model.train(was_training)
    accumulator.reduce(lambda counts: all_reduce_sum_(counts, info))
    return accumulator


def gather_per_image(accumulator: BoxAccumulator, metadata: Metadata, info: DistInfo) -> PerImage:
    """Every rank's recorded images, in the order of `metadata` (a collective call under DDP)."""
    parts = all_gather_object(accumulator.per_image(), info)
    return concat(parts).aligned_to(np.asarray(metadata.image_ids, dtype=str), "evaluation shards")


def result_under_policy(
    accumulator: BoxAccumulator | MaskAccumulator,
    policy: str,
    fixed: dict[str, float] | list[float] | None = None,
) -> MetricResult:
    """The accumulator's result under `policy` ('oracle-test' or 'fixed' with `fixed` thresholds).

    PxAP integrates over every τ, so a mask accumulator ignores `fixed`."""
    if isinstance(accumulator, MaskAccumulator):
        return accumulator.result(policy=policy)
    if policy == "fixed":
        return accumulator.result(policy="fixed", fixed_thresholds=fixed)
    return accumulator.result(policy="oracle-test")


def result_entry(
    split: str, config: ExperimentConfig, policy: str, checkpoint: str, result: MetricResult
) -> dict[str, Any]:
    """One `results` entry of metrics.json (schema in wsolbench/results.py)."""
    return {
        "split": split,
        "eval_protocol": config.eval.protocol,
        "threshold_policy": policy,
        "checkpoint": checkpoint,
        "metrics": {k: float(v) for k, v in result.metrics.items()},
        "thresholds": {k: float(v) for k, v in result.thresholds.items()},
    }


def curves_frame(split: str, config: ExperimentConfig, policy: str, result: MetricResult) -> pd.DataFrame:
    frame = result.curves.copy()
    frame.insert(0, "eval_protocol", config.eval.protocol)
    frame.insert(0, "split", split)
    frame["threshold_policy"] = policy
    return frame


@torch.no_grad()
def qualitative_samples(
    model: WSOLMethod,
    prepared: PreparedDataset,
    metadata: Metadata,
    config: ExperimentConfig,
    device: torch.device,
    threshold: float,
) -> dict[str, np.ndarray]:
    """The `samples.npz` arrays for the first SAMPLE_COUNT images of `metadata` (see interfaces)."""
    protocol = eval_protocol(config)
    subset = metadata.subset(metadata.image_ids[:SAMPLE_COUNT])
    batch = collate([WSOLDataset(prepared, subset, frame=protocol.frame)[i] for i in range(len(subset))])
    was_training = model.training
    model.eval()
    localization = model.localize(batch["image"].to(device), class_ids=batch["label"].to(device))
    model.train(was_training)
    maps = normalize_maps(protocol, localization.maps.float().cpu())
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    pixels = ((batch["image"] * std + mean).clamp(0, 1) * 255).round().to(torch.uint8)
    pred = normalized_maps_to_boxes(protocol, maps, threshold)  # one (1, 4) V1 box per image
    gt = [b[0].numpy() if len(b) else np.zeros(4, dtype=np.int64) for b in batch["boxes"]]
    return {
        "image_ids": np.array(batch["image_id"], dtype=str),
        "images": pixels.permute(0, 2, 3, 1).numpy(),
        "maps": maps.astype(np.float32),
        "pred_boxes": np.concatenate(pred).astype(np.int64),
        "gt_boxes": np.stack(gt).astype(np.int64),
        "threshold": np.float64(threshold),
    }
