"""Raw method maps → [0, 1] maps in the evaluation frame, as each protocol scores them (docs/protocols.md)."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from wsolbench.metrics.protocols import EvalProtocol

_INTERPOLATION = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR}


def as_numpy(array: Any) -> np.ndarray:
    """A torch tensor (any device) or array-like as a numpy array."""
    if hasattr(array, "detach"):
        array = array.detach().cpu().numpy()
    return np.asarray(array)


def _min_max(m: np.ndarray, protocol: EvalProtocol, eps: float) -> np.ndarray:
    """(m − min) / (max − min + eps), 'subtract min, then divide by the new max' as the references.

    A NaN map, or a constant map without eps, is invalid: all zeros, or ValueError under 'raise'.
    """
    if np.isnan(m).any() or (eps == 0 and m.min() == m.max()):
        if protocol.invalid_map == "raise":
            raise ValueError(
                f"{protocol.name} protocol: map is NaN or constant, min-max normalization undefined"
            )
        return np.zeros_like(m)
    m = m - m.min()
    return m / (m.max() + eps)


def normalize_map(protocol: EvalProtocol, raw: Any) -> np.ndarray:
    """One raw (h, w) map → (S, S) in [0, 1], of the protocol's map_dtype (see EvalProtocol.normalize)."""
    m = as_numpy(raw).astype(protocol.map_dtype)
    if m.ndim != 2:
        raise ValueError(f"expected a 2-D map, got shape {m.shape}")
    size, interpolation = protocol.size, _INTERPOLATION[protocol.upsample]
    if protocol.normalize == "before_eps":
        m = _min_max(m, protocol, 1e-5)
        return cv2.resize(m, (size, size), interpolation=interpolation)
    return _min_max(cv2.resize(m, (size, size), interpolation=interpolation), protocol, 0.0)


def normalize_maps(protocol: EvalProtocol, maps: Any) -> np.ndarray:
    """(B, h, w) raw maps → (B, S, S) in [0, 1] of the protocol's map_dtype, as `protocol` scores them."""
    maps = as_numpy(maps)
    if maps.ndim != 3:
        raise ValueError(f"expected maps of shape (B, h, w), got {maps.shape}")
    size = protocol.size
    out = np.empty((len(maps), size, size), dtype=protocol.map_dtype)
    for i, raw in enumerate(maps):
        out[i] = normalize_map(protocol, raw)
    return out
