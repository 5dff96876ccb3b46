"""PxAP: pixel precision-recall over binned raw scores, pooled over the split (docs/metrics.md)."""

from __future__ import annotations

import numpy as np

from wsolbench.errors import BadAnnotationError, BadFileError


def bin_edges(thresholds: np.ndarray) -> np.ndarray:
    """[τ_0, …, τ_{K−1}, 1, 2, 3]: K + 2 half-open bins, the last closed (numpy.histogram)."""
    return np.concatenate([np.asarray(thresholds, dtype=np.float64), [1.0, 2.0, 3.0]])


def check_label_map(labels: np.ndarray, what: str) -> None:
    """ValueError unless every value is 0 (background), 1 (foreground) or 255 (ignore)."""
    bad = (labels != 0) & (labels != 1) & (labels != 255)
    if bad.any():
        raise BadFileError(f"{what}: label map values must be 0, 1 or 255, found {int(labels[bad][0])}")


def pixel_histograms(
    scores: np.ndarray, labels: np.ndarray, edges: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(positive counts, negative counts) per bin of raw scores; label 255 pixels are left out."""
    positive, _ = np.histogram(scores[labels == 1], bins=edges)
    negative, _ = np.histogram(scores[labels == 0], bins=edges)
    return positive.astype(np.int64), negative.astype(np.int64)


def pxap_curve(positive: np.ndarray, negative: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
    """(PxAP in percent, precision_j, recall_j) for j = 0 … K+1, j counting bins from the top edge down.

    PxAP = 100 Σ_{j≥1} precision_j (recall_j − recall_{j−1}) over the j with TP_j + FP_j > 0 (a
    right-endpoint step sum); precision_j is NaN where TP_j + FP_j = 0. BadAnnotationError (a RuntimeError) if
    there is no positive pixel.
    """
    total_positive = int(positive.sum())
    if total_positive == 0:
        raise BadAnnotationError("No positive ground truth pixels in the evaluated split; PxAP is undefined")
    tp = np.cumsum(positive[::-1])
    fp = np.cumsum(negative[::-1])
    predicted = tp + fp
    precision = np.where(predicted > 0, tp / np.maximum(predicted, 1), np.nan)
    recall = tp / total_positive
    steps = precision[1:] * np.diff(recall)
    return float(100 * steps[predicted[1:] > 0].sum()), precision, recall
