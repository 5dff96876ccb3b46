"""Raw `localize` maps → predicted boxes under an evaluation protocol at one threshold (the public API).

The boxes are exactly the ones the metrics score: the same map normalization (maps.py) and box rules
(boxes.py), so `maps_to_boxes` at τ agrees with BoxAccumulator's counts at τ.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from wsolbench.errors import BadValueError
from wsolbench.metrics.boxes import sweep_boxes
from wsolbench.metrics.maps import normalize_maps
from wsolbench.metrics.protocols import EvalProtocol, get_protocol


def maps_to_boxes(
    maps: Any,
    threshold: float,
    protocol: str | EvalProtocol = "wsolevaluation",
    *,
    all_boxes: bool = False,
    crop_size: int = 224,
    resize_size: int = 256,
) -> list[np.ndarray]:
    """Predicted boxes of raw maps (B, h, w), as returned by `WSOLMethod.localize`, at threshold τ.

    Each map is upsampled to the evaluation frame and normalized to [0, 1] as `protocol` does, the
    foreground is the protocol's binarization at τ (τ in [0, 1)), and its components become boxes by
    the protocol's box rule (including its box when nothing passes τ). See docs/protocols.md.

    Returns one int64 array (K, 4) per map of inclusive pixel boxes (x0, y0, x1, y1) in the protocol's
    evaluation frame: the crop_size × crop_size input image (for 'sat': the image resized to
    resize_size, then centre-cropped to crop_size). K = 1, the box that MaxBoxAcc, GT-known and Top-k
    Loc score, unless `all_boxes`: then every contour's box, the candidates of wsolevaluation's
    MaxBoxAccV2 (a single box under 'sat', whose rule keeps one component). A protocol name takes
    crop_size / resize_size; an EvalProtocol object carries its own frame.
    """
    if isinstance(protocol, str):
        protocol = get_protocol(protocol, crop_size=crop_size, resize_size=resize_size)
    if not 0 <= threshold < 1:
        raise BadValueError(f"threshold must lie in [0, 1), got {threshold}")
    return normalized_maps_to_boxes(protocol, normalize_maps(protocol, maps), threshold, all_boxes=all_boxes)


def normalized_maps_to_boxes(
    protocol: EvalProtocol, normalized: np.ndarray, threshold: float, *, all_boxes: bool = False
) -> list[np.ndarray]:
    """`maps_to_boxes` of maps already normalized by `protocol` (B, S, S); τ in [0, 1) is not checked."""
    tau = np.array([float(threshold)])
    out = []
    for one in normalized:
        boxes, v1, inverse = sweep_boxes(protocol, one, tau)
        level = int(inverse[0])
        out.append(boxes[level].copy() if all_boxes else v1[level][None].copy())
    return out
