"""Training regimes: which parameters train (`full`, `parameter_efficient`) and on which images
(`few_shot`: k per class).

`few_shot` trains the full model on `config.regime.shots` images per class drawn by
`per_class_subset` with seed `config.seed` (an assumption: neither the SAT paper nor
its code says how the published few-shot images were drawn).
"""

from __future__ import annotations

import numpy as np

from wsolbench.annotations import Metadata
from wsolbench.config import ConfigError, ExperimentConfig
from wsolbench.contracts.method import ParamGroup, WSOLMethod


def trainable_groups(model: WSOLMethod, config: ExperimentConfig) -> list[ParamGroup]:
    """The method's ParamGroups for the training regime; every parameter outside them is frozen.

    Guarantees: afterwards `requires_grad` is True exactly for the parameters in the returned
    groups, and no parameter appears in two groups (ValueError naming it otherwise).
    """
    if config.regime.name == "parameter_efficient":
        groups = model.param_groups("parameter_efficient", trainable_blocks=config.regime.trainable_blocks)
    else:
        groups = model.param_groups("full")
    owner: dict[int, str] = {}
    for group in groups:
        for name, param in group.params:
            if id(param) in owner:
                raise ValueError(
                    f"{type(model).__name__}.param_groups: parameter {name!r} is in groups "
                    f"{owner[id(param)]!r} and {group.name!r}"
                )
            owner[id(param)] = group.name
    for param in model.parameters():
        param.requires_grad_(id(param) in owner)
    return groups


def count_trainable(groups: list[ParamGroup]) -> int:
    return sum(group.numel for group in groups)


def training_images(train: Metadata, config: ExperimentConfig) -> Metadata:
    """All train images, or `shots` per class under few_shot (depends only on metadata, shots, seed)."""
    if config.regime.name != "few_shot":
        return train
    return per_class_subset(train, config.regime.shots, config.seed)


def per_class_subset(metadata: Metadata, k: int, seed: int) -> Metadata:
    """k images of every class, drawn without replacement with numpy's Generator(seed).

    Classes are visited in ascending order and each class's candidates in metadata order, so the
    subset depends only on (metadata, k, seed). The result keeps metadata order. A class with fewer
    than k images raises ConfigError naming it.
    """
    if k <= 0:
        raise ConfigError(f"images per class must be positive, got {k}")
    by_class: dict[int, list[str]] = {}
    for image_id in metadata.image_ids:
        by_class.setdefault(metadata.labels[image_id], []).append(image_id)
    rng = np.random.default_rng(seed)
    chosen: set[str] = set()
    for label in sorted(by_class):
        candidates = by_class[label]
        if len(candidates) < k:
            raise ConfigError(f"class {label} has {len(candidates)} image(s), fewer than the {k} asked for")
        picks = rng.choice(len(candidates), size=k, replace=False)
        chosen.update(candidates[int(p)] for p in picks)
    return metadata.subset([i for i in metadata.image_ids if i in chosen])
