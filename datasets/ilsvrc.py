"""`ilsvrc`: ImageNet-1k (ILSVRC 2012) train + ImageNetV2 val + ILSVRC 2012 val as test.

- train: `train/<wnid>/<file>`, label = index of the wnid among the sorted train folders; no sizes
  or boxes (as in wsolevaluation).
- test: the flat `val/ILSVRC2012_val_*.JPEG` images in sorted order, every box of the image from the
  per-image XML files (`val/*.xml`) or, when `LOC_val_solution.csv` is in the source root, from it
  ("ImageId,PredictionString" with repeated "wnid xmin ymin xmax ymax"). Coordinates are taken as
  inclusive corners; an end beyond the last pixel is clipped to W−1 / H−1 (as the wsolevaluation
  ImageNetV2 metadata does), and a box that starts outside the image, is negative or inverted is an
  error naming the annotation. W, H come from the JPEG files. The label is the wnid of the boxes.
- val (train-fullsup): the shipped wsolevaluation `ILSVRC/val` metadata (ImageNetV2,
  `val2/<label>/<k>.jpeg`; another folder in that format can be given as `val_metadata`). Skipped
  with a warning when `val2/` is absent; its labels index the 1000 standard classes, so it requires
  exactly 1000 train folders.
"""

from __future__ import annotations

import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

from wsolbench.annotations import Box, Metadata, MetadataError, read_lines, read_metadata
from wsolbench.contracts.dataset import DatasetAdapter
from wsolbench.errors import MissingFileError
from wsolbench.prepared_dataset import PreparedDataset
from wsolbench.registry import register_dataset

from ._build import (
    IMAGE_SUFFIXES,
    SHIPPED_METADATA,
    image_sizes,
    publish,
    require,
    require_all,
)

HINT = (
    "ILSVRC/ holding train/<wnid>/<file>.JPEG (the per-class tars extracted), val/ILSVRC2012_val_*.JPEG "
    "(flat) with the localization annotations as val/ILSVRC2012_val_*.xml or as LOC_val_solution.csv "
    "in ILSVRC/, and optionally val2/<label>/<k>.jpeg (ImageNetV2 threshold0.7, for the val split)"
)
TRAIN_IMAGES = 1_281_167  # ILSVRC-2012 train; its metadata is not shipped with wsolbench
Annotation = tuple[str, str, list[tuple[str, tuple[int, int, int, int]]]]  # where, image stem, [(wnid, box)]


def _number(where: str, text: str | None) -> int:
    try:
        return int(float(text or ""))
    except ValueError:
        raise MetadataError(f"{where}: box coordinate must be a number, got {text!r}") from None


def _from_xml(folder: Path) -> dict[str, Annotation]:
    annotations: dict[str, Annotation] = {}
    for path in sorted(folder.glob("*.xml")):
        try:
            root = ET.parse(path).getroot()
        except ET.ParseError as error:
            raise MetadataError(f"{path}: not valid XML ({error})") from None
        objects = []
        for obj in root.iter("object"):
            box = obj.find("bndbox")
            if box is None or obj.findtext("name") is None:
                raise MetadataError(f"{path}: an <object> without <name> or <bndbox>")
            coords = tuple(_number(str(path), box.findtext(k)) for k in ("xmin", "ymin", "xmax", "ymax"))
            objects.append((obj.findtext("name", "").strip(), coords))
        annotations[path.stem] = (str(path), path.stem, objects)
    return annotations


def _from_csv(path: Path) -> dict[str, Annotation]:
    annotations: dict[str, Annotation] = {}
    for n, line in read_lines(path):
        if n == 1 and line.startswith("ImageId"):
            continue
        parts = line.split(",")
        values = parts[1].split() if len(parts) == 2 else []
        if len(parts) != 2 or not values or len(values) % 5:
            raise MetadataError(f"{path}:{n}: expected ImageId,<wnid xmin ymin xmax ymax ...>, got {line!r}")
        where = f"{path}:{n}"
        objects = [
            (values[k], tuple(_number(where, v) for v in values[k + 1 : k + 5]))
            for k in range(0, len(values), 5)
        ]
        if parts[0] in annotations:
            raise MetadataError(f"{where}: duplicate ImageId {parts[0]!r}")
        annotations[parts[0]] = (where, parts[0], objects)
    return annotations


def _clip(where: str, box: tuple[int, int, int, int], size: tuple[int, int]) -> Box:
    x0, y0, x1, y1 = box
    w, h = size
    if min(box) < 0 or x1 < x0 or y1 < y0 or x0 > w - 1 or y0 > h - 1:
        raise MetadataError(f"{where}: box {box} does not lie in the {w}x{h} image")
    return (x0, y0, min(x1, w - 1), min(y1, h - 1))


class ILSVRCAdapter(DatasetAdapter):
    name = "ilsvrc"
    num_classes = 1000
    description = "ImageNet-1k (ILSVRC 2012 train / ImageNetV2 val / ILSVRC 2012 val as test, boxes)"
    source_hint = HINT
    needs_source = True

    def __init__(self, val_metadata: Path = SHIPPED_METADATA / "ILSVRC" / "val") -> None:
        self.val_metadata = Path(val_metadata)

    def official_train_images(self) -> tuple[int, str]:
        return TRAIN_IMAGES, "ILSVRC-2012 train"

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:
        source = Path(source).resolve()
        train_dir, val_dir = require(source / "train", HINT), require(source / "val", HINT)
        wnids = sorted(p.name for p in train_dir.iterdir() if p.is_dir())
        index = {w: i for i, w in enumerate(wnids)}
        train = Metadata([], {})
        for wnid in wnids:
            for file in sorted((train_dir / wnid).iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    train.image_ids.append(f"train/{wnid}/{file.name}")
                    train.labels[train.image_ids[-1]] = index[wnid]
        if not train.image_ids:
            raise MissingFileError(f"{train_dir}: no images; expected source layout: {HINT}")

        csv = source / "LOC_val_solution.csv"
        annotations = _from_csv(csv) if csv.is_file() else _from_xml(val_dir)
        images = sorted(p for p in val_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise MissingFileError(
                f"{val_dir}: no ILSVRC2012_val_*.JPEG images; expected source layout: {HINT}"
            )
        stems = {p.stem for p in images}
        unannotated = [p.name for p in images if p.stem not in annotations]
        unlisted = sorted(set(annotations) - stems)
        if unannotated or unlisted:
            origin = csv if csv.is_file() else f"{val_dir}/*.xml"
            raise MetadataError(
                f"{origin}: annotations and val images disagree: {len(unannotated)} image(s) without boxes "
                f"(first {unannotated[:3]}), {len(unlisted)} annotation(s) without an image "
                f"(first {unlisted[:3]})"
            )
        test = Metadata([], {})
        sizes = image_sizes(val_dir, [p.name for p in images])
        for path in images:
            where, _, objects = annotations[path.stem]
            classes = {wnid for wnid, _ in objects}
            if len(classes) != 1 or not classes <= index.keys():
                raise MetadataError(
                    f"{where}: expected boxes of one train/ class, got wnids {sorted(classes)}"
                )
            size = sizes[path.name]
            image_id = f"val/{path.name}"
            test.image_ids.append(image_id)
            test.labels[image_id] = index[classes.pop()]
            test.sizes[image_id] = size
            test.boxes[image_id] = [_clip(where, box, size) for _, box in objects]

        splits = {"train": train, "test": test}
        if (source / "val2").is_dir():
            if len(wnids) != 1000:
                raise MetadataError(
                    f"{train_dir}: ImageNetV2 (val2/) labels index the 1000 ILSVRC classes, but train/ has "
                    f"{len(wnids)} class folders"
                )
            val = read_metadata(self.val_metadata, 1000)
            require_all(source, val.image_ids, "ImageNetV2 val images", HINT)
            splits["val"] = val
        else:
            warnings.warn(
                f"{source}: no val2/ (ImageNetV2 threshold0.7), so the val (train-fullsup) split is skipped",
                stacklevel=2,
            )
        return publish(dest, name=self.name, num_classes=len(wnids), splits=splits, image_root=source)


register_dataset("ilsvrc")(ILSVRCAdapter())
