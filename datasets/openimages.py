"""`openimages`: OpenImages30k with the shipped wsolevaluation metadata (train / val / test, masks).

The metadata is wsolevaluation's, copied unchanged after checking that every listed image, instance
mask and ignore mask exists under the source root (the error names the count and the first missing
files). Image ids and mask paths resolve against the source root (image_root = mask_root).
"""

from __future__ import annotations

from pathlib import Path

from wsolbench.annotations import SPLITS, read_metadata
from wsolbench.contracts.dataset import DatasetAdapter
from wsolbench.prepared_dataset import PreparedDataset
from wsolbench.registry import register_dataset

from ._build import SHIPPED_METADATA, count_image_ids, publish, require, require_all

HINT = (
    "OpenImages/ holding {train,val,test}/<mid>/<imageid>.jpg (OpenImages_images.zip extracted) with the "
    "masks <imageid>_m<mid>_<hex>.png and <imageid>_ignore.png next to the val and test images "
    "(OpenImages_annotations.zip extracted into the same folders)"
)


class OpenImagesAdapter(DatasetAdapter):
    name = "openimages"
    num_classes = 100
    description = "OpenImages30k, 100 classes (train / val / test, instance masks for PxAP)"
    source_hint = HINT
    needs_source = True

    def __init__(self, metadata_dir: Path = SHIPPED_METADATA / "OpenImages") -> None:
        self.metadata_dir = Path(metadata_dir)

    def official_train_images(self) -> tuple[int, str]:
        return count_image_ids(self.metadata_dir / "train"), "shipped wsolevaluation OpenImages/train metadata"

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:
        source = Path(source).resolve()
        splits = {}
        for split in SPLITS:
            require(source / split, HINT)
            metadata = read_metadata(self.metadata_dir / split, self.num_classes)
            require_all(source, metadata.image_ids, f"OpenImages {split} images", HINT)
            masks = sorted({p for e in metadata.masks.values() for p in (*e.instances, e.ignore)})
            require_all(source, masks, f"OpenImages {split} masks", HINT)
            splits[split] = metadata
        return publish(dest, name=self.name, num_classes=self.num_classes, splits=splits,
                       image_root=source, mask_root=source)


register_dataset("openimages")(OpenImagesAdapter())
