"""The torch side of a prepared dataset: the `Dataset` of one split, the train transform and `collate`.

Evaluation items carry their GT moved into the evaluation frame (wsolbench.annotations.EvalFrame).
"""

from __future__ import annotations

from typing import Any

import torch
from torch.utils.data import Dataset
from torchvision import transforms as T

from wsolbench.annotations import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    EvalFrame,
    ImageError,
    Metadata,
    load_image,
    mask_label_map,
)
from wsolbench.errors import MissingFileError
from wsolbench.prepared_dataset import PreparedDataset


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
