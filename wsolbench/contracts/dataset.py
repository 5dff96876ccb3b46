"""The dataset contract: the base class of the dataset plugins in `datasets/`."""

from __future__ import annotations

from pathlib import Path

from wsolbench.prepared_dataset import PreparedDataset


class DatasetAdapter:
    """Base class of the dataset plugins in `datasets/`: turns an official layout into metadata.

    Subclasses set `name`, `num_classes`, `description`, `source_hint` (what `prepare` expects) and
    implement `prepare(source, dest)`, which writes `dest/metadata/<split>/` and `dest/dataset.yaml`
    and returns the PreparedDataset. Optionally `missing_val_reason`, why a prepared copy may lack a val
    split with GT (shown in the notes and errors of runs that need one), and `official_train_images`,
    the train-set size known before `prepare` (for `--dry-run`).
    """

    name: str = ""
    num_classes: int = 0
    description: str = ""
    source_hint: str = ""
    needs_source: bool = True
    missing_val_reason: str = ""

    def prepare(self, source: Path | None, dest: Path) -> PreparedDataset:  # pragma: no cover - contract
        raise NotImplementedError

    def official_train_images(self) -> tuple[int, str] | None:
        """(train images, where the count comes from) before the dataset is prepared; None when unknown."""
        return None
