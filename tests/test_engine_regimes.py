"""Training regimes: which parameters train and on which images."""

from __future__ import annotations

import pytest
from engine_toy import TOY, ToyCAM, make_dataset

from wsolbench.config import resolve
from wsolbench.engine.regimes import count_trainable, trainable_groups, training_images


def toy() -> ToyCAM:
    return ToyCAM(num_classes=2, backbone="toy", pretrained=False, img_size=None, drop_path_rate=None,
                  backbone_kwargs={}, width=4)


def test_full_and_parameter_efficient_freeze_the_rest() -> None:
    model = toy()
    total = sum(p.numel() for p in model.parameters())
    full = trainable_groups(model, resolve(method=TOY, overrides=["regime.name=full"]))
    assert count_trainable(full) == total == sum(p.numel() for p in model.parameters() if p.requires_grad)
    efficient = trainable_groups(model, resolve(method=TOY, overrides=["regime.name=parameter_efficient"]))
    head = 8 * 2 + 2  # 1x1 conv 8 → 2 classes, plus bias
    assert count_trainable(efficient) == head
    assert sum(p.numel() for p in model.parameters() if p.requires_grad) == head
    assert not any(p.requires_grad for p in model.features.parameters())


def test_few_shot_subset_counts_and_seed(tmp_path) -> None:
    prepared = make_dataset(tmp_path / "synthetic")
    train = prepared.split("train")
    config = resolve(method=TOY, overrides=["regime.name=few_shot", "regime.shots=3", "seed=5"])
    chosen = training_images(train, config)
    assert len(chosen) == 6
    assert sorted(chosen.labels[i] for i in chosen.image_ids) == [0, 0, 0, 1, 1, 1]
    assert training_images(train, config).image_ids == chosen.image_ids
    reseeded = resolve(method=TOY, overrides=["regime.name=few_shot", "regime.shots=3", "seed=6"])
    other = training_images(train, reseeded)
    assert other.image_ids != chosen.image_ids
    assert len(training_images(train, resolve(method=TOY))) == 16


def test_few_shot_needs_shots() -> None:
    from wsolbench.config import ConfigError

    with pytest.raises(ConfigError, match="regime.shots"):
        resolve(method=TOY, overrides=["regime.name=few_shot"])
