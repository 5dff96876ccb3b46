"""A prepared dataset on disk: its manifest `dataset.yaml` and the metadata folders beside it.

A prepared dataset is a folder `<data_root>/<name>/` holding `dataset.yaml` (name, version, number
of classes, where images and masks live) and `metadata/<split>/` in the wsolevaluation format
(wsolbench.annotations). `write_dataset_info` writes the manifest last, so a folder without it is an
unfinished one; `open_dataset` reads it back. Nothing here imports torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from wsolbench.annotations import SPLITS, Metadata, MetadataError, read_metadata
from wsolbench.atomic import atomic_write_text
from wsolbench.errors import MissingFileError

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
