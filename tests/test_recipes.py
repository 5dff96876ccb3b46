"""Each method × dataset recipe resolves to what the official recipe gives, field by field.

The expected values are written out here from the official training scripts and configs (SAT:
train.py / train_ImageNet.py; TS-CAM and SCM: their configs and launch scripts; CAM: wsolevaluation's
per-backbone table), not read back from the YAML files under test.
"""

from __future__ import annotations

import pytest

from wsolbench.config import ExperimentConfig, resolve
from wsolbench.engine.optim import LRSchedule

SAT_HPARAMS = {"use_area_loss": True, "use_norm_loss": True, "spatial_blocks": 3}
DEIT_S = "deit_small_patch16_224"

# pretrained, backbone, optimizer, lr, weight decay, epochs, effective batch, schedule, decay epochs,
# drop path, method hyperparameters; every recipe trains on 224 crops of 256 x 256 resized images.
EXPECTED = {
    ("sat", "cub"): dict(pretrained=True, backbone=DEIT_S, optimizer="adamw", lr=1e-4, weight_decay=0.05,
                         epochs=30, batch=256, schedule="constant", drop_path=0.1,
                         hparams={**SAT_HPARAMS, "area_threshold": 0.25}),
    ("sat", "ilsvrc"): dict(pretrained=True, backbone=DEIT_S, optimizer="adamw", lr=1.5e-5, weight_decay=0.05,
                            epochs=1, batch=512, schedule="constant", drop_path=0.1,
                            hparams={**SAT_HPARAMS, "area_threshold": 0.35}),
    ("ts_cam", "cub"): dict(pretrained=True, backbone=DEIT_S, optimizer="adamw", lr=5e-5, weight_decay=0.05,
                            epochs=60, batch=128, schedule="step", decay_epochs=[30, 60], drop_path=0.1,
                            hparams={}),
    ("ts_cam", "ilsvrc"): dict(pretrained=True, backbone=DEIT_S, optimizer="adamw", lr=5e-4, weight_decay=0.05,
                               epochs=20, batch=256, schedule="step", decay_epochs=[10, 12, 20], drop_path=0.1,
                               hparams={}),
    ("scm", "cub"): dict(pretrained=True, backbone=DEIT_S, optimizer="adamw", lr=5e-5, weight_decay=0.05,
                         epochs=30, batch=256, schedule="step", decay_epochs=[30], drop_path=0.1, hparams={}),
    ("scm", "ilsvrc"): dict(pretrained=True, backbone=DEIT_S, optimizer="adamw", lr=1e-6, weight_decay=0.05,
                            epochs=20, batch=512, schedule="step", decay_epochs=[10, 12, 20], drop_path=0.1,
                            hparams={}),
    ("cam", "cub"): dict(pretrained=True, backbone="resnet50", optimizer="sgd", lr=2.3222617e-4,
                         weight_decay=1e-4, epochs=50, batch=32, schedule="step", decay_epochs=[15, 30, 45],
                         drop_path=None, hparams={"large_feature_map": True, "lr_classifier_ratio": 10.0}),
    ("cam", "ilsvrc"): dict(pretrained=True, backbone="resnet50", optimizer="sgd", lr=3.108411e-5,
                            weight_decay=1e-4, epochs=10, batch=32, schedule="step", decay_epochs=[3, 6, 9],
                            drop_path=None, hparams={"large_feature_map": True, "lr_classifier_ratio": 10.0}),
}


def decay_epochs(config: ExperimentConfig) -> list[int]:
    """1-based epochs at whose start the lr drops, read off the schedule actually used."""
    schedule = LRSchedule(config.train, steps_per_epoch=1)
    lrs = [config.train.lr] + [schedule.lr_at(epoch - 1) for epoch in range(1, config.train.epochs + 1)]
    return [epoch for epoch in range(1, config.train.epochs + 1) if lrs[epoch] < lrs[epoch - 1]]


def assert_recipe(config: ExperimentConfig, want: dict) -> None:
    """Every recipe field of `config` equals the expected official value."""
    m, t, d = config.method, config.train, config.dataset
    assert m.pretrained is want["pretrained"]
    assert m.backbone == want["backbone"]
    assert m.backbone_kwargs == {}
    assert m.drop_path_rate == want["drop_path"]
    assert m.hparams == want["hparams"]
    assert t.optimizer == want["optimizer"]
    if t.optimizer == "sgd":
        assert t.momentum == 0.9
    assert t.lr == pytest.approx(want["lr"], rel=1e-12)
    assert t.weight_decay == want["weight_decay"]
    assert t.epochs == want["epochs"]
    assert t.batch_size == want["batch"]  # images per optimizer step, whatever grad_accum and processes
    assert t.warmup_epochs == 0.0
    assert t.amp == "off"  # every official script trains in fp32
    assert t.schedule == want["schedule"]
    if t.schedule == "step":
        assert t.lr_decay_factor == 0.1
        assert decay_epochs(config) == want["decay_epochs"]
    assert (d.resize_size, d.crop_size) == (256, 224)


@pytest.mark.parametrize(("method", "dataset"), sorted(EXPECTED))
def test_recipe_matches_the_official_one(method, dataset):
    assert_recipe(resolve(method=method, dataset=dataset), EXPECTED[(method, dataset)])


def test_decay_epochs_reads_lr_per_epoch():
    config = resolve(method="ts_cam", dataset="ilsvrc")
    lr = [LRSchedule(config.train, 1).lr_at(e - 1) for e in (1, 9, 10, 11, 12, 19, 20)]
    assert lr == pytest.approx([5e-4, 5e-4, 5e-5, 5e-5, 5e-6, 5e-6, 5e-7])


@pytest.mark.parametrize("method", ["sat", "ts_cam", "scm", "cam"])
def test_synthetic_default_stays_tiny_and_from_scratch(method):
    config = resolve(method=method, dataset="synthetic")
    assert config.method.pretrained is False
    assert config.method.backbone in ("deit_tiny_patch16_224", "resnet18")


def test_ts_cam_deit_tiny_on_ilsvrc_uses_its_own_batch():
    config = resolve(method="ts_cam", dataset="ilsvrc", overrides=["method.backbone=deit_tiny_patch16_224"])
    assert config.train.batch_size == 128
