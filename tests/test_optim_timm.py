"""Why the engine keeps its own lr schedule, and that the methods' weight-decay split is timm's rule.

timm's schedulers give other numbers than the training recipes need (checked here value by value), so
`LRSchedule` stays; the decay / no-decay split of the transformer methods is exactly
`timm.optim.param_groups_weight_decay` with the method's no-decay names.
"""

from __future__ import annotations

import pytest
import torch
from timm.optim import param_groups_weight_decay
from timm.scheduler import CosineLRScheduler, StepLRScheduler

import wsolbench
from wsolbench.config import TrainConfig
from wsolbench.engine.optim import LRSchedule

TINY = {"backbone": "deit_tiny_patch16_224", "img_size": 32,
        "backbone_kwargs": {"embed_dim": 32, "depth": 3, "num_heads": 2}}


def _optimizer(*scales: float, lr: float = 1.0) -> torch.optim.Optimizer:
    groups = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr * s, "lr_scale": s} for s in scales]
    return torch.optim.SGD(groups, lr=lr)


def test_timm_step_scheduler_decays_one_epoch_later_than_the_recipes() -> None:
    # Ours: decay at the start of every epoch whose 1-based number is a multiple of lr_decay_every.
    ours = LRSchedule(TrainConfig(lr=1.0, epochs=7, schedule="step", lr_decay_every=3), steps_per_epoch=1)
    optimizer = _optimizer(1.0)
    timm_step = StepLRScheduler(optimizer, decay_t=3, decay_rate=0.1)
    timm_lrs = []
    for epoch in range(7):
        timm_step.step(epoch)
        timm_lrs.append(optimizer.param_groups[0]["lr"])
    assert [ours.lr_at(e) for e in range(7)] == pytest.approx([1, 1, 0.1, 0.1, 0.1, 0.01, 0.01], rel=1e-12)
    assert timm_lrs == pytest.approx([1, 1, 1, 0.1, 0.1, 0.1, 0.01], rel=1e-12)


def test_timm_warmup_ramps_differently() -> None:
    # Ours: lr·(t+1)/W for t < W, reaching lr on the last warmup step; timm: init + t·(lr − init)/W.
    ours = LRSchedule(TrainConfig(lr=1.0, epochs=4, schedule="cosine", warmup_epochs=1), steps_per_epoch=5)
    optimizer = _optimizer(1.0)
    timm_cosine = CosineLRScheduler(optimizer, t_initial=15, warmup_t=5, warmup_lr_init=0.2, warmup_prefix=True,
                                    t_in_epochs=False)
    timm_lrs = []
    for step in range(5):
        timm_cosine.step_update(step)
        timm_lrs.append(optimizer.param_groups[0]["lr"])
    assert [ours.lr_at(s) for s in range(5)] == pytest.approx([0.2, 0.4, 0.6, 0.8, 1.0], rel=1e-12)
    assert timm_lrs == pytest.approx([0.2, 0.36, 0.52, 0.68, 0.84], rel=1e-12)


def test_timm_cosine_is_ours_up_to_rounding_but_not_bit_for_bit() -> None:
    # Same formula, lr_min + (lr − lr_min)·(1 + cos(π·t/T))/2, and the same lr_scale handling, but
    # timm computes π·t/T where ours computes π·(t/T): hundreds of steps differ in the last bit, which
    # would change training numbers.
    steps_per_epoch, epochs = 100, 30
    config = TrainConfig(lr=5e-5, min_lr=1e-6, epochs=epochs, schedule="cosine")
    ours = LRSchedule(config, steps_per_epoch)
    ours_optimizer, timm_optimizer = _optimizer(1.0, 10.0, lr=5e-5), _optimizer(1.0, 10.0, lr=5e-5)
    for group in timm_optimizer.param_groups:
        group["lr"] = 5e-5  # timm multiplies its value by each group's lr_scale, as ours does
    timm_cosine = CosineLRScheduler(timm_optimizer, t_initial=epochs * steps_per_epoch, lr_min=1e-6,
                                    t_in_epochs=False)
    ours_lrs, timm_lrs = [], []
    for step in range(epochs * steps_per_epoch):
        ours.apply(ours_optimizer, step)
        timm_cosine.step_update(step)
        ours_lrs.append([g["lr"] for g in ours_optimizer.param_groups])
        timm_lrs.append([g["lr"] for g in timm_optimizer.param_groups])
    assert torch.allclose(torch.tensor(ours_lrs, dtype=torch.float64), torch.tensor(timm_lrs, dtype=torch.float64),
                          rtol=1e-12, atol=0)
    assert sum(o != t for o, t in zip(ours_lrs, timm_lrs, strict=True)) > 100


def _split(groups: list[dict]) -> tuple[set[int], set[int]]:
    decay = {id(p) for g in groups if g["weight_decay"] > 0 for p in g["params"]}
    no_decay = {id(p) for g in groups if g["weight_decay"] == 0 for p in g["params"]}
    return decay, no_decay


@pytest.mark.parametrize(("method", "no_decay_names"), [
    ("sat", ()), ("ts_cam", ("backbone.pos_embed", "backbone.cls_token")),
    ("scm", ("backbone.pos_embed", "backbone.cls_token"))])
def test_decay_split_is_timms_rule_with_the_methods_no_decay_names(method, no_decay_names) -> None:
    # SAT decays pos_embed / cls_token / loc_token (the official SAT optimizer); TS-CAM and SCM do not.
    model = wsolbench.create_method(method, num_classes=3, **TINY)
    ours = {g.name: {id(p) for _, p in g.params} for g in model.param_groups("full")}
    timm_decay, timm_no_decay = _split(param_groups_weight_decay(model, 0.05, no_weight_decay_list=no_decay_names))
    assert (ours["decay"], ours.get("no_decay", set())) == (timm_decay, timm_no_decay)
    # timm's own no-decay names for a ViT (model.no_weight_decay()) would change SAT's numbers.
    if method == "sat":
        pos_embed = {id(model.backbone.pos_embed), id(model.backbone.cls_token)}
        assert pos_embed <= timm_decay
        assert pos_embed <= _split(param_groups_weight_decay(
            model, 0.05, no_weight_decay_list=("backbone.pos_embed", "backbone.cls_token")))[1]
