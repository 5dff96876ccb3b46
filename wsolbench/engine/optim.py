"""Optimizer and learning-rate schedule built from TrainConfig and the method's ParamGroups.

The schedule is a pure function of the optimizer step, so resuming only needs the step count.
"""

from __future__ import annotations

import math

import torch

from wsolbench.config import TrainConfig, decay_intervals
from wsolbench.contracts.method import ParamGroup


def build_optimizer(groups: list[ParamGroup], config: TrainConfig) -> torch.optim.Optimizer:
    """AdamW (eps 1e-8) or Nesterov SGD over `groups`.

    Each torch param group keeps its `lr_scale`; weight decay is `config.weight_decay` where
    `ParamGroup.weight_decay` is true and 0 elsewhere. Empty groups are skipped.
    """
    torch_groups = [
        {
            "params": [p for _, p in group.params],
            "name": group.name,
            "lr_scale": group.lr_scale,
            "lr": config.lr * group.lr_scale,
            "weight_decay": config.weight_decay if group.weight_decay else 0.0,
        }
        for group in groups
        if group.params
    ]
    if not torch_groups:
        raise ValueError("nothing to train: the method's param_groups are all empty")
    if config.optimizer == "adamw":
        return torch.optim.AdamW(torch_groups, lr=config.lr, betas=(0.9, 0.999), eps=1e-8)
    if config.optimizer == "sgd":
        return torch.optim.SGD(torch_groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    raise ValueError(f"train.optimizer: unknown optimizer {config.optimizer!r}")


class LRSchedule:
    """lr at optimizer step `step` (0-based), given the steps of one epoch.

    - warmup: linear from lr/W to lr over the first W = warmup_epochs·steps_per_epoch steps;
    - constant: lr;
    - cosine: from lr to min_lr over the steps after warmup;
    - step: lr · lr_decay_factor^k in 1-based epoch e, k = how many of the epochs 1..e are divisible
      by lr_decay_every (or by any of its values, when it is a list): the decay happens at the start of
      those epochs, at most once per epoch (e // lr_decay_every for one interval).

    timm's schedulers are not used: their step rule decays one epoch later, their warmup ramps from
    another start, and their cosine rounds differently in the last bit (tests/test_optim_timm.py).
    """

    def __init__(self, config: TrainConfig, steps_per_epoch: int) -> None:
        self.decay_every = decay_intervals(config)
        self.config = config
        self.steps_per_epoch = steps_per_epoch
        self.total = config.epochs * steps_per_epoch
        self.warmup = int(round(config.warmup_epochs * steps_per_epoch))

    def lr_at(self, step: int) -> float:
        c = self.config
        if step < self.warmup:
            return c.lr * (step + 1) / self.warmup
        if c.schedule == "constant":
            return c.lr
        if c.schedule == "cosine":
            span = max(self.total - self.warmup, 1)
            progress = min((step - self.warmup) / span, 1.0)
            return c.min_lr + (c.lr - c.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))
        epoch = step // self.steps_per_epoch + 1
        decays = sum(1 for e in range(1, epoch + 1) if any(e % n == 0 for n in self.decay_every))
        return c.lr * c.lr_decay_factor ** decays

    def apply(self, optimizer: torch.optim.Optimizer, step: int) -> float:
        """Set every group's lr to lr_at(step) · lr_scale; returns the base lr."""
        lr = self.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        return lr
