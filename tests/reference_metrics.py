"""Plain reference implementation of the box metrics, one threshold at a time (docs/metrics.md,
docs/protocols.md).

Written straight from the definitions, with no deduplication, cropping or vectorization over thresholds, so
that the fast engine (wsolbench.metrics.boxes) can be checked against it number for number. The SAT
component rule uses scipy.ndimage.label here (raster-order labels, as skimage), independently of the
OpenCV labelling the fast engine uses. Used by tests and benchmarks/metrics_speed.py.
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage


def reference_iou(box_a: np.ndarray, box_b: np.ndarray) -> np.ndarray:
    """(M, K) inclusive "+1" IoU."""
    box_a = np.asarray(box_a, dtype=np.int64).reshape(-1, 4)
    box_b = np.asarray(box_b, dtype=np.int64).reshape(-1, 4)
    out = np.zeros((len(box_a), len(box_b)))
    for i, a in enumerate(box_a):
        for j, b in enumerate(box_b):
            iw = max(0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
            ih = max(0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
            inter = iw * ih
            union = (a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter
            out[i, j] = inter / union if union > 0 else 0.0
    return out


def reference_boxes(scoremap: np.ndarray, tau: float, convention: str, multi_contour: bool) -> list[tuple]:
    """Boxes of one normalized (H, W) map at one threshold: 'sat', 'ts_cam', else wsolevaluation/scm."""
    height, width = scoremap.shape
    if convention == "sat":
        labels, count = ndimage.label(scoremap > tau, structure=np.ones((3, 3)))
        if count == 0:
            return [(0, 0, width, height)]
        sizes = np.bincount(labels.ravel())[1:]
        ys, xs = np.nonzero(labels == 1 + int(np.argmax(sizes)))
        return [(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)]
    q = (scoremap * 255).astype(np.uint8)
    _, binary = cv2.threshold(q, int(tau * np.max(q)), 255, cv2.THRESH_BINARY)
    contours = cv2.findContours(binary, cv2.RETR_TREE, cv2.CHAIN_APPROX_SIMPLE)[-2]
    if not contours:
        return [(0, 0, 1, 1)] if convention == "ts_cam" else [(0, 0, 0, 0)]
    if not multi_contour:
        contours = [max(contours, key=cv2.contourArea)]
    boxes = []
    for contour in contours:
        x, y, w, h = cv2.boundingRect(contour)
        x1, y1 = x + w, y + h
        if convention != "ts_cam":
            x1, y1 = min(x1, width - 1), min(y1, height - 1)
        boxes.append((x, y, x1, y1))
    return boxes


def reference_ious(
    scoremap: np.ndarray, thresholds, gt_boxes, convention: str, multi_contour: bool
) -> np.ndarray:
    """(T,) best IoU over predicted and GT boxes at every threshold (the reference's accumulate step)."""
    per_threshold = [reference_boxes(scoremap, tau, convention, multi_contour) for tau in thresholds]
    counts = [len(b) for b in per_threshold]
    ious = _vector_iou(np.concatenate(per_threshold), np.asarray(gt_boxes).reshape(-1, 4)).max(1)
    out, start = [], 0
    for count in counts:
        out.append(ious[start : start + count].max())
        start += count
    return np.asarray(out)


def _vector_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a = a.astype(np.int64)[:, None]
    b = b.astype(np.int64)[None]
    inter = np.maximum(
        0, np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]) + 1
    ) * np.maximum(0, np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]) + 1)
    union = (
        (a[..., 2] - a[..., 0] + 1) * (a[..., 3] - a[..., 1] + 1)
        + (b[..., 2] - b[..., 0] + 1) * (b[..., 3] - b[..., 1] + 1)
        - inter
    )
    return inter / union


def reference_box_counts(
    scoremaps, gt_boxes, thresholds, iou_thresholds, convention: str, multi_contour: bool
) -> np.ndarray:
    """(D, T) number of images with IoU ≥ δ at each threshold."""
    counts = np.zeros((len(iou_thresholds), len(thresholds)), dtype=np.int64)
    for scoremap, gt in zip(scoremaps, gt_boxes, strict=True):
        ious = reference_ious(scoremap, thresholds, gt, convention, multi_contour)
        for d, delta in enumerate(iou_thresholds):
            counts[d][np.where(ious >= delta / 100)[0]] += 1
    return counts


def reference_pxap(scores: np.ndarray, labels: np.ndarray, thresholds) -> float:
    """PxAP of pooled pixels (labels 1 / 0 / 255 = ignore), as docs/metrics.md defines it."""
    edges = list(thresholds) + [1.0, 2.0, 3.0]
    pos, _ = np.histogram(scores[labels == 1], bins=edges)
    neg, _ = np.histogram(scores[labels == 0], bins=edges)
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    total = 0.0
    previous_recall = 0.0
    for j in range(len(tp)):
        recall = tp[j] / pos.sum()
        if tp[j] + fp[j] > 0:
            if j >= 1:
                total += tp[j] / (tp[j] + fp[j]) * (recall - previous_recall)
        previous_recall = recall
    return 100 * total
