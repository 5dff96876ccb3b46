"""Per-image box results: what each test image scored at every threshold, stored compactly (`per_image.npz`).

For each image: its id, class label, top-5 predicted classes, and for every CAM threshold τ the best IoU
of the predicted boxes with its GT boxes under V1 and V2 (the two arrays `sweep_ious` returns). This is
everything the box metrics are computed from, so any metric can be recomputed on any subset or
resample of the images (wsolbench.stats).

IoU code (uint16, exact for comparisons): with the grid g_k = k / 10000 (k = 0 … 10000, as float64),
an IoU x is stored as `code = 2 j + (x != g_j)` where j is the largest k with g_k ≤ x. Hence for every
level k: `x >= g_k  ⇔  code >= 2 k` and `x > g_k  ⇔  code > 2 k`, exactly as the float comparisons the
accumulators make (δ = 50 % is g_5000, the same float64 as 0.5). `code / 20000` recovers x within 1e-4.
The format is described for users in docs/per_image.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from wsolbench.atomic import atomic_write
from wsolbench.errors import WsolbenchError

FORMAT_VERSION = 1
PER_IMAGE_FILE = "per_image.npz"  # the file's name in a run folder
GRID = 10000
_GRID_VALUES = np.arange(GRID + 1, dtype=np.float64) / GRID
NO_CLASS = -1
TOPK = 5


class PerImageFileError(WsolbenchError, ValueError):
    """A per_image.npz file that is missing, unreadable or inconsistent."""


def encode_iou(iou: np.ndarray) -> np.ndarray:
    """uint16 codes of IoUs in [0, 1] (rule in the module docstring)."""
    iou = np.asarray(iou, dtype=np.float64)
    if iou.size and (np.isnan(iou).any() or iou.min() < 0 or iou.max() > 1):
        raise ValueError("IoU values must lie in [0, 1]")
    j = np.searchsorted(_GRID_VALUES, iou, side="right") - 1
    return (2 * j + (iou != _GRID_VALUES[j])).astype(np.uint16)


def decode_iou(codes: np.ndarray) -> np.ndarray:
    """Approximate IoUs (within 1e-4) from codes; use `at_least` / `above` for exact comparisons."""
    return np.asarray(codes, dtype=np.float64) / (2 * GRID)


def _level_code(level_percent: int) -> int:
    if not 0 <= level_percent <= 100:
        raise ValueError(f"IoU level must be an integer percent in [0, 100], got {level_percent}")
    return 2 * int(level_percent) * (GRID // 100)


def at_least(codes: np.ndarray, level_percent: int) -> np.ndarray:
    """IoU ≥ level_percent / 100, exactly as the float comparison on the original IoUs."""
    return codes >= _level_code(level_percent)


def above(codes: np.ndarray, level_percent: int) -> np.ndarray:
    """IoU > level_percent / 100, exactly as the float comparison on the original IoUs."""
    return codes > _level_code(level_percent)


@dataclass
class PerImage:
    """Per-image results of one split under one evaluation protocol (arrays in image order).

    image_ids (N,) str; labels (N,) int32; top5 (N, 5) int32, the predicted classes best first, -1
    where no logits were given or there are fewer than 5 classes; thresholds (T,) float64; iou_v1,
    iou_v2 (N, T) uint16 IoU codes; iou_thresholds the δ levels in percent; protocol, strict_topk
    and selection as in the EvalProtocol that produced them.
    """

    image_ids: np.ndarray
    labels: np.ndarray
    top5: np.ndarray
    thresholds: np.ndarray
    iou_v1: np.ndarray
    iou_v2: np.ndarray
    iou_thresholds: tuple[int, ...]
    protocol: str
    strict_topk: bool
    selection: str

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def classified(self) -> bool:
        """Whether predicted classes were recorded (all images or none)."""
        return bool(len(self)) and bool((self.top5[:, 0] != NO_CLASS).all())

    def top1_correct(self) -> np.ndarray:
        return self.top5[:, 0] == self.labels

    def top5_correct(self) -> np.ndarray:
        return (self.top5 == self.labels[:, None]).any(1)

    def subset(self, order: np.ndarray) -> PerImage:
        """The images at the given indices, in that order."""
        return PerImage(self.image_ids[order], self.labels[order], self.top5[order], self.thresholds,
                        self.iou_v1[order], self.iou_v2[order], self.iou_thresholds, self.protocol,
                        self.strict_topk, self.selection)

    def aligned_to(self, image_ids: np.ndarray, where: str) -> PerImage:
        """These results reordered to `image_ids`; PerImageFileError when the image sets differ."""
        if np.array_equal(self.image_ids, image_ids):
            return self
        position = {image_id: i for i, image_id in enumerate(self.image_ids.tolist())}
        missing = [i for i in image_ids.tolist() if i not in position]
        if missing or len(image_ids) != len(self):
            example = missing[0] if missing else sorted(set(position) - set(image_ids.tolist()))[0]
            raise PerImageFileError(f"{where}: evaluated on other images than the first run (e.g. {example})")
        return self.subset(np.array([position[i] for i in image_ids.tolist()]))


def concat(parts: list[PerImage]) -> PerImage:
    """Images of several shards (same protocol and thresholds), in the order given."""
    first = parts[0]
    return PerImage(
        np.concatenate([p.image_ids for p in parts]), np.concatenate([p.labels for p in parts]),
        np.concatenate([p.top5 for p in parts]), first.thresholds,
        np.concatenate([p.iou_v1 for p in parts]), np.concatenate([p.iou_v2 for p in parts]),
        first.iou_thresholds, first.protocol, first.strict_topk, first.selection,
    )


def top5_classes(logits: np.ndarray) -> np.ndarray:
    """(B, 5) int32 class indices by decreasing logit (ties → lower index, as argmax), -1 padded."""
    order = np.argsort(-logits, axis=1, kind="stable")[:, :TOPK].astype(np.int32)
    if order.shape[1] < TOPK:
        pad = np.full((len(order), TOPK - order.shape[1]), NO_CLASS, np.int32)
        order = np.concatenate([order, pad], axis=1)
    return order


def save(per_image: PerImage, path: str | Path) -> Path:
    """Write `per_image.npz` (compressed) atomically: a temp file in the same folder, then a rename."""

    def write(handle: BinaryIO) -> None:
        np.savez_compressed(
            handle,
            format_version=np.int64(FORMAT_VERSION),
            image_ids=per_image.image_ids.astype(str),
            labels=per_image.labels.astype(np.int32),
            top5=per_image.top5.astype(np.int32),
            thresholds=per_image.thresholds.astype(np.float64),
            iou_v1=per_image.iou_v1.astype(np.uint16),
            iou_v2=per_image.iou_v2.astype(np.uint16),
            iou_thresholds=np.asarray(per_image.iou_thresholds, np.int64),
            protocol=np.str_(per_image.protocol),
            strict_topk=np.bool_(per_image.strict_topk),
            selection=np.str_(per_image.selection),
        )

    return atomic_write(path, write)


def load(path: str | Path) -> PerImage:
    """Read a `per_image.npz`; PerImageFileError names the file and what is wrong."""
    path = Path(path)
    if not path.is_file():
        raise PerImageFileError(f"{path}: no per-image results (runs made before they were recorded have none)")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as error:
        raise PerImageFileError(f"{path}: not a readable .npz file ({error})") from None
    expected = ("format_version", "image_ids", "labels", "top5", "thresholds", "iou_v1", "iou_v2",
                "iou_thresholds", "protocol", "strict_topk", "selection")
    missing = [key for key in expected if key not in arrays]
    if missing:
        raise PerImageFileError(f"{path}: missing array(s) {', '.join(missing)}")
    if int(arrays["format_version"]) != FORMAT_VERSION:
        raise PerImageFileError(f"{path}: format version {int(arrays['format_version'])}, expected {FORMAT_VERSION}")
    n, t = len(arrays["image_ids"]), len(arrays["thresholds"])
    shapes = {"labels": (n,), "top5": (n, TOPK), "iou_v1": (n, t), "iou_v2": (n, t)}
    for key, shape in shapes.items():
        if arrays[key].shape != shape:
            raise PerImageFileError(f"{path}: {key} has shape {arrays[key].shape}, expected {shape}")
    for key in ("iou_v1", "iou_v2"):
        if arrays[key].dtype != np.uint16 or (n and int(arrays[key].max()) > 2 * GRID):
            raise PerImageFileError(f"{path}: {key} must hold uint16 IoU codes in [0, {2 * GRID}]")
    return PerImage(
        image_ids=arrays["image_ids"].astype(str),
        labels=arrays["labels"].astype(np.int32),
        top5=arrays["top5"].astype(np.int32),
        thresholds=arrays["thresholds"].astype(np.float64),
        iou_v1=arrays["iou_v1"],
        iou_v2=arrays["iou_v2"],
        iou_thresholds=tuple(int(d) for d in arrays["iou_thresholds"]),
        protocol=str(arrays["protocol"]),
        strict_topk=bool(arrays["strict_topk"]),
        selection=str(arrays["selection"]),
    )
