"""Map preparation per protocol: upsampling, min-max rules, constant and NaN maps (docs/protocols.md)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from wsolbench.metrics.maps import normalize_maps
from wsolbench.metrics.protocols import get_protocol

RAW = np.array([[0.0, -1.0, 2.0], [3.0, 0.5, 1.0], [4.0, -2.0, 0.0]])


def test_wsolevaluation_bicubic_then_min_max():
    out = normalize_maps(get_protocol("wsolevaluation", crop_size=12), torch.from_numpy(RAW)[None].float())
    up = cv2.resize(RAW.astype(np.float32).astype(np.float64), (12, 12), interpolation=cv2.INTER_CUBIC)
    expected = (up - up.min()) / (up - up.min()).max()
    np.testing.assert_array_equal(out[0], expected)
    assert out.dtype == np.float64 and out.max() == 1.0 and out.min() == 0.0


def test_ts_cam_bilinear_then_min_max():
    out = normalize_maps(get_protocol("ts_cam", crop_size=12), RAW[None])
    up = cv2.resize(RAW.astype(np.float32), (12, 12), interpolation=cv2.INTER_LINEAR)  # float32 throughout
    np.testing.assert_array_equal(out[0], (up - up.min()) / (up.max() - up.min()))
    assert out.dtype == np.float32 and out.max() == 1.0


def test_sat_min_max_with_epsilon_then_bilinear():
    out = normalize_maps(get_protocol("sat", crop_size=6, resize_size=8), RAW[None])
    raw = RAW.astype(np.float32)  # float32 throughout
    normalized = (raw - raw.min()) / (raw.max() - raw.min() + np.float32(1e-5))
    np.testing.assert_array_equal(out[0], cv2.resize(normalized, (6, 6), interpolation=cv2.INTER_LINEAR))
    assert out.dtype == np.float32
    assert out.max() < 1.0  # the +1e-5 keeps the maximum below 1
    assert normalize_maps(get_protocol("sat", crop_size=6), np.full((1, 3, 3), 7.0)).max() == 0.0


@pytest.mark.parametrize("name", ["wsolevaluation", "ts_cam", "sat"])
def test_constant_and_nan_maps_become_zero(name):
    protocol = get_protocol(name, crop_size=8, resize_size=8)
    nan = RAW.copy()
    nan[1, 1] = np.nan
    out = normalize_maps(protocol, np.stack([np.full((3, 3), 2.5), nan]))
    assert out.shape == (2, 8, 8) and not out.any()


def test_scm_rejects_nan_and_constant_maps():
    protocol = get_protocol("scm", crop_size=8)
    with pytest.raises(ValueError, match="scm protocol"):
        normalize_maps(protocol, np.full((1, 3, 3), 2.5))
    with pytest.raises(ValueError, match="NaN"):
        normalize_maps(protocol, np.array([[[np.nan, 1.0], [0.0, 1.0]]]))


def test_shape_errors():
    with pytest.raises(ValueError, match=r"\(B, h, w\)"):
        normalize_maps(get_protocol("wsolevaluation"), np.zeros((3, 3)))
