"""`stanford_dogs`: Stanford Dogs in the SAT repo's layout (docs/datasets.md); train / test, boxes on test.

train = the `train/<class_dir>/` image folders (label = sorted folder index, no boxes); test = the
`test_list.txt` order with the boxes of `test_gt.txt` (several per image possible), converted as
`_sat_lists` documents. There is no val (train-fullsup) split.
"""

from __future__ import annotations

from pathlib import Path

from wsolbench.annotations import Metadata
from wsolbench.contracts.dataset import DatasetAdapter
from wsolbench.prepared_dataset import PreparedDataset
from wsolbench.registry import register_dataset

from ._build import image_folder, publish, require
from ._sat_lists import dogs_test

HINT = (
    "Stanford_Dogs/ holding train/<class_dir>/<file>.jpg, test/<class_dir>/<file>.jpg, "
    "test_list.txt ('<class_dir>/<file>.jpg;<label>') and test_gt.txt ('x1 y1 x2 y2 [...] H W'), "
    "as in SAT's Data/"
)


class StanfordDogsAdapter(DatasetAdapter):
    name = "stanford_dogs"
    num_classes = 120
    description = "Stanford Dogs, 120 breeds (train / test, boxes; SAT lists)"
    source_hint = HINT
    needs_source = True

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:
        source = Path(source).resolve()
        for name in ("test", "test_list.txt", "test_gt.txt"):
            require(source / name, HINT)
        classes, items = image_folder(source / "train", HINT)
        train = Metadata([i for i, _ in items], dict(items))
        splits = {"train": train, "test": dogs_test(source, classes)}
        return publish(dest, name=self.name, num_classes=len(classes), splits=splits,
                       image_root=source, extra={"classes": classes})


register_dataset("stanford_dogs")(StanfordDogsAdapter())
