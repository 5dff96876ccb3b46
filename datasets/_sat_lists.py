"""Readers of the SAT repo's list formats (docs/datasets.md) for Stanford Dogs, FGVC-Aircraft and Stanford Cars.

Box ends in these lists are x2 = x + w style (no −1). They are converted exactly as CUB's are:
(int x1, int y1, min(int x2, W−1), min(int y2, H−1)), so every dataset follows the wsolevaluation
inclusive convention. The trailing `H W` of each line (height first) must equal the JPEG's size.
Every line is stripped of `\\r\\n` (some ship with CRLF line endings).
"""

from __future__ import annotations

from pathlib import Path

from wsolbench.annotations import Box, Metadata, MetadataError, read_lines

from ._build import end_box, image_size


def boxes_and_size(where: str, numbers: list[str], path: Path) -> tuple[list[Box], tuple[int, int]]:
    """`x1 y1 x2 y2 [x1 y1 x2 y2 ...] H W` → inclusive boxes and the checked (W, H) of `path`."""
    try:
        values = [float(v) for v in numbers]
    except ValueError:
        raise MetadataError(
            f"{where}: expected numbers 'x1 y1 x2 y2 ... H W', got {' '.join(numbers)!r}"
        ) from None
    if len(values) < 6 or (len(values) - 2) % 4:
        raise MetadataError(f"{where}: expected k boxes 'x1 y1 x2 y2' then 'H W', got {len(values)} numbers")
    size = image_size(path)
    listed = (int(values[-1]), int(values[-2]))
    if listed != size:
        raise MetadataError(
            f"{where}: lists H W = {listed[1]} {listed[0]} but {path} is {size[0]}x{size[1]} (WxH)"
        )
    boxes = [end_box(where, *values[k : k + 4], size) for k in range(0, len(values) - 2, 4)]
    return boxes, size


def dogs_test(root: Path, classes: list[str]) -> Metadata:
    """test/ images from `test_list.txt` (`<class_dir>/<file>.jpg;<label>`) + `test_gt.txt`, line by line."""
    list_path, gt_path = root / "test_list.txt", root / "test_gt.txt"
    entries, gts = read_lines(list_path), read_lines(gt_path)
    if len(entries) != len(gts):
        raise MetadataError(f"{gt_path}: {len(gts)} lines, but {list_path} has {len(entries)}")
    meta = Metadata([], {})
    for (n, entry), (m, gt) in zip(entries, gts, strict=True):
        parts = entry.split(";")
        if len(parts) != 2 or not parts[1].strip().isdigit():
            raise MetadataError(f"{list_path}:{n}: expected '<class_dir>/<file>.jpg;<label>', got {entry!r}")
        rel, label = parts[0], int(parts[1])
        class_dir = rel.split("/")[0]
        if class_dir not in classes or classes.index(class_dir) != label:
            raise MetadataError(
                f"{list_path}:{n}: label {label} of {rel!r} is not the index of {class_dir!r} among the "
                f"sorted train/ class folders"
            )
        image_id = f"test/{rel}"
        boxes, size = boxes_and_size(f"{gt_path}:{m}", gt.split(), root / image_id)
        meta.image_ids.append(image_id)
        meta.labels[image_id] = label
        meta.sizes[image_id] = size
        meta.boxes[image_id] = boxes
    return meta


def images_box(root: Path, split_of: dict[str, str]) -> tuple[list[str], dict[str, Metadata]]:
    """Aircraft / Cars: `classes.txt` (label = line index) + `images_box.txt`
    (`<id>;<class name>;<split code>;x1 y1 x2 y2 H W`, images at `images/<id>.jpg`), split by code."""
    classes_path, box_path = root / "classes.txt", root / "images_box.txt"
    classes = [line for _, line in read_lines(classes_path)]
    index = {name: i for i, name in enumerate(classes)}
    if len(index) != len(classes):
        raise MetadataError(f"{classes_path}: duplicate class names")
    out = {split: Metadata([], {}) for split in dict.fromkeys(split_of.values())}
    for n, line in read_lines(box_path):
        where = f"{box_path}:{n}"
        head, _, numbers = line.rpartition(";")
        image, _, rest = head.partition(";")
        name, _, code = rest.rpartition(";")
        if not image or not name or code not in split_of:
            raise MetadataError(
                f"{where}: expected '<id>;<class name>;<split code {'|'.join(split_of)}>;x1 y1 x2 y2 H W', "
                f"got {line!r}"
            )
        if name not in index:
            raise MetadataError(f"{where}: class {name!r} is not in {classes_path}")
        image_id = f"images/{image}.jpg"
        boxes, size = boxes_and_size(where, numbers.split(), root / image_id)
        meta = out[split_of[code]]
        if image_id in meta.labels:
            raise MetadataError(f"{where}: duplicate image {image!r}")
        meta.image_ids.append(image_id)
        meta.labels[image_id] = index[name]
        meta.sizes[image_id] = size
        meta.boxes[image_id] = boxes
    return classes, out
