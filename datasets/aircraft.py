"""`aircraft` and `cars`: FGVC-Aircraft 2013b and Stanford Cars in the SAT repo's layout (docs/datasets.md).

Both use `classes.txt` (label = line index) and `images_box.txt`; split codes 0 and 2 → train and
1 → test for Aircraft, 0 → train and 1 → test for Cars. Boxes are converted as `_sat_lists` says.
There is no val (train-fullsup) split.
"""

from __future__ import annotations

from pathlib import Path

from wsolbench.annotations import MetadataError
from wsolbench.contracts.dataset import DatasetAdapter
from wsolbench.prepared_dataset import PreparedDataset
from wsolbench.registry import register_dataset

from ._build import publish, require
from ._sat_lists import images_box


class ImagesBoxAdapter(DatasetAdapter):
    """A dataset described by `classes.txt` + `images_box.txt` with images at `images/<id>.jpg`."""

    needs_source = True

    def __init__(
        self, name: str, folder: str, num_classes: int, description: str, split_of: dict[str, str]
    ) -> None:
        self.name = name
        self.num_classes = num_classes
        self.description = description
        self.split_of = split_of
        codes = ", ".join(f"{code} → {split}" for code, split in split_of.items())
        self.source_hint = (
            f"{folder}/ holding images/<id>.jpg, classes.txt (one class name per line) and images_box.txt "
            f"('<id>;<class name>;<split code>;x1 y1 x2 y2 H W', codes {codes}), as in SAT's Data/"
        )

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:
        source = Path(source).resolve()
        for name in ("images", "classes.txt", "images_box.txt"):
            require(source / name, self.source_hint)
        classes, splits = images_box(source, self.split_of)
        if len(classes) != self.num_classes:
            raise MetadataError(f"{source / 'classes.txt'}: {len(classes)} classes, expected {self.num_classes}")
        return publish(dest, name=self.name, num_classes=self.num_classes, splits=splits,
                       image_root=source, extra={"classes": classes})


register_dataset("aircraft")(
    ImagesBoxAdapter(
        "aircraft",
        "Fgvc_aircraft_2013b",
        100,
        "FGVC-Aircraft 2013b, 100 variants (train / test, boxes; SAT lists)",
        {"0": "train", "2": "train", "1": "test"},
    )
)
register_dataset("cars")(
    ImagesBoxAdapter(
        "cars",
        "Standford_Car",
        196,
        "Stanford Cars, 196 models (train / test, boxes; SAT lists)",
        {"0": "train", "1": "test"},
    )
)
