"""wsolevaluation metadata files, image decoding and the evaluation frame, without torch.

Our internal format *is* the wsolevaluation metadata: per split a folder with `image_ids.txt`,
`class_labels.txt`, `image_sizes.txt` and `localization.txt` (boxes as inclusive original-pixel
corners, or OpenImages mask paths). `read_metadata` validates every line; `write_metadata` writes
the files atomically. EvalFrame moves boxes and masks into the evaluation frame. This module imports
neither torch nor torchvision, so that scoring saved maps starts fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from wsolbench.atomic import atomic_write_text
from wsolbench.errors import WsolbenchError

SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
Box = tuple[int, int, int, int]


class MetadataError(WsolbenchError, ValueError):
    """A metadata file that breaks the format; the message starts with `<file>:<line>:`."""


class ImageError(WsolbenchError, OSError):
    """An image file that cannot be decoded; the message names the file and what is wrong.

    Raised in a DataLoader worker, torch re-raises it in the main process with the worker's
    traceback as its message; the constructor keeps only our own last line.
    """

    def __init__(self, message: str) -> None:
        marker = f"{type(self).__name__}: "
        if "Traceback" in message and marker in message:
            message = message.rsplit(marker, 1)[1].strip()
        super().__init__(message)


def describe_image_error(path: Path, error: BaseException) -> str:
    """What is wrong with an image file that PIL could not decode, in words."""
    try:
        size = path.stat().st_size
    except OSError:
        size = None
    if size == 0:
        return "empty file (0 bytes)"
    if isinstance(error, UnidentifiedImageError):
        return f"not a readable image ({size} bytes that PIL cannot identify as any image format)"
    if "truncated" in str(error).lower():
        return f"truncated image data ({size} bytes; {error})"
    return f"corrupt image data ({type(error).__name__}: {error})"


def load_image(path: Path, mode: str = "RGB") -> Image.Image:
    """The image at `path`, fully decoded and converted to `mode`.

    FileNotFoundError when the file is missing; ImageError naming the file and what is wrong when it
    cannot be decoded (empty, not an image, truncated). Truncated files are always rejected: PIL's
    global LOAD_TRUNCATED_IMAGES switch is left as it is (off).
    """
    try:
        with Image.open(path) as handle:
            return handle.convert(mode)
    except FileNotFoundError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBombError) as error:
        raise ImageError(f"{path}: {describe_image_error(Path(path), error)}") from None


@dataclass(frozen=True)
class MaskEntry:
    """OpenImages-style masks of one image: instance mask paths and the single ignore-mask path."""

    instances: tuple[str, ...]
    ignore: str


@dataclass
class Metadata:
    """One split. `image_ids` fixes the iteration order; the dicts are keyed by image id."""

    image_ids: list[str]
    labels: dict[str, int]
    sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # (W, H)
    boxes: dict[str, list[Box]] = field(default_factory=dict)
    masks: dict[str, MaskEntry] = field(default_factory=dict)
    split: str = field(default="", compare=False)  # the folder it was read from (train, val, test)

    def __len__(self) -> int:
        return len(self.image_ids)

    @property
    def kind(self) -> str:
        """'boxes', 'masks' or 'labels' (no localization annotation, as in train splits)."""
        return "boxes" if self.boxes else "masks" if self.masks else "labels"

    def subset(self, image_ids: Sequence[str]) -> Metadata:
        """The same split restricted to `image_ids`, in the given order."""
        keep = list(image_ids)
        return Metadata(
            image_ids=keep,
            labels={i: self.labels[i] for i in keep},
            sizes={i: self.sizes[i] for i in keep if i in self.sizes},
            boxes={i: self.boxes[i] for i in keep if i in self.boxes},
            masks={i: self.masks[i] for i in keep if i in self.masks},
            split=self.split,
        )


# --------------------------------------------------------------------------- reading and writing


def read_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of the non-empty lines, `\r\n` and `\n` endings stripped.

    A missing final newline is the wsolevaluation format's norm; the dataset adapters read the
    official list files with this too.
    """
    text = path.read_text(encoding="utf-8")
    return [(n, line.rstrip("\r")) for n, line in enumerate(text.split("\n"), start=1) if line.strip()]


def _fields(path: Path, n: int, line: str, count: int, syntax: str) -> list[str]:
    parts = line.split(",")
    if len(parts) != count:
        raise MetadataError(f"{path}:{n}: expected {count} comma-separated fields ({syntax}), got {len(parts)}")
    return parts


def _int(path: Path, n: int, value: str, what: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise MetadataError(f"{path}:{n}: {what} must be an integer, got {value!r}") from None


def read_metadata(split_dir: str | Path, num_classes: int | None = None) -> Metadata:
    """Read and validate one split folder.

    Raises MetadataError naming the file and line for: a wrong field count, a non-integer field,
    a duplicate or unknown image id, a class id outside [0, num_classes), a box with x1 < x0 or
    y1 < y0 or outside its image, a missing label, or a malformed mask line.
    """
    split_dir = Path(split_dir)
    ids_path = split_dir / "image_ids.txt"
    if not ids_path.is_file():
        raise MetadataError(f"{ids_path}: missing (every split needs image_ids.txt)")
    image_ids: list[str] = []
    known: dict[str, int] = {}  # image id → its line in image_ids.txt
    for n, line in read_lines(ids_path):
        if "," in line:
            raise MetadataError(f"{ids_path}:{n}: expected one image id per line, got {line!r}")
        if line in known:
            raise MetadataError(f"{ids_path}:{n}: duplicate image id {line!r}")
        known[line] = n
        image_ids.append(line)

    def check_known(path: Path, n: int, image_id: str) -> None:
        if image_id not in known:
            raise MetadataError(f"{path}:{n}: unknown image {image_id!r} (not in {ids_path.name})")

    labels: dict[str, int] = {}
    labels_path = split_dir / "class_labels.txt"
    if not labels_path.is_file():
        raise MetadataError(f"{labels_path}: missing (every split needs class_labels.txt)")
    for n, line in read_lines(labels_path):
        image_id, label_text = _fields(labels_path, n, line, 2, "<image_id>,<label>")
        check_known(labels_path, n, image_id)
        label = _int(labels_path, n, label_text, "class label")
        if label < 0 or (num_classes is not None and label >= num_classes):
            raise MetadataError(
                f"{labels_path}:{n}: class id {label} out of range [0, {num_classes})"
                if num_classes is not None
                else f"{labels_path}:{n}: class id {label} is negative"
            )
        if image_id in labels:
            raise MetadataError(f"{labels_path}:{n}: second label for {image_id!r}")
        labels[image_id] = label
    unlabelled = [i for i in image_ids if i not in labels]
    if unlabelled:
        raise MetadataError(
            f"{labels_path}: no label for {len(unlabelled)} image(s), first {unlabelled[0]!r} "
            f"(listed at {ids_path}:{known[unlabelled[0]]})"
        )

    sizes: dict[str, tuple[int, int]] = {}
    sizes_path = split_dir / "image_sizes.txt"
    if sizes_path.is_file():
        for n, line in read_lines(sizes_path):
            image_id, w, h = _fields(sizes_path, n, line, 3, "<image_id>,<W>,<H>")
            check_known(sizes_path, n, image_id)
            size = (_int(sizes_path, n, w, "width"), _int(sizes_path, n, h, "height"))
            if size[0] <= 0 or size[1] <= 0:
                raise MetadataError(f"{sizes_path}:{n}: image size must be positive, got {size}")
            sizes[image_id] = size

    boxes: dict[str, list[Box]] = {}
    masks: dict[str, MaskEntry] = {}
    loc_path = split_dir / "localization.txt"
    if loc_path.is_file():
        lines = read_lines(loc_path)
        if lines and len(lines[0][1].split(",")) == 3:
            masks = _read_masks(loc_path, lines, check_known)
        else:
            boxes = _read_boxes(loc_path, lines, check_known, sizes)
    return Metadata(image_ids, labels, sizes, boxes, masks, split=split_dir.name)


def _read_boxes(path: Path, lines: list[tuple[int, str]], check_known: Any, sizes: dict) -> dict[str, list[Box]]:
    boxes: dict[str, list[Box]] = {}
    for n, line in lines:
        image_id, *coords = _fields(path, n, line, 5, "<image_id>,<x0>,<y0>,<x1>,<y1>")
        check_known(path, n, image_id)
        x0, y0, x1, y1 = (_int(path, n, c, name) for c, name in zip(coords, ("x0", "y0", "x1", "y1"), strict=True))
        if x1 < x0 or y1 < y0:
            raise MetadataError(f"{path}:{n}: box ({x0},{y0},{x1},{y1}) has x1 < x0 or y1 < y0")
        if min(x0, y0) < 0:
            raise MetadataError(f"{path}:{n}: box ({x0},{y0},{x1},{y1}) has a negative coordinate")
        if image_id not in sizes:
            raise MetadataError(f"{path}:{n}: box for {image_id!r}, which has no line in image_sizes.txt")
        w, h = sizes[image_id]
        if x1 > w - 1 or y1 > h - 1:
            raise MetadataError(
                f"{path}:{n}: box ({x0},{y0},{x1},{y1}) lies outside the {w}x{h} image "
                f"(inclusive corners must be ≤ ({w - 1},{h - 1}))"
            )
        boxes.setdefault(image_id, []).append((x0, y0, x1, y1))
    return boxes


def _read_masks(path: Path, lines: list[tuple[int, str]], check_known: Any) -> dict[str, MaskEntry]:
    instances: dict[str, list[str]] = {}
    ignores: dict[str, str] = {}
    for n, line in lines:
        image_id, mask_path, ignore_path = _fields(path, n, line, 3, "<image_id>,<mask_path>,<ignore_path>")
        check_known(path, n, image_id)
        if not mask_path:
            raise MetadataError(f"{path}:{n}: empty instance-mask path")
        if image_id not in instances:
            if not ignore_path:
                raise MetadataError(f"{path}:{n}: the first line of {image_id!r} must carry its ignore-mask path")
            ignores[image_id] = ignore_path
            instances[image_id] = []
        elif ignore_path:
            raise MetadataError(
                f"{path}:{n}: only the first line of {image_id!r} may carry an ignore-mask path"
            )
        instances[image_id].append(mask_path)
    return {i: MaskEntry(tuple(paths), ignores[i]) for i, paths in instances.items()}


def write_metadata(split_dir: str | Path, metadata: Metadata) -> None:
    """Write one split in the exact wsolevaluation syntax (no header, no trailing newline)."""
    split_dir = Path(split_dir)
    ids = metadata.image_ids
    atomic_write_text(split_dir / "image_ids.txt", "\n".join(ids))
    atomic_write_text(split_dir / "class_labels.txt", "\n".join(f"{i},{metadata.labels[i]}" for i in ids))
    atomic_write_text(
        split_dir / "image_sizes.txt",
        "\n".join(f"{i},{w},{h}" for i in ids if i in metadata.sizes for w, h in [metadata.sizes[i]]),
    )
    if metadata.masks:
        loc = [
            f"{i},{path},{entry.ignore if k == 0 else ''}"
            for i in ids
            if i in metadata.masks
            for entry in [metadata.masks[i]]
            for k, path in enumerate(entry.instances)
        ]
    else:
        loc = [f"{i},{x0},{y0},{x1},{y1}" for i in ids for x0, y0, x1, y1 in metadata.boxes.get(i, [])]
    atomic_write_text(split_dir / "localization.txt", "\n".join(loc))


# --------------------------------------------------------------------------- evaluation frames


@dataclass(frozen=True)
class EvalFrame:
    """Where evaluation happens: resize the image to resize×resize, then centre-crop to crop×crop.

    resize == crop is wsolevaluation's "resize 224, no crop" (TS-CAM and SCM too); resize 256 with
    crop 224 is SAT's. Boxes and masks are moved into the frame as each protocol's repository does
    (docs/protocols.md).
    divide_first: scale box coordinates as x / W · R (SAT, TS-CAM, SCM) instead of x · R / W
    (wsolevaluation); the float results differ in the last bit for some (x, W), which truncation turns
    into one pixel.
    """

    resize: int = 224
    crop: int = 224
    divide_first: bool = False

    @property
    def offset(self) -> int:
        return (self.resize - self.crop) // 2

    def box(self, box: Box, width: int, height: int) -> Box:
        """An inclusive original-pixel box in the frame (truncating, as the references do)."""
        x0, y0, x1, y1 = box
        r, c, s = self.resize, self.crop, self.offset
        if r == c and not self.divide_first:  # wsolevaluation resize_bbox: int(x * 224 / W), nothing to clip
            return (int(x0 * r / width), int(y0 * r / height), int(x1 * r / width), int(y1 * r / height))
        # SAT / TS-CAM / SCM: int(max(x/W·R − s, 0)) for the first corner, int(min(x/W·R − s, C − 1)) for the
        # second (s = 0 without a crop)
        return (
            int(max(x0 / width * r - s, 0)),
            int(max(y0 / height * r - s, 0)),
            int(min(x1 / width * r - s, c - 1)),
            int(min(y1 / height * r - s, c - 1)),
        )

    def image_transform(self) -> Any:
        from torchvision import transforms as T

        steps: list[Any] = [T.Resize((self.resize, self.resize))]
        if self.crop != self.resize:
            steps.append(T.CenterCrop(self.crop))
        return T.Compose([*steps, T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def mask(self, path: Path) -> np.ndarray:
        """A binary mask in the frame: grayscale, float, nearest-neighbour resize, > 0.5."""
        import cv2

        array = np.asarray(load_image(path, "L"), dtype=np.float32)
        array = cv2.resize(array, (self.resize, self.resize), interpolation=cv2.INTER_NEAREST)
        s = self.offset
        return array[s : s + self.crop, s : s + self.crop] > 0.5


def mask_label_map(entry: MaskEntry, mask_root: Path, frame: EvalFrame) -> np.ndarray:
    """uint8 map in the frame: 1 = foreground (union of instances), 255 = ignore \\ foreground, 0 = rest."""
    foreground = np.zeros((frame.crop, frame.crop), dtype=bool)
    for instance in entry.instances:
        foreground |= frame.mask(mask_root / instance)
    ignore = frame.mask(mask_root / entry.ignore) & ~foreground
    labels = foreground.astype(np.uint8)
    labels[ignore] = 255
    return labels
