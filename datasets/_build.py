"""Helpers shared by the dataset adapters: staged builds, source checks, image sizes, box rules."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from PIL import Image

from wsolbench.data import (
    Box,
    Metadata,
    MetadataError,
    PreparedDataset,
    read_metadata,
    write_dataset_info,
    write_metadata,
)

SHIPPED_METADATA = Path(__file__).resolve().parent / "wsolevaluation" / "metadata"


@contextmanager
def staged(dest: Path) -> Iterator[Path]:
    """A temp folder next to `dest` that replaces `dest` only if the block succeeds.

    The adapter writes metadata and, last, dataset.yaml into the yielded folder; on success the
    folder is renamed to `dest` (an older `dest` is removed after the rename), on failure it is
    deleted, so `dest` never holds a half-written dataset.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.staging-"))
    try:
        yield stage
        old = None
        if dest.exists():
            old = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.old-"))
            os.replace(dest, old / dest.name)
        os.replace(stage, dest)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise


def require(path: Path, hint: str) -> Path:
    """`path` if it exists, else FileNotFoundError naming it and the expected layout."""
    if not path.exists():
        raise FileNotFoundError(f"{path}: missing; expected source layout: {hint}")
    return path


def require_all(root: Path, relpaths: list[str], what: str, hint: str) -> None:
    """FileNotFoundError naming the count and the first missing files of `relpaths` under `root`."""
    missing = [p for p in relpaths if not (root / p).is_file()]
    if missing:
        shown = ", ".join(missing[:3])
        raise FileNotFoundError(
            f"{root}: {len(missing)} of {len(relpaths)} {what} missing, first: {shown}; "
            f"expected layout: {hint}"
        )


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file, read from its header."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: image listed in the source annotations is missing") from None


def end_box(where: str, x0: float, y0: float, x1: float, y1: float, size: tuple[int, int]) -> Box:
    """An inclusive box from x0, y0 and an end x1 = x0 + w (no −1), as CUB and the SAT lists give it.

    Each value is truncated to int; the end is clipped to the last pixel, (min(x1, W−1), min(y1, H−1)),
    which is the rule that reproduces the wsolevaluation CUB metadata (datasets.md §4.1). A box that
    still does not lie in the image raises MetadataError naming `where`.
    """
    w, h = size
    box = (int(x0), int(y0), min(int(x1), w - 1), min(int(y1), h - 1))
    check_box(where, box, size)
    return box


def check_box(where: str, box: Box, size: tuple[int, int]) -> None:
    x0, y0, x1, y1 = box
    w, h = size
    if not (0 <= x0 <= x1 <= w - 1 and 0 <= y0 <= y1 <= h - 1):
        raise MetadataError(f"{where}: box ({x0},{y0},{x1},{y1}) does not lie in the {w}x{h} image")


def write_prepared(
    stage: Path,
    *,
    name: str,
    num_classes: int,
    splits: dict[str, Metadata],
    image_root: Path,
    mask_root: Path | None = None,
    extra: dict | None = None,
) -> None:
    """Write every split into `stage`, read each back through the validating reader, then dataset.yaml."""
    for split, metadata in splits.items():
        write_metadata(stage / "metadata" / split, metadata)
        read_metadata(stage / "metadata" / split, num_classes)
    write_dataset_info(
        PreparedDataset(
            name=name,
            root=stage,
            num_classes=num_classes,
            image_root=image_root,
            mask_root=mask_root,
            extra=extra or {},
        )
    )


def image_folder(root: Path, hint: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class folders of `root` and (relative path, label) of their images, label = folder index."""
    require(root, hint)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise FileNotFoundError(f"{root}: no class folders; expected source layout: {hint}")
    items = [
        (f"{root.name}/{name}/{file.name}", label)
        for label, name in enumerate(classes)
        for file in sorted((root / name).iterdir())
        if file.suffix.lower() in IMAGE_SUFFIXES
    ]
    return classes, items


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
