"""The common dataset layer: wsolevaluation metadata, evaluation frames, loaders, few-shot subsets.

Our internal format *is* the wsolevaluation metadata : per split a folder with
`image_ids.txt`, `class_labels.txt`, `image_sizes.txt` and `localization.txt` (boxes as inclusive
original-pixel corners, or OpenImages mask paths). Every dataset adapter writes this format with
`write_metadata`, and everything downstream reads it with `read_metadata`, which validates every line.
The torch-free part (metadata files, EvalFrame) lives in wsolbench.annotations and is re-exported here.

A prepared dataset is a folder `<data_root>/<name>/` holding `dataset.yaml` (name, version, number
of classes, where images and masks live) and `metadata/<split>/`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch.utils.data import Dataset
from torchvision import transforms as T

from wsolbench.annotations import (  # noqa: F401 (re-exported: the dataset layer's public names)
    IMAGENET_MEAN,
    IMAGENET_STD,
    SPLITS,
    Box,
    EvalFrame,
    ImageError,
    MaskEntry,
    Metadata,
    MetadataError,
    describe_image_error,
    load_image,
    mask_label_map,
    read_lines,
    read_metadata,
    write_metadata,
)
from wsolbench.atomic import atomic_write_text
from wsolbench.config import ConfigError
from wsolbench.errors import MissingFileError

# --------------------------------------------------------------------------- prepared datasets

INFO_FILE = "dataset.yaml"


@dataclass
class PreparedDataset:
    """A dataset on disk: metadata per split plus the roots its image ids and mask paths resolve against."""

    name: str
    root: Path
    num_classes: int
    image_root: Path
    mask_root: Path | None
    version: str = "1"
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata_dir(self, split: str) -> Path:
        return self.root / "metadata" / split

    def split(self, split: str) -> Metadata:
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")
        return read_metadata(self.metadata_dir(split), self.num_classes)

    def has_split(self, split: str) -> bool:
        return (self.metadata_dir(split) / "image_ids.txt").is_file()


def write_dataset_info(dataset: PreparedDataset) -> None:
    """Write `dataset.yaml` last, so a dataset folder without it is an unfinished one."""
    info = {
        "name": dataset.name,
        "version": dataset.version,
        "num_classes": dataset.num_classes,
        "image_root": str(dataset.image_root),
        "mask_root": None if dataset.mask_root is None else str(dataset.mask_root),
        **dataset.extra,
    }
    atomic_write_text(dataset.root / INFO_FILE, yaml.safe_dump(info, sort_keys=False))


def open_dataset(root: str | Path) -> PreparedDataset:
    """Open a prepared dataset folder (the one holding dataset.yaml)."""
    root = Path(root)
    info_path = root / INFO_FILE
    if not info_path.is_file():
        raise MissingFileError(
            f"{root} is not a prepared dataset (no {INFO_FILE}); run `python bench.py prepare <name>` first"
        )
    info = yaml.safe_load(info_path.read_text()) or {}
    for key in ("name", "num_classes", "image_root"):
        if key not in info:
            raise MetadataError(f"{info_path}: missing key {key!r}")

    def resolve(value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value)
        return path if path.is_absolute() else (root / path)

    known = {"name", "version", "num_classes", "image_root", "mask_root"}
    return PreparedDataset(
        name=info["name"],
        root=root,
        num_classes=int(info["num_classes"]),
        image_root=resolve(info["image_root"]),
        mask_root=resolve(info.get("mask_root")),
        version=str(info.get("version", "1")),
        extra={k: v for k, v in info.items() if k not in known},
    )


class DatasetAdapter:
    """Base class of the dataset plugins in `datasets/`: turns an official layout into metadata.

    Subclasses set `name`, `num_classes`, `description`, `source_hint` (what `prepare` expects) and
    implement `prepare(source, dest)`, which writes `dest/metadata/<split>/` and `dest/dataset.yaml`
    and returns the PreparedDataset.
    """

    name: str = ""
    num_classes: int = 0
    description: str = ""
    source_hint: str = ""
    needs_source: bool = True

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:  # pragma: no cover - contract
        raise NotImplementedError


# --------------------------------------------------------------------------- evaluation frames


def train_transform(resize: int = 256, crop: int = 224) -> T.Compose:
    """The WSOL train augmentation of every official recipe: square resize, random crop, flip, normalize."""
    return T.Compose(
        [
            T.Resize((resize, resize)),
            T.RandomCrop(crop),
            T.RandomHorizontalFlip(),
            T.ToTensor(),
            T.Normalize(IMAGENET_MEAN, IMAGENET_STD),
        ]
    )


# --------------------------------------------------------------------------- torch datasets


class WSOLDataset(Dataset):
    """Images of one split with labels and, for evaluation, GT in the evaluation frame.

    Each item is a dict: `image` (3, S, S) float tensor, `label` int, `image_id` str, and for
    evaluation `boxes` (K, 4) int64 tensor in the frame (empty for unannotated splits) and `mask`
    (S, S) uint8 label map (1 / 0 / 255) or None.
    """

    def __init__(
        self,
        dataset: PreparedDataset,
        metadata: Metadata,
        *,
        frame: EvalFrame | None = None,
        transform: Any | None = None,
    ) -> None:
        if (frame is None) == (transform is None):
            raise ValueError("give exactly one of frame (evaluation) or transform (training)")
        self.dataset = dataset
        self.metadata = metadata
        self.frame = frame
        self.transform = transform if transform is not None else frame.image_transform()

    def __len__(self) -> int:
        return len(self.metadata)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image_id = self.metadata.image_ids[index]
        path = self.dataset.image_root / image_id
        split = self.metadata.split or "?"
        try:
            image = load_image(path)
        except FileNotFoundError:
            raise MissingFileError(f"image {image_id!r} of split {split} not found at {path}") from None
        except ImageError as error:
            raise ImageError(f"{error} (image {image_id!r} of split {split}; it passed `prepare`, so the "
                             "file changed since: restore it and prepare the dataset again)") from None
        item: dict[str, Any] = {
            "image": self.transform(image),
            "label": self.metadata.labels[image_id],
            "image_id": image_id,
        }
        if self.frame is not None:
            boxes = self.metadata.boxes.get(image_id, [])
            if boxes:
                w, h = self.metadata.sizes[image_id]
                framed = [self.frame.box(b, w, h) for b in boxes]
                item["boxes"] = torch.tensor(framed, dtype=torch.int64)
            else:
                item["boxes"] = torch.zeros((0, 4), dtype=torch.int64)
            entry = self.metadata.masks.get(image_id)
            if entry is not None:
                if self.dataset.mask_root is None:
                    raise MissingFileError(f"{self.dataset.root}: dataset has masks but no mask_root")
                item["mask"] = torch.from_numpy(mask_label_map(entry, self.dataset.mask_root, self.frame))
            else:
                item["mask"] = None
        return item


def collate(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack images and labels; keep per-image boxes as a list; stack masks when every item has one."""
    batch: dict[str, Any] = {
        "image": torch.stack([i["image"] for i in items]),
        "label": torch.tensor([i["label"] for i in items], dtype=torch.int64),
        "image_id": [i["image_id"] for i in items],
    }
    if "boxes" in items[0]:
        batch["boxes"] = [i["boxes"] for i in items]
        masks = [i["mask"] for i in items]
        batch["mask"] = torch.stack(masks) if all(m is not None for m in masks) else None
    return batch


# --------------------------------------------------------------------------- subsets


def per_class_subset(metadata: Metadata, k: int, seed: int) -> Metadata:
    """k images of every class, drawn without replacement with numpy's Generator(seed).

    Classes are visited in ascending order and each class's candidates in metadata order, so the
    subset depends only on (metadata, k, seed). The result keeps metadata order. A class with fewer
    than k images raises ConfigError naming it.
    """
    if k <= 0:
        raise ConfigError(f"images per class must be positive, got {k}")
    by_class: dict[int, list[str]] = {}
    for image_id in metadata.image_ids:
        by_class.setdefault(metadata.labels[image_id], []).append(image_id)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in sorted(by_class):
        candidates = by_class[label]
        if len(candidates) < k:
            raise ConfigError(f"class {label} has {len(candidates)} image(s), fewer than the {k} asked for")
        picks = rng.choice(len(candidates), size=k, replace=False)
        chosen.update(candidates[int(p)] for p in picks)
    return metadata.subset([i for i in metadata.image_ids if i in chosen])
