"""`bench.py score`: score saved maps in the wsolevaluation layout against a metadata split.

Maps are `<scoremaps>/<image_id>.npy`, 2-D, 224 x 224, any float dtype, values in [0, 1], already
normalized (they are thresholded relative to their maximum, as the reference evaluator does). GT
boxes move into the 224 frame with truncation; masks with nearest neighbour (docs/protocols.md).
The thresholds are the oracle-test sweep arange(0, 1, Δ). Work is spread over processes in chunks of
images; each chunk returns integer counts, which add up exactly. Every map is read once and checked
before it is scored; if any is missing or invalid, all bad ones are reported together (the first 20,
and their count) and nothing is written. The JSON is written atomically. Nothing here needs pandas.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from wsolbench.annotations import EvalFrame, Metadata, atomic_write_text, mask_label_map, read_metadata
from wsolbench.errors import BadFileError, BadValueError, MissingFileError, WsolbenchError, problem_report
from wsolbench.metrics.accumulators import BoxAccumulator, MaskAccumulator
from wsolbench.metrics.component_trees import load_kernels
from wsolbench.metrics.per_image import concat
from wsolbench.metrics.per_image import save as save_per_image
from wsolbench.metrics.protocols import EvalProtocol, get_protocol, threshold_list

METRICS = ("maxboxacc", "maxboxaccv2", "pxap")
SIZE = 224
CHUNK = 32


class ScoreMapError(WsolbenchError, ValueError):
    """Missing or invalid score maps; the message counts them and lists the first 20."""


def load_scoremap(scoremaps: Path, image_id: str) -> np.ndarray:
    """The validated (224, 224) float64 map of one image; BadFileError / MissingFileError name the image."""
    path = scoremaps / f"{image_id}.npy"
    if not path.is_file():
        raise MissingFileError(f"{image_id}: no score map at {path}")
    try:
        scoremap = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as error:
        raise BadFileError(f"{image_id}: {path} is not a plain numpy array file ({error})") from None
    if not np.issubdtype(scoremap.dtype, np.floating):
        raise BadFileError(f"{image_id}: score map dtype must be floating point, got {scoremap.dtype}")
    if scoremap.shape != (SIZE, SIZE):
        raise BadFileError(f"{image_id}: score map must be 2-D of shape ({SIZE}, {SIZE}), got {scoremap.shape}")
    scoremap = scoremap.astype(np.float64)
    if np.isnan(scoremap).any():
        raise BadFileError(f"{image_id}: score map contains NaN")
    if scoremap.min() < 0 or scoremap.max() > 1:
        raise BadFileError(
            f"{image_id}: score map values must lie in [0, 1], "
            f"got [{scoremap.min():.6g}, {scoremap.max():.6g}]"
        )
    return scoremap


def _accumulator(
    protocol: EvalProtocol, metric: str, thresholds: np.ndarray, iou_thresholds: Sequence[int], record: bool = False
) -> BoxAccumulator | MaskAccumulator:
    if metric == "pxap":
        return MaskAccumulator(protocol, thresholds)
    return BoxAccumulator(protocol, thresholds, iou_thresholds, record_images=record)


def _score_chunk(task: tuple) -> tuple[BoxAccumulator | MaskAccumulator | None, list[str]]:
    """(the chunk's accumulator, []) of one chunk of images; (None, problems, one line each) when some of
    its maps are missing or invalid. Runs in a worker process; each map is read once."""
    protocol, scoremaps, metric, thresholds, iou_thresholds, mask_root, items, labels, record = task
    ids = [image_id for image_id, _ in items]
    loaded, problems = [], []
    for image_id in ids:
        try:
            loaded.append(load_scoremap(scoremaps, image_id))
        except (ValueError, OSError) as error:
            problems.append(str(error))
    if problems:
        return None, problems
    maps = np.stack(loaded)
    acc = _accumulator(protocol, metric, thresholds, iou_thresholds, record)
    if metric == "pxap":
        label_maps = np.stack([mask_label_map(entry, mask_root, protocol.frame) for _, entry in items])
        acc.update_normalized(maps, label_maps, names=ids)
    else:
        acc.update_normalized(maps, [gt for _, gt in items], labels, names=ids)
    return acc, []


def _items(
    metadata: Metadata, metric: str, mask_root: Path | None, where: Path, frame: EvalFrame
) -> list[tuple[str, Any]]:
    if metric == "pxap":
        if not metadata.masks:
            raise BadFileError(f"{where}: --metric pxap needs mask annotations in localization.txt")
        if mask_root is None:
            raise BadValueError("--metric pxap needs --mask-root (the folder the mask paths are relative to)")
        missing = [i for i in metadata.image_ids if i not in metadata.masks]
        if missing:
            raise BadFileError(f"{missing[0]}: no mask line in {where / 'localization.txt'}")
        return [(i, metadata.masks[i]) for i in metadata.image_ids]
    if not metadata.boxes:
        raise BadFileError(f"{where}: --metric {metric} needs boxes in localization.txt")
    items = []
    for image_id in metadata.image_ids:
        if image_id not in metadata.boxes:
            raise BadFileError(f"{image_id}: no box line in {where / 'localization.txt'}")
        width, height = metadata.sizes[image_id]
        items.append((image_id, np.array([frame.box(b, width, height) for b in metadata.boxes[image_id]])))
    return items


def score_saved_maps(
    scoremaps: str | Path,
    metadata_dir: str | Path,
    metric: str = "maxboxaccv2",
    cam_curve_interval: float = 0.001,
    iou_thresholds: Sequence[int] = (30, 50, 70),
    mask_root: str | Path | None = None,
    workers: int | None = None,
    per_image_output: str | Path | None = None,
) -> dict[str, Any]:
    """The score record: metric, value, per_iou, thresholds (τ per δ), policy, num_images, ... (percent).

    With `per_image_output` (box metrics), the images' labels and IoU codes are also written there as
    a per_image.npz (no predicted classes: saved maps come without logits).
    """
    if metric not in METRICS:
        raise BadValueError(f"unknown metric {metric!r}; valid: {', '.join(METRICS)}")
    if per_image_output is not None and metric == "pxap":
        raise BadValueError("--per-image records box IoUs; it goes with --metric maxboxacc or maxboxaccv2")
    scoremaps, metadata_dir = Path(scoremaps), Path(metadata_dir)
    thresholds = threshold_list(cam_curve_interval)
    metadata = read_metadata(metadata_dir)
    protocol = get_protocol("wsolevaluation", crop_size=SIZE)
    items = _items(metadata, metric, None if mask_root is None else Path(mask_root), metadata_dir, protocol.frame)
    workers = workers or os.cpu_count() or 1
    tasks = [
        (
            protocol,
            scoremaps,
            metric,
            thresholds,
            tuple(iou_thresholds),
            None if mask_root is None else Path(mask_root),
            items[k : k + CHUNK],
            np.array([metadata.labels[image_id] for image_id, _ in items[k : k + CHUNK]], np.int64),
            per_image_output is not None,
        )
        for k in range(0, len(items), CHUNK)
    ]
    workers = min(workers, len(tasks))
    load_kernels()  # once here, not in every forked worker
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
            chunks = list(pool.map(_score_chunk, tasks))
    else:
        chunks = [_score_chunk(task) for task in tasks]
    problems = [line for _, lines in chunks for line in lines]
    if problems:
        raise ScoreMapError(problem_report(
            f"{len(problems)} of {len(items)} score maps in {scoremaps} are missing or invalid", problems))
    acc = _accumulator(protocol, metric, thresholds, iou_thresholds)
    for part, _ in chunks:
        acc.merge(part)
    if per_image_output is not None:
        save_per_image(concat([part.per_image() for part, _ in chunks]), per_image_output)
    result = acc.result("oracle-test")
    record: dict[str, Any] = {"metric": metric}
    if metric == "pxap":
        record.update(value=result.metrics["pxap"], per_iou={}, thresholds={})
    elif metric == "maxboxaccv2":
        per_iou = {str(d): result.metrics[f"maxboxaccv2_iou{d}"] for d in iou_thresholds}
        taus = {str(d): result.thresholds[f"maxboxaccv2_iou{d}"] for d in iou_thresholds}
        record.update(value=result.metrics["maxboxaccv2"], per_iou=per_iou, thresholds=taus)
    else:  # V1: the reference stand-alone evaluator reports the δ = 50 entry
        per_iou, taus = {}, {}
        for k, d in enumerate(iou_thresholds):  # the boxacc curve of δ, as in result.curves
            curve = 100 * acc.counts()["v1"][k] / len(items)
            best = int(np.argmax(curve))
            per_iou[str(d)], taus[str(d)] = float(curve[best]), float(thresholds[best])
        record.update(value=result.metrics["maxboxacc"], per_iou=per_iou, thresholds=taus)
    record.update(
        policy=result.policy,
        eval_protocol=result.protocol,
        num_images=len(items),
        cam_curve_interval=cam_curve_interval,
        iou_thresholds=list(iou_thresholds),
    )
    return record


def write_score(record: dict[str, Any], output: str | Path) -> None:
    """Write the record as JSON, atomically."""
    atomic_write_text(output, json.dumps(record, indent=2) + "\n")
