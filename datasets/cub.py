"""`cub`: CUB-200-2011 (train / test from the official lists) + CUBV2 (val, wsolevaluation metadata).

- image id = the `images.txt` path (`<class folder>/<file>.jpg`); split by `train_test_split.txt`
  (1 → train, 0 → test), in `images.txt` order; label = class id − 1.
- box = (int x, int y, min(int(x + w), W−1), min(int(y + h), H−1)) from `bounding_boxes.txt`, with W, H
  read from the JPEG files; this reproduces the wsolevaluation metadata (docs/datasets.md).
- val (train-fullsup) is the shipped wsolevaluation `CUB/val` metadata, whose CUBV2 images live in
  the same class folders. If none of them is in the source, the val split is skipped with a warning
  that says how to get CUBV2; if only some are, prepare fails naming the missing ones.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from wsolbench.annotations import Metadata, MetadataError, read_lines, read_metadata
from wsolbench.contracts.dataset import DatasetAdapter
from wsolbench.prepared_dataset import PreparedDataset
from wsolbench.registry import register_dataset

from ._build import (
    SHIPPED_METADATA,
    count_image_ids,
    end_box,
    image_sizes,
    publish,
    require,
    require_all,
)

HINT = (
    "CUB_200_2011/ (CUB_200_2011.tgz extracted) holding images.txt, image_class_labels.txt, "
    "train_test_split.txt, bounding_boxes.txt and images/<class folder>/<file>.jpg; the CUBV2 val images "
    "(wsolevaluation's CUBV2 release) extracted into the same images/<class folder>/ folders"
)
CUBV2_HINT = "download CUBV2 as the clovaai/wsolevaluation README describes and extract it into images/"


def _table(path: Path, columns: int) -> dict[str, tuple[int, list[str]]]:
    """`<img_id> <fields...>` lines as {img_id: (line number, fields)}."""
    table: dict[str, tuple[int, list[str]]] = {}
    for n, line in read_lines(path):
        parts = line.split()
        if len(parts) != columns + 1:
            raise MetadataError(f"{path}:{n}: expected <img_id> and {columns} field(s), got {line!r}")
        if parts[0] in table:
            raise MetadataError(f"{path}:{n}: duplicate img_id {parts[0]!r}")
        table[parts[0]] = (n, parts[1:])
    return table


def _lookup(table: dict[str, tuple[int, list[str]]], key: str, path: Path) -> tuple[int, list[str]]:
    if key not in table:
        raise MetadataError(f"{path}: no line for img_id {key} (listed in images.txt)")
    return table[key]


class CUBAdapter(DatasetAdapter):
    name = "cub"
    num_classes = 200
    description = "CUB-200-2011 birds (train / CUBV2 val / test, boxes)"
    source_hint = HINT
    needs_source = True
    missing_val_reason = "its CUBV2 images were not prepared"

    def official_train_images(self) -> tuple[int, str]:
        return count_image_ids(SHIPPED_METADATA / "CUB" / "train"), "shipped wsolevaluation CUB/train metadata"

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:
        source = Path(source).resolve()
        files = {
            name: require(source / name, HINT)
            for name in (
                "images.txt",
                "image_class_labels.txt",
                "train_test_split.txt",
                "bounding_boxes.txt",
                "images",
            )
        }
        images = _table(files["images.txt"], 1)
        labels = _table(files["image_class_labels.txt"], 1)
        splits = _table(files["train_test_split.txt"], 1)
        boxes = _table(files["bounding_boxes.txt"], 4)
        out = {"train": Metadata([], {}), "test": Metadata([], {})}
        sizes = image_sizes(files["images"], [rel for _, (rel,) in images.values()])
        for img_id, (_, (rel,)) in images.items():
            n, (flag,) = _lookup(splits, img_id, files["train_test_split.txt"])
            if flag not in ("0", "1"):
                raise MetadataError(
                    f"{files['train_test_split.txt']}:{n}: is_training must be 0 or 1, got {flag!r}"
                )
            n, (class_id,) = _lookup(labels, img_id, files["image_class_labels.txt"])
            if not class_id.isdigit() or not 1 <= int(class_id) <= self.num_classes:
                raise MetadataError(
                    f"{files['image_class_labels.txt']}:{n}: class id must be an integer in 1..200, "
                    f"got {class_id!r}"
                )
            n, coords = _lookup(boxes, img_id, files["bounding_boxes.txt"])
            try:
                x, y, w, h = (float(c) for c in coords)
            except ValueError:
                raise MetadataError(
                    f"{files['bounding_boxes.txt']}:{n}: x y w h must be numbers, got {coords}"
                ) from None
            size = sizes[rel]
            meta = out["train" if flag == "1" else "test"]
            meta.image_ids.append(rel)
            meta.labels[rel] = int(class_id) - 1
            meta.sizes[rel] = size
            meta.boxes[rel] = [end_box(f"{files['bounding_boxes.txt']}:{n}", x, y, x + w, y + h, size)]
        val = read_metadata(SHIPPED_METADATA / "CUB" / "val", self.num_classes)
        present = [i for i in val.image_ids if (files["images"] / i).is_file()]
        if not present:
            warnings.warn(
                f"{files['images']}: none of the {len(val)} CUBV2 val images is present, so the val "
                "(train-fullsup) split is skipped: runs on this dataset report no val numbers and score the "
                f"last checkpoint, not the val-selected best; {CUBV2_HINT}",
                stacklevel=2,
            )
        else:
            require_all(files["images"], val.image_ids, "CUBV2 val images", CUBV2_HINT)
            out["val"] = val
        return publish(dest, name=self.name, num_classes=self.num_classes, splits=out, image_root=files["images"])


register_dataset("cub")(CUBAdapter())
