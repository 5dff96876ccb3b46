"""Evaluation protocols as data: every convention that changes a number (docs/protocols.md).

A protocol fixes the evaluation frame, how raw maps become [0, 1] maps in that frame (maps.py),
how a map and a threshold become boxes (boxes.py), the Top-k Loc IoU comparison and how the
threshold is chosen from a sweep (accumulators.py). Any method can be evaluated under any protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from wsolbench.annotations import EvalFrame
from wsolbench.errors import BadValueError
from wsolbench.registry import unknown_name

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
    box_map: the class whose map the box metrics (MaxBoxAcc, MaxBoxAccV2, GT-known Loc) are read from:
      'gt_class', or 'top1_class', the top-1 predicted class (SCM). Top-1 / Top-5 Loc always read the
      GT-class map (the predicted one whenever the prediction is right).
    multi_contour: the IoU30/50/70 accuracies ("maxboxaccv2_iou*") score every contour's box
      (wsolevaluation's MaxBoxAccV2) or, False, only the single box the repository keeps (SAT's
      component, TS-CAM's and SCM's largest contour: SCM's maxbox_acc_thr_*).
    map_dtype: the float type maps are upsampled, normalized, quantized and compared with τ in:
      'float32' where the repository keeps the network's float32 maps (SAT, TS-CAM), 'float64' where
      it converts them first (wsolevaluation, SCM). It moves a pixel across a uint8 level now and then.
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
    box_map: str
    multi_contour: bool
    map_dtype: str

    @property
    def size(self) -> int:
        """Side of the square evaluation frame (the crop)."""
        return self.frame.crop


# Each protocol's conventions, with the frame filled in by `get_protocol`. Only "sat" evaluates in
# a centre crop of the resized image; the others resize straight to the crop size.
_CONVENTIONS: dict[str, dict] = {
    "wsolevaluation": dict(
        upsample="bicubic", normalize="after", invalid_map="zeros", binarize="uint8", components="contours",
        clip=True, empty_box="zero", strict_topk=False, selection="per_metric", box_map="gt_class",
        multi_contour=True, map_dtype="float64",
    ),
    "sat": dict(
        upsample="bilinear", normalize="before_eps", invalid_map="zeros", binarize="float", components="pixels",
        clip=False, empty_box="whole", strict_topk=False, selection="sat", box_map="gt_class",
        multi_contour=False, map_dtype="float32",
    ),
    "ts_cam": dict(
        upsample="bilinear", normalize="after", invalid_map="zeros", binarize="uint8", components="contours",
        clip=False, empty_box="unit", strict_topk=True, selection="per_metric", box_map="gt_class",
        multi_contour=False, map_dtype="float32",
    ),
    # SCM: boxes clipped to 223 and (0,0,0,0) when empty, like wsolevaluation; NaN raises; box metrics
    # on the top-1 predicted class's map.
    "scm": dict(
        upsample="bilinear", normalize="after", invalid_map="raise", binarize="uint8", components="contours",
        clip=True, empty_box="zero", strict_topk=False, selection="per_metric", box_map="top1_class",
        multi_contour=False, map_dtype="float64",
    ),
}
EVAL_PROTOCOLS = tuple(_CONVENTIONS)


@dataclass(frozen=True)
class OfficialEvaluator:
    """What a repository's own test script does by default on one dataset, beyond the box conventions.

    thresholds: the fixed τ list it scores (the protocol's selection rule picks among them); empty
      when it sweeps arange(0, 1, cam_curve_interval) and takes the best τ on the evaluated split.
    cam_curve_interval: the sweep step (for fixed lists: the step of our extra oracle-test entry).
    ten_crop: classification from the softmax averaged over ten crops (else the evaluation view).
    """

    thresholds: tuple[float, ...]
    cam_curve_interval: float
    ten_crop: bool

    def eval_layer(self, protocol: str) -> dict:
        """These settings as an `eval` config mapping for `protocol`."""
        return {
            "protocol": protocol,
            "threshold_policy": "fixed" if self.thresholds else "oracle-test",
            "thresholds": list(self.thresholds),
            "cam_curve_interval": self.cam_curve_interval,
            "ten_crop": self.ten_crop,
        }


# Per protocol: dataset → evaluator defaults, "*" for any other dataset (the repository's generic
# script). SAT: evaluator.py (τ 0.4, ten-crop) and evaluator_ImageNet.py (τ 0.3, single crop);
# TS-CAM: the fixed θ of its CUB / ILSVRC configs, 0.2 otherwise; SCM: a Δ = 0.01 sweep;
# wsolevaluation: the Δ = 0.001 sweep of its training pipeline.
_OFFICIAL: dict[str, dict[str, OfficialEvaluator]] = {
    "wsolevaluation": {"*": OfficialEvaluator((), 0.001, False)},
    "sat": {"ilsvrc": OfficialEvaluator((0.3,), 0.01, False), "*": OfficialEvaluator((0.4,), 0.01, True)},
    "ts_cam": {
        "cub": OfficialEvaluator((0.1,), 0.01, False),
        "ilsvrc": OfficialEvaluator((0.12,), 0.01, False),
        "*": OfficialEvaluator((0.2,), 0.01, False),
    },
    "scm": {"*": OfficialEvaluator((), 0.01, False)},
}


def _check_name(name: str) -> None:
    """BadValueError for a name that is not an evaluation protocol, with the closest valid one."""
    if name not in EVAL_PROTOCOLS:
        raise BadValueError(unknown_name("evaluation protocol", name, EVAL_PROTOCOLS))


def official_evaluator(name: str, dataset: str) -> OfficialEvaluator:
    """The defaults of protocol `name`'s official test script on `dataset`."""
    _check_name(name)
    table = _OFFICIAL[name]
    return table.get(dataset, table["*"])


def get_protocol(name: str, crop_size: int = 224, resize_size: int = 256) -> EvalProtocol:
    """The named protocol at the given frame size (resize_size matters only for 'sat')."""
    _check_name(name)
    if crop_size <= 0 or resize_size < crop_size:
        raise BadValueError(f"need 0 < crop_size <= resize_size, got crop {crop_size}, resize {resize_size}")
    # SAT, TS-CAM and SCM scale GT boxes as x / W · R, wsolevaluation as x · R / W
    divide_first = name != "wsolevaluation"
    frame = EvalFrame(resize_size if name == "sat" else crop_size, crop_size, divide_first)
    return EvalProtocol(name=name, frame=frame, **_CONVENTIONS[name])


def threshold_list(interval: float) -> np.ndarray:
    """τ_k = k·Δ for k = 0 … 1/Δ − 1, exactly numpy arange(0, 1, Δ) as wsolevaluation does (docs/metrics.md)."""
    if not 0 < interval < 1:
        raise BadValueError(f"cam_curve_interval must lie in (0, 1), got {interval}")
    return np.arange(0, 1, interval)
