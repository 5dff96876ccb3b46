"""The centre baseline: the fixed map against its formula, centred boxes under every protocol,
uniform logits, and nothing to train."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import wsolbench
from wsolbench.contracts.method import REGIMES
from wsolbench.metrics.maps import normalize_maps
from wsolbench.metrics.protocols import EVAL_PROTOCOLS, get_protocol
from wsolbench.registry import METHODS


def center(**hparams):
    return wsolbench.create_method("center", num_classes=10, **hparams)


def reference_map(n_y: int, n_x: int, sigma: float) -> np.ndarray:
    out = np.zeros((n_y, n_x))
    for y in range(n_y):
        for x in range(n_x):
            dy = (y - (n_y - 1) / 2) / (sigma * n_y)
            dx = (x - (n_x - 1) / 2) / (sigma * n_x)
            out[y, x] = math.exp(-(dy * dy + dx * dx) / 2)
    return out


def test_registered_without_backbone():
    cls = METHODS.get("center")
    assert cls.name == "center" and cls.default_backbone is None and cls.backbones == ()
    assert cls.default_hparams == {"grid_size": None, "sigma": 0.25}
    with pytest.raises(ValueError, match="no backbone"):
        wsolbench.create_method("center", num_classes=3, backbone="resnet50")
    with pytest.raises(ValueError, match="no backbone"):
        wsolbench.create_method("center", num_classes=3, pretrained=True)
    with pytest.raises(ValueError, match="grid_size must be an integer ≥ 3"):
        center(grid_size=2)
    with pytest.raises(ValueError, match="sigma must be a number > 0"):
        center(sigma=0.0)


@pytest.mark.parametrize(
    ("size", "hparams", "grid"),
    [((224, 224), {}, (14, 14)), ((64, 64), {}, (4, 4)), ((32, 32), {}, (3, 3)),
     ((64, 48), {"sigma": 0.4}, (4, 3)), ((224, 224), {"grid_size": 7}, (7, 7))],
)
def test_map_matches_formula(size, hparams, grid):
    model = center(**hparams)
    images = torch.randn(3, 3, *size)
    loc = model.localize(images, torch.tensor([1, 2, 3]))
    assert loc.maps.shape == (3, *grid) and loc.maps.dtype == torch.float32
    ref = reference_map(*grid, hparams.get("sigma", 0.25))
    for b in range(3):
        assert np.allclose(loc.maps[b].numpy(), ref, atol=1e-6)
    assert torch.equal(loc.logits, torch.zeros(3, 10))
    assert torch.equal(model.localize(images).maps, loc.maps)  # the class makes no difference


@pytest.mark.parametrize("protocol_name", sorted(EVAL_PROTOCOLS))
@pytest.mark.parametrize("crop", [224, 64])
def test_prepared_map_gives_centred_boxes(protocol_name, crop):
    protocol = get_protocol(protocol_name, crop_size=crop, resize_size=crop * 8 // 7)
    size = protocol.size
    raw = center().localize(torch.zeros(1, 3, size, size)).maps
    prepared = normalize_maps(protocol, raw)[0]
    assert prepared.shape == (size, size)
    widths = []
    for tau in (0.1, 0.3, 0.5, 0.7, 0.9):
        ys, xs = np.nonzero(prepared > tau)
        y0, y1, x0, x1 = ys.min(), ys.max(), xs.min(), xs.max()
        assert (y0 + y1, x0 + x1) == (size - 1, size - 1), tau  # centred
        assert y1 - y0 == x1 - x0  # square
        widths.append(x1 - x0)
    assert widths == sorted(widths, reverse=True) and widths[0] > widths[-1]


def test_forward_loss_and_nothing_to_train():
    model = center()
    images = torch.randn(4, 3, 64, 64)
    out = model(images)
    assert torch.equal(out.logits, torch.zeros(4, 10))
    terms = model.loss(out, torch.tensor([0, 1, 2, 9]))
    assert set(terms) == {"loss", "cls"} and math.isclose(terms["loss"].item(), math.log(10), rel_tol=1e-6)
    assert list(model.parameters()) == []
    assert all(model.param_groups(p) == [] for p in REGIMES)
    assert model.param_groups("parameter_efficient", trainable_blocks=2) == []
    with pytest.raises(ValueError, match="unknown training regime 'linear'"):
        model.param_groups("linear")
