"""Ablation tables and bar charts from an ablation manifest (wsolbench.ablation_manifest).

The grids are run by wsolbench.engine.ablation; this module only renders what they wrote: per study a
table (rows = cells, a label column per grid key, mean ± sample std over seeds) in Markdown, CSV and
LaTeX, and a bar chart of its first headline metric with 95 % bootstrap intervals where the runs have
per-image results.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wsolbench.ablation_manifest import short_keys
from wsolbench.atomic import atomic_write_text

from . import plots
from .runs import load_run_frame
from .tables import (
    Cell,
    Row,
    Table,
    TableStyle,
    metric_name,
    order_columns,
    select_entries,
    summarize,
    to_csv,
    to_latex,
    to_markdown,
)
from .uncertainty import half_width

BAR_METRICS = ("maxboxaccv2", "pxap", "gt_known_loc", "top1_loc", "top1_cls")


@dataclass
class AblationOutput:
    markdown: str
    tables: list[Table]
    figures: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def study_table(study: dict[str, Any], style: TableStyle) -> Table:
    """Rows = cells (a label column per grid key), columns = the dataset's metrics, mean ± std over seeds."""
    names = short_keys(study["keys"])
    rows, present = [], set()
    for cell in study["cells"]:
        summary = summarize(select_entries(load_run_frame(cell["runs"])))
        if style.metrics is not None:
            summary = summary[summary["metric"].isin(style.metrics)]
        row = Row(method="", backbone=None, labels=[str(cell["values"][k]) for k in study["keys"]])
        for rec in summary.itertuples(index=False):
            std = None if rec.n < 2 or pd.isna(rec.std) else float(rec.std)
            row.cells[(rec.dataset, rec.metric)] = Cell(float(rec.mean), std, int(rec.n))
            present.add((rec.dataset, rec.metric))
        rows.append(row)
    columns = order_columns(present)
    overrides = "; ".join(f"{cell['label']}: {' '.join(cell['overrides'])}" for cell in study["cells"]
                          if "overrides" in cell)
    return Table(columns, rows, style, label_columns=[names[k] for k in study["keys"]],
                 notes=[f"Ablation '{study['name']}'. Test split, each run's own eval protocol and threshold "
                        f"policy; mean ± sample std over seeds. Cells: {overrides}"])


def write_outputs(manifest: dict[str, Any], out: Path, style: TableStyle) -> AblationOutput:
    """ablation.md / .csv / .tex and one bar chart per study (`ablation_<k>.png/.pdf`) into `out`."""
    tables = [study_table(study, style) for study in manifest["studies"]]
    title = f"{manifest['method']} on {manifest['dataset']} ({manifest['experiment']})"
    markdown = f"Ablation: {title}\n\n" + "\n".join(to_markdown(t) for t in tables)
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "ablation.md", out / "ablation.csv", out / "ablation.tex"]
    atomic_write_text(files[0], markdown)
    csv_parts = []
    for study, table in zip(manifest["studies"], tables, strict=False):
        frame = pd.read_csv(io.StringIO(to_csv(table)))
        frame = frame.drop(columns=["experiment", "method", "backbone", "variant", "kind"])
        for key in reversed(study["keys"]):
            frame.insert(0, key, [cell["values"][key] for cell in study["cells"]])
        frame.insert(0, "study", study["name"])
        csv_parts.append(frame)
    atomic_write_text(files[1], pd.concat(csv_parts, ignore_index=True).to_csv(index=False))
    atomic_write_text(files[2], "\n".join(to_latex(t) for t in tables))
    figures = []
    for k, (study, table) in enumerate(zip(manifest["studies"], tables, strict=False)):
        metric = next((m for m in BAR_METRICS if any(c[1] == m for c in table.columns)), None)
        if metric is None:
            continue
        column = next(c for c in table.columns if c[1] == metric)
        pairs = [(cell, row) for cell, row in zip(study["cells"], table.rows, strict=True) if column in row.cells]
        present = [row for _, row in pairs]
        names = ["\n".join(f"{k}={v}" for k, v in zip(table.label_columns, r.labels, strict=True))
                 for r in present]
        widths = [half_width(cell["runs"], metric) for cell, _ in pairs]
        errors = [w if w is not None else r.cells[column].std for w, r in zip(widths, present, strict=True)]
        bars = "95 % bootstrap interval" if all(w is not None for w in widths) else "seed std"
        figures.append(plots.bar_chart(
            names, [r.cells[column].mean for r in present], errors, f"{metric_name(metric, style)} (%)",
            f"{title}: {study['name']} ({', '.join(table.label_columns)}); bars ± {bars}", out, f"ablation_{k}"))
    files += [f for png in figures for f in (png, png.with_suffix(".pdf"))]
    return AblationOutput(markdown, tables, figures, files)
