"""Evaluation protocols as data: every convention that changes a number (metrics.md §12).

A protocol fixes the evaluation frame, how raw maps become [0, 1] maps in that frame (maps.py),
how a map and a threshold become boxes (boxes.py), the Top-k Loc IoU comparison and how the
threshold is chosen from a sweep (accumulators.py). Any method can be evaluated under any protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsolbench.annotations import EvalFrame

THRESHOLD_POLICIES = ("oracle-test", "fixed", "val")


@dataclass(frozen=True)
class EvalProtocol:
    """One repository's evaluation conventions.

    upsample: 'bicubic' or 'bilinear' (OpenCV) from the feature grid to the crop size.
    normalize: 'after' = upsample, then min-max; 'before_eps' = min-max with +1e-5 in the
      denominator on the raw map, then upsample (SAT).
    invalid_map: what a map with NaN (or, for plain min-max, a constant map) becomes: 'zeros'
      (every threshold then gives the protocol's empty box) or 'raise' (ValueError, SCM).
    binarize: 'uint8' = q = floor(255 s), foreground q > int(τ max q); 'float' = s > τ.
    components: 'contours' = OpenCV RETR_TREE contours, V1 keeps the largest contourArea and V2
      keeps all; 'pixels' = the largest 8-connected component by pixel count (V2 = V1).
    clip: clip x1, y1 to W − 1, H − 1. empty_box: the box when nothing passes the threshold: 'zero'
      (0, 0, 0, 0), 'unit' (0, 0, 1, 1) or 'whole' (0, 0, W, H), the whole crop.
    strict_topk: Top-1/Top-5 Loc need IoU > 0.5 rather than ≥ 0.5 (TS-CAM).
    selection: 'per_metric' = each metric (and each δ) takes its own best τ; 'sat' = one τ maximizing
      GT-known + Top-1 Loc (ties → first), every metric read at it ("code-MaxBoxAccV2").
    """

    name: str
    frame: EvalFrame
    upsample: str
    normalize: str
    invalid_map: str
    binarize: str
    components: str
    clip: bool
    empty_box: str
    strict_topk: bool
    selection: str

    @property
    def size(self) -> int:
        """Side of the square evaluation frame (the crop)."""
        return self.frame.crop


# Each protocol's conventions, with the frame filled in by `get_protocol`. Only "sat" evaluates in
# a centre crop of the resized image; the others resize straight to the crop size.
_CONVENTIONS: dict[str, dict] = {
    "wsolevaluation": dict(
        upsample="bicubic", normalize="after", invalid_map="zeros", binarize="uint8", components="contours",
        clip=True, empty_box="zero", strict_topk=False, selection="per_metric",
    ),
    "sat": dict(
        upsample="bilinear", normalize="before_eps", invalid_map="zeros", binarize="float", components="pixels",
        clip=False, empty_box="whole", strict_topk=False, selection="sat",
    ),
    "ts_cam": dict(
        upsample="bilinear", normalize="after", invalid_map="zeros", binarize="uint8", components="contours",
        clip=False, empty_box="unit", strict_topk=True, selection="per_metric",
    ),
    # scm.md §4.2: boxes clipped to 223 and (0,0,0,0) when empty, like wsolevaluation; NaN raises.
    "scm": dict(
        upsample="bilinear", normalize="after", invalid_map="raise", binarize="uint8", components="contours",
        clip=True, empty_box="zero", strict_topk=False, selection="per_metric",
    ),
}
EVAL_PROTOCOLS = tuple(_CONVENTIONS)


def get_protocol(name: str, crop_size: int = 224, resize_size: int = 256) -> EvalProtocol:
    """The named protocol at the given frame size (resize_size matters only for 'sat')."""
    if name not in EVAL_PROTOCOLS:
        raise ValueError(f"unknown evaluation protocol {name!r}; valid: {', '.join(EVAL_PROTOCOLS)}")
    if crop_size <= 0 or resize_size < crop_size:
        raise ValueError(f"need 0 < crop_size <= resize_size, got crop {crop_size}, resize {resize_size}")
    frame = EvalFrame(resize_size, crop_size) if name == "sat" else EvalFrame(crop_size, crop_size)
    return EvalProtocol(name=name, frame=frame, **_CONVENTIONS[name])


def threshold_list(interval: float) -> np.ndarray:
    """τ_k = k·Δ for k = 0 … 1/Δ − 1, exactly numpy arange(0, 1, Δ) as the reference (metrics.md §3)."""
    if not 0 < interval < 1:
        raise ValueError(f"cam_curve_interval must lie in (0, 1), got {interval}")
    return np.arange(0, 1, interval)
