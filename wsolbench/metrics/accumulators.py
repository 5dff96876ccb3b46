"""Streaming metric accumulators with integer counts, and threshold policies (docs/metrics.md).

An accumulator sees batches, keeps only integer hit counts per threshold (so DDP ranks reduce them
exactly with a sum: `acc.reduce(fn)`, or shards combine with `acc.merge(other)`), and `result()` turns
them into percentages under a threshold policy:
- 'oracle-test': the protocol's own rule on the evaluated split: per metric (and per δ) best τ, or
  for 'sat' one τ maximizing GT-known + Top-1 Loc (ties → first) at which everything is read;
- 'fixed': a τ, a list of τ (the protocol's rule restricted to it), or a dict metric → τ (for
  instance the `thresholds` of a result on another split; this is how the engine realises 'val').
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property, partial
from typing import TYPE_CHECKING, Any

import numpy as np

from wsolbench.errors import BadFileError, BadValueError
from wsolbench.metrics.boxes import check_boxes, sweep_ious_unchecked
from wsolbench.metrics.maps import as_numpy, normalize_maps
from wsolbench.metrics.per_image import NO_CLASS, TOPK, PerImage, concat, encode_iou, top5_classes
from wsolbench.metrics.protocols import EvalProtocol
from wsolbench.metrics.pxap import bin_edges, check_label_map, pixel_histograms, pxap_curve

if TYPE_CHECKING:
    import pandas as pd

CURVE_COLUMNS = ["curve", "iou_threshold", "threshold", "value", "precision", "recall"]


@dataclass
class MetricResult:
    """Metrics in percent, the τ chosen per metric, the curves as data, and how τ was chosen.

    `curves` (a DataFrame with CURVE_COLUMNS) is built on first use, so that scoring without it never
    loads pandas.
    """

    metrics: dict[str, float]
    thresholds: dict[str, float]
    policy: str
    protocol: str
    rule: str
    build_curves: Callable[[], pd.DataFrame] = field(repr=False, compare=False)

    @cached_property
    def curves(self) -> pd.DataFrame:
        return self.build_curves()


def _check_thresholds(thresholds: Any) -> np.ndarray:
    thresholds = np.asarray(thresholds, dtype=np.float64)
    if thresholds.ndim != 1 or len(thresholds) == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D list, got shape {thresholds.shape}")
    if ((thresholds < 0) | (thresholds >= 1)).any():
        raise ValueError(
            f"thresholds must lie in [0, 1), got {thresholds[(thresholds < 0) | (thresholds >= 1)][0]}"
        )
    return thresholds


def threshold_index(thresholds: np.ndarray, tau: float, among: str = "the accumulator's thresholds") -> int:
    """Index of the first of `thresholds` within 1e-9 (absolute) of a fixed τ; BadValueError
    "fixed threshold τ is not among <among>" if there is none. Shared by the accumulators and stats."""
    match = np.flatnonzero(np.isclose(thresholds, tau, rtol=0, atol=1e-9))
    if len(match) == 0:
        raise BadValueError(f"fixed threshold {tau} is not among {among}")
    return int(match[0])


def _frame(columns: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame(columns)[CURVE_COLUMNS]


class _Counts:
    """Integer count arrays shared by both accumulators: counts(), reduce(fn), merge(other)."""

    _counts: dict[str, np.ndarray]

    def _signature(self) -> tuple:
        raise NotImplementedError

    def counts(self) -> dict[str, np.ndarray]:
        """The int64 count arrays themselves (mutating them mutates the accumulator)."""
        return self._counts

    def reduce(self, fn: Callable[[np.ndarray], np.ndarray | None]) -> None:
        """Apply fn to every count array in place (e.g. an all_reduce sum); a returned array replaces it."""
        for array in self._counts.values():
            out = fn(array)
            if out is not None:
                array[...] = out

    def merge(self, other: Any) -> None:
        """Add another shard's counts (same class, protocol, thresholds and IoU levels)."""
        if type(other) is not type(self) or other._signature() != self._signature():
            raise ValueError("can only merge accumulators with the same protocol, thresholds and IoU levels")
        for key, array in self._counts.items():
            array += other._counts[key]

    def _select(self, policy: str, fixed: Any) -> np.ndarray | dict[str, int]:
        """Candidate τ indices (oracle-test, fixed τ or list) or a metric → index dict (fixed dict)."""
        if policy == "val":
            raise ValueError(
                "threshold policy 'val' is realised by the engine: oracle-test on split val, "
                "then 'fixed' on test with that result's thresholds"
            )
        if policy == "oracle-test":
            if fixed is not None:
                raise ValueError("fixed_thresholds only go with policy 'fixed'")
            return np.arange(len(self.thresholds))
        if policy != "fixed":
            raise BadValueError(f"unknown threshold policy {policy!r}; valid: oracle-test, fixed, val")
        if fixed is None:
            raise ValueError("policy 'fixed' needs fixed_thresholds (a τ, a list of τ, or metric → τ)")
        if isinstance(fixed, dict):
            return {key: threshold_index(self.thresholds, tau) for key, tau in fixed.items()}
        return np.asarray([threshold_index(self.thresholds, tau) for tau in np.atleast_1d(fixed)])


class BoxAccumulator(_Counts):
    """BoxAcc(τ, δ) for V1 and V2, GT-known / Top-1 / Top-5 Loc per τ, classification accuracy.

    Counts: images, classified (images that came with logits), top1_cls, top5_cls, v1 and v2 (D, T)
    images with IoU ≥ δ, gt_known (T,) with V1 IoU ≥ 0.5, top1_loc and top5_loc (T,) with the class
    right and V1 IoU ≥ 0.5 (> 0.5 under a strict_topk protocol).
    With `record_images`, it also keeps every image's label, top-5 classes and IoU codes
    (`per_image()`; counts are unchanged, and per-image records are not part of reduce / merge).
    """

    def __init__(
        self,
        protocol: EvalProtocol,
        thresholds: Sequence[float] | np.ndarray,
        iou_thresholds: Sequence[int] = (30, 50, 70),
        record_images: bool = False,
    ) -> None:
        self.protocol = protocol
        self.thresholds = _check_thresholds(thresholds)
        self.iou_thresholds = tuple(int(d) for d in iou_thresholds)
        if not self.iou_thresholds or any(not 0 < d <= 100 for d in self.iou_thresholds):
            raise BadValueError(f"IoU thresholds must be integers in (0, 100], got {list(iou_thresholds)}")
        self._deltas = np.asarray(self.iou_thresholds, dtype=np.float64)[:, None, None] / 100
        shape_dt, shape_t = (len(self.iou_thresholds), len(self.thresholds)), (len(self.thresholds),)
        self._counts = {
            "images": np.zeros((), np.int64),
            "classified": np.zeros((), np.int64),
            "top1_cls": np.zeros((), np.int64),
            "top5_cls": np.zeros((), np.int64),
            "v1": np.zeros(shape_dt, np.int64),
            "v2": np.zeros(shape_dt, np.int64),
            "gt_known": np.zeros(shape_t, np.int64),
            "top1_loc": np.zeros(shape_t, np.int64),
            "top5_loc": np.zeros(shape_t, np.int64),
        }
        self._records: list[PerImage] | None = [] if record_images else None

    def _signature(self) -> tuple:
        return (self.protocol, tuple(self.thresholds.tolist()), self.iou_thresholds)

    def per_image(self) -> PerImage:
        """The recorded images in update order; ValueError unless built with record_images=True."""
        if self._records is None:
            raise ValueError("this accumulator was built without record_images=True")
        if not self._records:
            raise ValueError("no images were accumulated")
        return concat(self._records)

    def _record(self, names: list[str], labels: np.ndarray, top5: np.ndarray | None,
                iou_v1: np.ndarray, iou_v2: np.ndarray) -> None:
        if top5 is None:
            top5 = np.full((len(labels), TOPK), NO_CLASS, np.int32)
        self._records.append(PerImage(
            np.asarray(names, dtype=str), labels.astype(np.int32), top5, self.thresholds, encode_iou(iou_v1),
            encode_iou(iou_v2), self.iou_thresholds, self.protocol.name, self.protocol.strict_topk,
            self.protocol.selection,
        ))

    def update(
        self,
        maps: Any,
        gt_boxes: Sequence[Any],
        labels: Any,
        logits: Any = None,
        names: Sequence[str] | None = None,
        top1_maps: Any = None,
    ) -> None:
        """Add a batch of RAW method maps (B, h, w); they are normalized as the protocol says (maps.py).

        `names` (the image ids) label errors. `top1_maps`: the raw maps of each image's top-1
        predicted class, needed (with logits) when the protocol reads its box metrics from them
        (box_map 'top1_class'); only images whose prediction is wrong use them, since elsewhere they
        equal `maps`.
        """
        top1 = None if top1_maps is None else normalize_maps(self.protocol, top1_maps)
        self.update_normalized(
            normalize_maps(self.protocol, maps), gt_boxes, labels, logits, names=names, top1_normalized=top1
        )

    def update_normalized(
        self,
        normalized: np.ndarray,
        gt_boxes: Sequence[Any],
        labels: Any,
        logits: Any = None,
        names: Sequence[str] | None = None,
        top1_normalized: np.ndarray | None = None,
    ) -> None:
        """Add a batch of maps already in the frame and in [0, 1] (B, S, S); `names` label errors.

        `top1_normalized`: the normalized maps of the top-1 predicted classes (see `update`).
        """
        labels = as_numpy(labels).astype(np.int64).reshape(-1)
        batch = len(normalized)
        names = list(names) if names is not None else [f"batch image {i}" for i in range(batch)]
        if not len(gt_boxes) == len(labels) == batch:
            raise ValueError(
                f"batch of {batch} maps has {len(gt_boxes)} GT box lists and {len(labels)} labels"
            )
        ranked = top1 = top5 = None
        if logits is not None:
            logits = as_numpy(logits).astype(np.float64)
            if logits.shape[0] != batch or logits.ndim != 2 or logits.shape[1] == 0:
                raise ValueError(f"logits must have shape ({batch}, num_classes > 0), got {logits.shape}")
            ranked = top5_classes(logits)  # ties → lower class index, as argmax; NO_CLASS pads < 5 classes
            hits = (ranked == labels[:, None]) & (ranked != NO_CLASS)
            top1, top5 = hits[:, 0], hits.any(1)
        by_prediction = self.protocol.box_map == "top1_class" and top1 is not None
        if by_prediction and (top1_normalized is None or len(top1_normalized) != batch):
            raise ValueError(
                f"the {self.protocol.name} protocol reads box metrics from the top-1 predicted class's map: "
                f"give top1 maps for all {batch} images along with the logits"
            )
        iou_v1 = np.empty((batch, len(self.thresholds)))
        iou_v2 = np.empty_like(iou_v1)
        box_v1, box_v2 = iou_v1, iou_v2  # the IoUs the box metrics read
        if by_prediction:
            box_v1, box_v2 = np.empty_like(iou_v1), np.empty_like(iou_v1)
        for i in range(batch):
            boxes = check_boxes(as_numpy(gt_boxes[i]), f"{names[i]}: GT box")
            if len(boxes) == 0:
                raise BadFileError(f"{names[i]}: no GT box")
            iou_v1[i], iou_v2[i] = sweep_ious_unchecked(self.protocol, normalized[i], self.thresholds, boxes)
            if by_prediction:
                box_v1[i], box_v2[i] = (
                    (iou_v1[i], iou_v2[i]) if top1[i]
                    else sweep_ious_unchecked(self.protocol, top1_normalized[i], self.thresholds, boxes)
                )
        if not self.protocol.multi_contour:
            box_v2 = box_v1
        c = self._counts
        c["images"] += batch
        c["v1"] += (box_v1[None] >= self._deltas).sum(1)
        c["v2"] += (box_v2[None] >= self._deltas).sum(1)
        c["gt_known"] += (box_v1 >= 0.5).sum(0)
        if self._records is not None:
            self._record(names, labels, ranked, box_v1, box_v2)
        if logits is None:
            return
        located = iou_v1 > 0.5 if self.protocol.strict_topk else iou_v1 >= 0.5
        c["classified"] += batch
        c["top1_cls"] += top1.sum()
        c["top5_cls"] += top5.sum()
        c["top1_loc"] += (located & top1[:, None]).sum(0)
        c["top5_loc"] += (located & top5[:, None]).sum(0)

    def result(self, policy: str = "oracle-test", fixed_thresholds: Any = None) -> MetricResult:
        """Metrics in percent under the policy; `thresholds` records the τ each metric was read at."""
        c = self._counts
        n, classified = int(c["images"]), int(c["classified"])
        if n == 0:
            raise ValueError("no images were accumulated")
        if classified not in (0, n):
            raise ValueError(f"logits were given for {classified} of {n} images; give them for all or none")
        curves = {"maxboxacc": c["gt_known"], "gt_known_loc": c["gt_known"]}
        curves.update({f"maxboxaccv2_iou{d}": c["v2"][k] for k, d in enumerate(self.iou_thresholds)})
        if classified:
            curves.update(top1_loc=c["top1_loc"], top5_loc=c["top5_loc"])
        curves = {key: 100 * value / n for key, value in curves.items()}
        chosen = self._select(policy, fixed_thresholds)
        if isinstance(chosen, dict):
            missing = sorted(set(curves) - set(chosen))
            if missing:
                raise ValueError(f"fixed_thresholds has no τ for {', '.join(missing)}")
            index = {key: chosen[key] for key in curves}
            rule = "τ given per metric"
        elif self.protocol.selection == "sat":
            score = curves["gt_known_loc"] + curves.get("top1_loc", 0)
            best = int(chosen[np.argmax(score[chosen])])
            index = dict.fromkeys(curves, best)
            rule = (
                "one τ maximizing GT-known + Top-1 Loc (ties → first); maxboxaccv2 is SAT's "
                "code-MaxBoxAccV2: IoU30/50/70 of the single largest component at that τ"
            )
        else:
            index = {key: int(chosen[np.argmax(value[chosen])]) for key, value in curves.items()}
            rule = "best τ per metric and per IoU level"
        metrics = {key: float(curves[key][i]) for key, i in index.items()}
        v2 = [metrics[f"maxboxaccv2_iou{d}"] for d in self.iou_thresholds]
        metrics["maxboxaccv2"] = float(np.mean(v2))
        if classified:
            metrics["top1_cls"] = 100 * int(c["top1_cls"]) / n
            metrics["top5_cls"] = 100 * int(c["top5_cls"]) / n
        order = [
            "maxboxacc",
            "maxboxaccv2",
            *(f"maxboxaccv2_iou{d}" for d in self.iou_thresholds),
            "gt_known_loc",
            "top1_loc",
            "top5_loc",
            "top1_cls",
            "top5_cls",
        ]
        return MetricResult(
            metrics={key: metrics[key] for key in order if key in metrics},
            thresholds={key: float(self.thresholds[i]) for key, i in index.items()},
            build_curves=partial(
                self._curves, n, classified > 0, {key: c[key].copy() for key in ("v1", "v2", "top1_loc")}
            ),
            policy=policy,
            protocol=self.protocol.name,
            rule=rule,
        )

    def _curves(self, n: int, classified: bool, c: dict[str, np.ndarray]) -> pd.DataFrame:
        """The curves of counts `c` (a copy taken by result()) over n images."""
        import pandas as pd

        parts = [("boxacc", d, c["v1"][k]) for k, d in enumerate(self.iou_thresholds)]
        parts += [("boxacc_v2", d, c["v2"][k]) for k, d in enumerate(self.iou_thresholds)]
        if classified:
            parts.append(("top1_loc", 50, c["top1_loc"]))
        frames = [
            pd.DataFrame(
                {
                    "curve": name,
                    "iou_threshold": d,
                    "threshold": self.thresholds,
                    "value": 100 * hits / n,
                    "precision": np.nan,
                    "recall": np.nan,
                }
            )
            for name, d, hits in parts
        ]
        return pd.concat(frames, ignore_index=True)[CURVE_COLUMNS]


class MaskAccumulator(_Counts):
    """PxAP: positive / negative pixel counts per score bin, pooled over everything accumulated."""

    def __init__(self, protocol: EvalProtocol, thresholds: Sequence[float] | np.ndarray) -> None:
        self.protocol = protocol
        self.thresholds = _check_thresholds(thresholds)
        self._edges = bin_edges(self.thresholds)
        bins = len(self._edges) - 1
        self._counts = {
            "images": np.zeros((), np.int64),
            "positive": np.zeros(bins, np.int64),
            "negative": np.zeros(bins, np.int64),
        }

    def _signature(self) -> tuple:
        return (self.protocol, tuple(self.thresholds.tolist()))

    def update(self, maps: Any, label_maps: Any, names: Sequence[str] | None = None) -> None:
        """Add RAW maps (B, h, w) with label maps (B, S, S) uint8: 1 foreground, 0 background, 255 ignore;
        `names` (the image ids) label errors."""
        self.update_normalized(normalize_maps(self.protocol, maps), label_maps, names=names)

    def update_normalized(
        self, normalized: np.ndarray, label_maps: Any, names: Sequence[str] | None = None
    ) -> None:
        """Add maps already in the frame and in [0, 1] (B, S, S); `names` label errors."""
        label_maps = as_numpy(label_maps)
        if label_maps.shape != normalized.shape:
            raise ValueError(f"label maps have shape {label_maps.shape}, maps {normalized.shape}")
        names = list(names) if names is not None else [f"batch image {i}" for i in range(len(normalized))]
        for scores, labels, name in zip(normalized, label_maps, names, strict=True):
            check_label_map(labels, name)
            positive, negative = pixel_histograms(scores, labels, self._edges)
            self._counts["positive"] += positive
            self._counts["negative"] += negative
        self._counts["images"] += len(normalized)

    def result(self, policy: str = "oracle-test") -> MetricResult:
        """PxAP in percent (no τ is chosen: it integrates over all of them) and the pixel PR curve."""
        if policy not in ("oracle-test", "fixed"):
            self._select(policy, None)
        pxap, precision, recall = pxap_curve(self._counts["positive"], self._counts["negative"])
        edges = self._edges[::-1][1:]  # operating point j keeps scores ≥ this edge
        columns = {
            "curve": "pxprec_pxrec",
            "iou_threshold": np.nan,
            "threshold": edges,
            "value": np.nan,
            "precision": precision,
            "recall": recall,
        }
        return MetricResult(
            metrics={"pxap": pxap},
            thresholds={},
            build_curves=partial(_frame, columns),
            policy=policy,
            protocol=self.protocol.name,
            rule="PxAP integrates over every τ",
        )
