"""Training protocols: which parameters train (`full`, `parameter_efficient`) and on which images
(`few_shot`: k per class).

`few_shot` trains the full model on `config.protocol.shots` images per class drawn by
`wsolbench.data.per_class_subset` with seed `config.seed` (an assumption: neither the SAT paper nor
its code says how the published few-shot images were drawn).
"""

from __future__ import annotations

from wsolbench.config import ExperimentConfig
from wsolbench.data import Metadata, per_class_subset
from wsolbench.method import ParamGroup, WSOLMethod


def trainable_groups(model: WSOLMethod, config: ExperimentConfig) -> list[ParamGroup]:
    """The method's ParamGroups for the protocol; every parameter outside them is frozen.

    Guarantees: afterwards `requires_grad` is True exactly for the parameters in the returned
    groups, and no parameter appears in two groups (ValueError naming it otherwise).
    """
    if config.protocol.name == "parameter_efficient":
        groups = model.param_groups("parameter_efficient", trainable_blocks=config.protocol.trainable_blocks)
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
    if config.protocol.name != "few_shot":
        return train
    return per_class_subset(train, config.protocol.shots, config.seed)
