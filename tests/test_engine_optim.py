"""Optimizer groups and lr schedules (exact values from the official recipes, docs/methods.md)."""

from __future__ import annotations

import math

import pytest
import torch
from engine_toy import ToyCAM

from wsolbench.config import TrainConfig
from wsolbench.engine.optim import LRSchedule, build_optimizer


def toy() -> ToyCAM:
    return ToyCAM(num_classes=3, backbone="toy", pretrained=False, img_size=None, drop_path_rate=None,
                  backbone_kwargs={}, width=4)


def test_step_schedule_matches_cam_card() -> None:
    # wsolevaluation's step decay, every 3 epochs over 10 epochs → epochs 1–2 lr, 3–5 lr/10, 6–8 lr/100, 9–10 lr/1000.
    config = TrainConfig(lr=1.0, epochs=10, schedule="step", lr_decay_every=3)
    schedule = LRSchedule(config, steps_per_epoch=2)
    per_epoch = [schedule.lr_at(2 * e) for e in range(10)]
    expected = [1, 1, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001]
    assert per_epoch == pytest.approx(expected, rel=1e-12)
    assert schedule.lr_at(1) == 1.0 and schedule.lr_at(5) == pytest.approx(0.1)


def test_cosine_warmup_constant() -> None:
    cosine = LRSchedule(TrainConfig(lr=1.0, min_lr=0.1, epochs=4, schedule="cosine", warmup_epochs=1), 5)
    assert [cosine.lr_at(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0])
    assert cosine.lr_at(5) == pytest.approx(1.0)
    middle = 5 + 15 / 2
    assert cosine.lr_at(int(middle)) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 7 / 15)))
    assert cosine.lr_at(19) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * 14 / 15)))
    constant = LRSchedule(TrainConfig(lr=3e-4, epochs=2, schedule="constant"), 7)
    assert {constant.lr_at(s) for s in range(14)} == {3e-4}


def test_step_schedule_needs_interval() -> None:
    with pytest.raises(ValueError, match="lr_decay_every"):
        LRSchedule(TrainConfig(schedule="step", lr_decay_every=0), 3)


def test_optimizer_groups_decay_and_lr_scale() -> None:
    model = toy()
    groups = model.param_groups("full")
    optimizer = build_optimizer(groups, TrainConfig(optimizer="adamw", lr=0.5, weight_decay=0.05))
    assert isinstance(optimizer, torch.optim.AdamW)
    by_name = {g["name"]: g for g in optimizer.param_groups}
    assert by_name["decay"]["weight_decay"] == 0.05 and by_name["no_decay"]["weight_decay"] == 0.0
    assert sum(p.numel() for g in optimizer.param_groups for p in g["params"]) == sum(
        p.numel() for p in model.parameters())
    head = model.param_groups("parameter_efficient")
    sgd = build_optimizer(head, TrainConfig(optimizer="sgd", lr=0.5, momentum=0.9, weight_decay=1e-4))
    assert isinstance(sgd, torch.optim.SGD) and sgd.param_groups[0]["nesterov"]
    LRSchedule(TrainConfig(lr=0.5), 1).apply(sgd, 0)
    assert sgd.param_groups[0]["lr"] == pytest.approx(5.0)  # lr_scale 10
