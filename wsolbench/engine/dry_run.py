"""`--dry-run`: validate planned runs and describe them as YAML, touching nothing.

`describe_plan(configs)` checks what `execute` would check before training (`runner.preflight`: a val
split where the threshold policy needs one, the batch split over grad_accum and processes, AMP on this
device; pretrained weights present or downloadable, without downloading), builds each model without its
weights (backbone and hyperparameters must fit; it counts the trainable parameters) and returns one YAML
document per run: a comment block (run folder, training images and where the count comes from, images ×
epochs, optimizer steps, weights, dataset state) followed by the resolved config exactly as the run would
save it in config.yaml. A last comment line sums the cost. No dataset is prepared, no folder is created and
nothing is downloaded.
"""

from __future__ import annotations

import math
from pathlib import Path

from wsolbench.config import ExperimentConfig, dump
from wsolbench.engine import distributed
from wsolbench.engine.regimes import count_trainable, trainable_groups, training_images
from wsolbench.engine.runner import build_model, check_dataset, preflight
from wsolbench.errors import MissingFileError
from wsolbench.prepared_dataset import open_dataset
from wsolbench.registry import DATASETS
from wsolbench.results import run_path
from wsolbench.weights import check_pretrained


def train_images(config: ExperimentConfig) -> tuple[int | None, str]:
    """How many images one epoch of this run trains on, and where the count comes from."""
    root = Path(config.dataset.data_root) / config.dataset.name
    if (root / "dataset.yaml").is_file():
        return len(training_images(open_dataset(root).split("train"), config)), f"prepared at {root}"
    known = DATASETS.get(config.dataset.name).official_train_images()
    if known is None:
        return None, f"not prepared at {root}; count unknown until `bench.py prepare {config.dataset.name}`"
    count, source = known
    if config.regime.name == "few_shot":
        num_classes = DATASETS.get(config.dataset.name).num_classes
        return min(count, config.regime.shots * num_classes), f"at most {config.regime.shots} per class"
    return count, source


def trainable_parameters(config: ExperimentConfig) -> int:
    """Parameters this run trains, from the model built without pretrained weights."""
    root = Path(config.dataset.data_root) / config.dataset.name
    prepared = (root / "dataset.yaml").is_file()
    num_classes = open_dataset(root).num_classes if prepared else DATASETS.get(config.dataset.name).num_classes
    model = build_model(config, num_classes, with_pretrained=False)
    return count_trainable(trainable_groups(model, config))


def describe_plan(configs: list[ExperimentConfig]) -> str:
    """Validated YAML documents (one per planned run) with their cost, and a total line; see module doc."""
    info = distributed.setup(configs[0].device)
    documents, total_images, total_steps, unknown = [], 0, 0, 0
    for config in configs:
        micro = preflight(config, info)
        weights = check_pretrained(config.method.name, config.method.backbone, config.method.pretrained)
        images, source = train_images(config)
        trainable = trainable_parameters(config)
        t = config.train
        folder = run_path(config.output_dir, config.experiment, config.dataset.name, config.method.name,
                          config.regime.name, config.seed)
        lines = [f"# run: {folder}"]
        if trainable == 0:
            lines.append("# cost: no training (0 trainable parameters); evaluation only")
        elif images is None:
            unknown += 1
            lines.append(f"# cost: {source}")
        else:
            steps = t.epochs * math.ceil(images / t.batch_size)
            total_images += images * t.epochs
            total_steps += steps
            lines.append(f"# cost: {images:,} train images ({source}) x {t.epochs} epochs = "
                         f"{images * t.epochs:,} images; {steps:,} optimizer steps of {t.batch_size} images "
                         f"({t.grad_accum} x {micro} per process x {info.world_size} processes), "
                         f"{trainable:,} trainable parameters")
        lines.append(f"# weights: {weights}")
        try:
            check_dataset(config)
        except MissingFileError as missing:
            lines.append(f"# dataset: {missing}")
        documents.append("---\n" + "\n".join(lines) + "\n" + dump(config))
    total = (f"# total: {len(configs)} run(s), {total_images:,} training images, {total_steps:,} optimizer steps"
             + (f" (+ {unknown} run(s) of unknown size)" if unknown else "") + "; dry run: nothing was written")
    return "".join(documents) + total + "\n"
