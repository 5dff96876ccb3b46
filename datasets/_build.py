"""Helpers shared by the dataset adapters: staged builds, source checks, image sizes, box rules."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from wsolbench.annotations import (
    Box,
    ImageError,
    Metadata,
    MetadataError,
    describe_image_error,
    load_image,
    read_metadata,
    write_metadata,
)
from wsolbench.atomic import current_umask
from wsolbench.errors import MissingFileError, problem_report
from wsolbench.prepared_dataset import PreparedDataset, open_dataset, write_dataset_info

SHIPPED_METADATA = Path(__file__).resolve().parent / "wsolevaluation" / "metadata"


def count_image_ids(split_dir: Path) -> int:
    """The number of images a metadata split lists (non-empty lines of its image_ids.txt)."""
    return sum(1 for line in (Path(split_dir) / "image_ids.txt").read_text().splitlines() if line.strip())


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
    os.chmod(stage, 0o777 & ~current_umask())  # the mode mkdir would give, not mkdtemp's 0700
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
    """`path` if it exists, else MissingFileError naming it and the expected layout."""
    if not path.exists():
        raise MissingFileError(f"{path}: missing; expected source layout: {hint}")
    return path


def require_all(root: Path, relpaths: list[str], what: str, hint: str) -> None:
    """MissingFileError naming the count and the first missing files of `relpaths` under `root`."""
    missing = [p for p in relpaths if not (root / p).is_file()]
    if missing:
        shown = ", ".join(missing[:3])
        raise MissingFileError(
            f"{root}: {len(missing)} of {len(relpaths)} {what} missing, first: {shown}; "
            f"expected layout: {hint}"
        )


def image_size(path: Path) -> tuple[int, int]:
    """(W, H) of an image file, read from its header; ImageError naming the file when it is unreadable."""
    try:
        with Image.open(path) as image:
            return image.size
    except FileNotFoundError:
        raise MissingFileError(f"{path}: image listed in the source annotations is missing") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"{path}: {describe_image_error(path, error)}") from None


def _size_or_problem(path: Path) -> tuple[int, int] | str:
    try:
        return image_size(path)
    except FileNotFoundError:
        return f"{path}: missing (listed in the source annotations)"
    except ImageError as error:
        return str(error)


def image_sizes(image_root: Path, image_ids: list[str], workers: int | None = None) -> dict[str, tuple[int, int]]:
    """(W, H) of every image from its header, read in threads; ImageError listing every missing or unreadable one."""
    paths = [image_root / image_id for image_id in image_ids]
    with ThreadPoolExecutor(workers or min(8, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_size_or_problem, paths, chunksize=64))
    _raise_problems([r for r in results if isinstance(r, str)], len(paths), "cannot be read")
    return dict(zip(image_ids, results, strict=True))  # type: ignore[arg-type]


def _raise_problems(problems: list[str], total: int, what: str) -> None:
    if problems:
        raise ImageError(problem_report(f"{len(problems)} of {total} images {what}", problems,
                                        "; replace them from the official archive and prepare again"))


def _decode_problem(path: Path) -> str | None:
    """None when the image at `path` decodes fully, else one line naming it and what is wrong."""
    try:
        load_image(path)
    except FileNotFoundError:
        return f"{path}: missing"
    except ImageError as error:
        return str(error)
    return None


def check_images(image_root: Path, image_ids: list[str], workers: int | None = None) -> None:
    """Open and fully decode every image once, in threads, with a progress bar on stderr.

    Raises ImageError counting the bad images and naming the first 20 of them (each with
    what is wrong: missing, empty, not an image, truncated), so a prepare never ends with a dataset
    whose images fail later, mid-training or mid-evaluation.
    """
    workers = workers or min(8, os.cpu_count() or 1)
    paths = [image_root / image_id for image_id in image_ids]
    with ThreadPoolExecutor(workers) as pool:  # PIL decodes with the GIL released
        results = pool.map(_decode_problem, paths, chunksize=16)
        problems = [p for p in tqdm(results, total=len(paths), desc="checking images", unit="img") if p]
    _raise_problems(problems, len(paths), "cannot be decoded")


def end_box(where: str, x0: float, y0: float, x1: float, y1: float, size: tuple[int, int]) -> Box:
    """An inclusive box from x0, y0 and an end x1 = x0 + w (no −1), as CUB and the SAT lists give it.

    Each value is truncated to int; the end is clipped to the last pixel, (min(x1, W−1), min(y1, H−1)),
    which is the rule that reproduces the wsolevaluation CUB metadata (docs/datasets.md). A box that
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


def publish(
    dest: Path,
    *,
    name: str,
    num_classes: int,
    splits: dict[str, Metadata],
    image_root: Path,
    mask_root: Path | None = None,
    extra: dict | None = None,
) -> PreparedDataset:
    """Write a prepared dataset to `dest` in one step and open it.

    Every image and mask is decoded once (check_images); every split is written into a staged folder and
    read back through the validating reader, then dataset.yaml; only then does the folder replace `dest`.
    A failure at any point leaves `dest` as it was.
    """
    with staged(Path(dest)) as stage:
        _write_prepared(stage, name=name, num_classes=num_classes, splits=splits, image_root=image_root,
                        mask_root=mask_root, extra=extra or {})
    return open_dataset(dest)


def _write_prepared(stage: Path, *, name: str, num_classes: int, splits: dict[str, Metadata], image_root: Path,
                    mask_root: Path | None, extra: dict) -> None:
    check_images(image_root, list(dict.fromkeys(i for metadata in splits.values() for i in metadata.image_ids)))
    masks = [path for metadata in splits.values() for entry in metadata.masks.values()
             for path in (*entry.instances, entry.ignore)]
    if masks and mask_root is not None:
        check_images(mask_root, list(dict.fromkeys(masks)))
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
            extra=extra,
        )
    )


def image_folder(root: Path, hint: str) -> tuple[list[str], list[tuple[str, int]]]:
    """Sorted class folders of `root` and (relative path, label) of their images, label = folder index."""
    require(root, hint)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    if not classes:
        raise MissingFileError(f"{root}: no class folders; expected source layout: {hint}")
    items = [
        (f"{root.name}/{name}/{file.name}", label)
        for label, name in enumerate(classes)
        for file in sorted((root / name).iterdir())
        if file.suffix.lower() in IMAGE_SUFFIXES
    ]
    return classes, items


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
