"""Report figures, each written as `<stem>.png` and `<stem>.pdf`.

Every function takes frames from reports.runs (or plain numbers), writes one figure per dataset when
there is something to draw, and returns the PNG paths it wrote (empty when there is no data), so a
report can embed exactly what exists.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from .runs import loss_terms
from .tables import DATASET_NAMES, METRIC_NAMES, backbone_display_name, method_display_name
from .uncertainty import half_width

CURVE_METRICS = ("gt_known_loc", "maxboxaccv2", "pxap")  # first present is plotted in few-shot / PE curves


def subplots(nrows: int = 1, ncols: int = 1, **options) -> tuple[Figure, object]:
    """A figure and its axes, as pyplot's `subplots`, but outside pyplot: no global backend or figure
    registry is touched, so importing the reports changes nothing for the caller's matplotlib."""
    figsize = options.pop("figsize", None)
    fig = Figure(figsize=figsize)
    return fig, fig.subplots(nrows, ncols, **options)


def save(fig: Figure, out_dir: Path, stem: str) -> Path:
    """Write `<stem>.png` (120 dpi) and `<stem>.pdf`, return the PNG path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig.set_layout_engine("constrained")  # keeps titles, suptitle and legends from overlapping
    png = out_dir / f"{stem}.png"
    fig.savefig(png, dpi=120, bbox_inches="tight")
    fig.savefig(out_dir / f"{stem}.pdf", bbox_inches="tight")
    return png


def label(method: str, backbone: object, variant: str = "") -> str:
    backbone = _backbone(backbone)
    text = f"{method_display_name(method)} {backbone_display_name(backbone) if backbone else ''}".strip()
    return f"{text} ({variant})" if variant else text


def _dataset(name: str) -> str:
    return DATASET_NAMES.get(name, name)


def _line_groups(frame: pd.DataFrame):
    return frame.groupby(["method", "backbone", "variant"], dropna=False, sort=True)


def _backbone(value: object) -> str | None:
    return None if value is None or pd.isna(value) else str(value)


def boxacc_curves(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """BoxAcc vs τ, one panel per IoU level, one line per method (mean over seeds); V2 curves when
    present, else the V1 curve."""
    written = []
    if curves.empty:
        return written
    for dataset, data in curves.groupby("dataset"):
        kind = "boxacc_v2" if (data["curve"] == "boxacc_v2").any() else "boxacc"
        data = data[data["curve"] == kind]
        if data.empty:
            continue
        levels = sorted(data["iou_threshold"].dropna().unique())
        fig, axes = subplots(1, len(levels), figsize=(4.2 * len(levels), 3.4), squeeze=False, sharey=True)
        for ax, level in zip(axes[0], levels, strict=False):
            for (method, backbone, variant), line in _line_groups(data[data["iou_threshold"] == level]):
                mean = line.groupby("threshold")["value"].mean()
                ax.plot(mean.index, mean.values, label=label(method, backbone, variant))
            ax.set_title(f"IoU ≥ {level:g}%")
            ax.set_xlabel("threshold τ")
            ax.grid(alpha=0.3)
        axes[0][0].set_ylabel("BoxAcc (%)")
        axes[0][-1].legend(fontsize=8)
        fig.suptitle(f"{_dataset(dataset)}: BoxAcc{'V2' if kind == 'boxacc_v2' else ''} vs threshold")
        written.append(save(fig, out_dir, f"boxacc_{dataset}"))
    return written


def pxprec_pxrec_curves(curves: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Pixel precision vs pixel recall, one line per method (mean over seeds per threshold)."""
    written = []
    if curves.empty or not (curves["curve"] == "pxprec_pxrec").any():
        return written
    for dataset, data in curves[curves["curve"] == "pxprec_pxrec"].groupby("dataset"):
        fig, ax = subplots(figsize=(4.6, 4.0))
        for (method, backbone, variant), line in _line_groups(data):
            mean = line.groupby("threshold")[["recall", "precision"]].mean()
            ax.plot(mean["recall"], mean["precision"], label=label(method, backbone, variant))
        ax.set_xlabel("pixel recall")
        ax.set_ylabel("pixel precision")
        ax.set_title(f"{_dataset(dataset)}: PxPrec–PxRec")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save(fig, out_dir, f"pxprec_pxrec_{dataset}"))
    return written


def qualitative_grid(samples: list[tuple[dict, dict[str, np.ndarray]]], out_dir: Path, max_images: int = 6
                     ) -> list[Path]:
    """Rows = test images (ids of the first method), columns = the image with its GT box (red), then
    per method the map overlay with its predicted box (green) and the GT box."""
    written = []
    for dataset in sorted({info["dataset"] for info, _ in samples}):
        runs = [(info, arrays) for info, arrays in samples if info["dataset"] == dataset]
        ids = [str(i) for i in runs[0][1]["image_ids"][:max_images]]
        cols = 1 + len(runs)
        fig, axes = subplots(len(ids), cols, figsize=(2.0 * cols, 2.0 * len(ids)), squeeze=False)
        for r, image_id in enumerate(ids):
            first = runs[0][1]
            k = list(map(str, first["image_ids"])).index(image_id)
            _show(axes[r][0], first["images"][k], None, None, first["gt_boxes"][k])
            axes[r][0].set_ylabel(image_id.rsplit("/", 1)[-1], fontsize=6)
            for c, (_, arrays) in enumerate(runs, start=1):
                order = list(map(str, arrays["image_ids"]))
                if image_id in order:
                    i = order.index(image_id)
                    _show(axes[r][c], arrays["images"][i], arrays["maps"][i], arrays["pred_boxes"][i],
                          arrays["gt_boxes"][i])
                else:
                    axes[r][c].axis("off")
        axes[0][0].set_title("image + GT", fontsize=8)
        for c, (info, _) in enumerate(runs, start=1):
            axes[0][c].set_title(label(info["method"], info["backbone"], info["variant"]), fontsize=8)
        fig.suptitle(f"{_dataset(dataset)}: maps, predicted (green) and GT (red) boxes", fontsize=9)
        written.append(save(fig, out_dir, f"qualitative_{dataset}"))
    return written


def _show(ax: Axes, image: np.ndarray, heat: np.ndarray | None, pred: np.ndarray | None,
          gt: np.ndarray) -> None:
    ax.imshow(image)
    if heat is not None:
        ax.imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0,
                  extent=(-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
    for box, color in ((gt, "red"), (pred, "lime")):
        if box is not None:
            x0, y0, x1, y1 = (float(v) for v in box)
            ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, color=color, linewidth=1.5))
    ax.set_xticks([])
    ax.set_yticks([])


def training_curves(logs: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Every loss term against the step, one panel per term, one line per run."""
    written = []
    if logs.empty:
        return written
    for dataset, data in logs.groupby("dataset"):
        terms = [t for t in loss_terms(data) if data[t].notna().any()]
        if not terms:
            continue
        cols = min(3, len(terms))
        rows = -(-len(terms) // cols)
        fig, axes = subplots(rows, cols, figsize=(4.2 * cols, 3.0 * rows), squeeze=False)
        for ax, term in zip(axes.flat, terms, strict=False):
            for (_run_dir, method, backbone, variant, seed), line in data.groupby(
                    ["run_dir", "method", "backbone", "variant", "seed"], dropna=False, sort=True):
                line = line.dropna(subset=[term])
                name = f"{label(method, backbone, variant)} s{seed}"
                ax.plot(line["step"], line[term], label=name)
            ax.set_title(term)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(terms):]:
            ax.axis("off")
        axes[0][0].legend(fontsize=7)
        fig.suptitle(f"{_dataset(dataset)}: training losses")
        written.append(save(fig, out_dir, f"training_{dataset}"))
    return written


def bar_chart(labels: list[str], means: list[float], stds: list[float | None], ylabel: str, title: str,
              out_dir: Path, stem: str) -> Path:
    """One bar per label with ± std error bars where given (the ablation chart)."""
    fig, ax = subplots(figsize=(max(4.0, 1.1 * len(labels) + 1.5), 3.6))
    errors = [0.0 if s is None or np.isnan(s) else s for s in stds]
    bars = ax.bar(range(len(labels)), means, yerr=errors, capsize=4, color="tab:blue", alpha=0.8)
    for bar, mean in zip(bars, means, strict=False):
        ax.annotate(f"{mean:.1f}", (bar.get_x() + bar.get_width() / 2, bar.get_height()),
                    ha="center", va="bottom", fontsize=8)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    ax.grid(axis="y", alpha=0.3)
    return save(fig, out_dir, stem)


def _curve_metric(frame: pd.DataFrame) -> str | None:
    present = set(frame["metric"])
    return next((m for m in CURVE_METRICS if m in present), None)


def few_shot_curves(selected: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Metric vs images per class for few-shot runs (mean over seeds ± the 95 % bootstrap half-width over
    test images and seeds, or ± the seed std where runs have no per-image results); full-data runs of
    the same method are drawn as a dashed level."""
    return _regime_curves(selected, "few_shot", "shots", "images per class", "few_shot", out_dir)


def parameter_efficient_curves(selected: pd.DataFrame, out_dir: Path) -> list[Path]:
    """Metric vs trainable parameters (log x) for parameter-efficient runs, error bars as in
    few_shot_curves; full runs as dashed levels."""
    return _regime_curves(selected, "parameter_efficient", "trainable_params", "trainable parameters",
                            "parameter_efficient", out_dir)


def _regime_curves(selected: pd.DataFrame, regime: str, x: str, xlabel: str, stem: str, out_dir: Path
                   ) -> list[Path]:
    written = []
    for dataset, data in selected[selected["regime"] == regime].groupby("dataset"):
        metric = _curve_metric(data)
        if metric is None:
            continue
        fig, ax = subplots(figsize=(4.8, 3.6))
        points = data[data["metric"] == metric].copy()
        points["value"] = pd.to_numeric(points["value"])
        kinds = set()
        for (method, backbone), line in points.groupby(["method", "backbone"], dropna=False, sort=True):
            stats = line.groupby(x)["value"].agg(["mean", "std"]).sort_index()
            errors = []
            for value, group in line.groupby(x, sort=True):
                width = half_width(group["run_dir"].tolist(), metric, group["threshold_policy"].tolist())
                kinds.add("95 % bootstrap interval" if width is not None else "seed std")
                errors.append(width if width is not None else stats.loc[value, "std"])
            name = label(method, backbone)
            ax.errorbar(stats.index, stats["mean"], yerr=np.nan_to_num(np.asarray(errors, float)), marker="o",
                        capsize=3, label=name)
            full = selected[(selected["regime"] == "full") & (selected["dataset"] == dataset)
                            & (selected["method"] == method) & (selected["metric"] == metric)]
            if not full.empty:
                ax.axhline(pd.to_numeric(full["value"]).mean(), linestyle="--", linewidth=1,
                           label=f"{name} (full)")
        if x == "trainable_params":
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel(f"{METRIC_NAMES.get(metric, metric)} (%)")
        ax.set_title(f"{_dataset(dataset)}: {regime.replace('_', '-')} (± {' / '.join(sorted(kinds))})",
                     fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
        written.append(save(fig, out_dir, f"{stem}_{dataset}"))
    return written
