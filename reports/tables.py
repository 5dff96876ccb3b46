"""Results tables in the classic WSOL layout: Markdown, LaTeX (booktabs) and CSV.

Which results entry feeds a table (`select_entries`): the **test** split, and per run one entry of
its metrics.json: by default the run's own configuration, i.e. the first test entry whose
threshold_policy is the run's `eval.threshold_policy` (column `own_policy`, read from config.yaml by
reports.runs; the first test entry when unknown). The engine scores a run under its own
`eval.protocol`; test is always scored under oracle-test too (written first), and `val` / `fixed`
runs add their own entry. `protocol=` / `threshold_policy=` pick those explicitly instead (e.g.
`threshold_policy="oracle-test"` for the numbers papers report). The table's notes state the
protocol / policy / checkpoint combinations used.

Rows are (method, backbone, variant) (plus the experiment when the frame holds several); a cell is
the mean over seeds, with ± the sample standard deviation where several seeds exist. The `paper`
style shows the classic columns per dataset (Top-1 Loc, Top-5 Loc, GT-known Loc, MaxBoxAccV2,
Top-1 Cls; PxAP) with display names and the best value of each column in bold; `plain` shows every
metric under its raw key, without bold.
"""

from __future__ import annotations

import functools
import io
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from wsolbench.registry import REPORTS, backbone_display_names, method_display_names, register_report

from .references import Reference, headline, lookup, published_names

ENTRY_COLUMNS = ["eval_protocol", "threshold_policy", "checkpoint"]
DATASET_ORDER = ("cub", "ilsvrc", "openimages")
PAPER_METRICS = ("top1_loc", "top5_loc", "gt_known_loc", "maxboxaccv2", "top1_cls", "pxap")
METRIC_ORDER = (
    "top1_loc", "top5_loc", "gt_known_loc", "maxboxaccv2", "maxboxaccv2_iou30", "maxboxaccv2_iou50",
    "maxboxaccv2_iou70", "maxboxacc", "pxap", "top1_cls", "top5_cls",
)
DATASET_NAMES = {"cub": "CUB", "ilsvrc": "ILSVRC", "openimages": "OpenImages", "synthetic": "Synthetic"}
METRIC_NAMES = {
    "top1_loc": "Top-1 Loc", "top5_loc": "Top-5 Loc", "gt_known_loc": "GT-known Loc",
    "maxboxaccv2": "MaxBoxAccV2", "maxboxaccv2_iou30": "MaxBoxAccV2@30",
    "maxboxaccv2_iou50": "MaxBoxAccV2@50", "maxboxaccv2_iou70": "MaxBoxAccV2@70", "maxboxacc": "MaxBoxAcc",
    "pxap": "PxAP", "top1_cls": "Top-1 Cls", "top5_cls": "Top-5 Cls",
}


@dataclass(frozen=True)
class TableStyle:
    """How a table looks: which metrics (None = all present), display names, bold best values."""

    name: str
    metrics: tuple[str, ...] | None
    display_names: bool
    bold: bool


PAPER = register_report("paper")(TableStyle("paper", PAPER_METRICS, display_names=True, bold=True))
PLAIN = register_report("plain")(TableStyle("plain", None, display_names=False, bold=False))


def get_style(name: str) -> TableStyle:
    return REPORTS.get(name)


@dataclass
class Cell:
    mean: float
    std: float | None = None  # sample std over seeds; None for one seed or a published number
    n: int = 1
    half_width: float | None = None  # of the 95 % bootstrap interval (reports.uncertainty)
    tied: bool = False  # not significantly different from the column's best row


@dataclass
class Row:
    """One table row; kind is 'ours', 'paper' (published numbers) or 'delta' (ours − paper)."""

    method: str
    backbone: str | None
    kind: str = "ours"
    variant: str = ""
    experiment: str = ""
    cells: dict[tuple[str, str], Cell] = field(default_factory=dict)
    labels: list[str] | None = None  # explicit label cells (ablation rows), instead of method / backbone


@dataclass
class Table:
    columns: list[tuple[str, str]]  # (dataset, metric)
    rows: list[Row]
    style: TableStyle
    show_experiment: bool = False
    notes: list[str] = field(default_factory=list)
    decimals: int = 2
    label_columns: list[str] | None = None  # headers of Row.labels, when rows carry explicit labels
    intervals: bool = False  # ± shows the bootstrap half-width instead of the seed std


# --------------------------------------------------------------------------- selecting and summarizing


def select_entries(frame: pd.DataFrame, protocol: str | None = None, threshold_policy: str | None = None
                   ) -> pd.DataFrame:
    """The rows of `frame` (load_results layout) that feed tables; see the module docstring."""
    test = frame[frame["split"] == "test"]
    if protocol is not None:
        test = test[test["eval_protocol"] == protocol]
    if threshold_policy is not None:
        test = test[test["threshold_policy"] == threshold_policy]
    if test.empty:
        available = sorted({"/".join(map(str, key)) for key in
                            frame[frame["split"] == "test"][ENTRY_COLUMNS].itertuples(index=False)})
        wanted = f"eval_protocol={protocol or 'any'}, threshold_policy={threshold_policy or 'any'}"
        raise ValueError(
            f"no test-split results with {wanted}; available (protocol/policy/checkpoint): "
            f"{', '.join(available) or 'none'}"
        )
    ranked = test.assign(_own=False)
    if threshold_policy is None and "own_policy" in test:
        ranked["_own"] = test["threshold_policy"] == test["own_policy"]
    ranked = ranked.reset_index(drop=True).reset_index(names="_order")
    chosen = ranked.sort_values(["_own", "_order"], ascending=[False, True]).drop_duplicates("run_dir")
    keep = chosen[["run_dir", *ENTRY_COLUMNS]]
    return test.merge(keep, on=["run_dir", *ENTRY_COLUMNS])


def summarize(selected: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std and count over seeds per (experiment, dataset, method, backbone, variant, metric)."""
    frame = selected.copy()
    if "variant" not in frame:
        frame["variant"] = ""
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce")
    frame = frame.dropna(subset=["value"])
    keys = ["experiment", "dataset", "method", "backbone", "variant", "metric"]
    grouped = frame.groupby(keys, dropna=False, sort=False)["value"]
    return grouped.agg(mean="mean", std="std", n="count").reset_index()


def _row_sort_key(row: Row) -> tuple:
    """Experiment, method, backbone, then variants grouped by kind and ordered by their number."""
    number = re.match(r"\d+", row.variant)
    kind = re.sub(r"^\d+", "", row.variant)
    return (row.experiment, row.method, row.backbone or "", kind, int(number.group()) if number else 0)


def _dataset_sort_key(dataset: str) -> tuple:
    return (DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER), dataset)


def _metric_sort_key(metric: str) -> tuple:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def order_columns(columns: set[tuple[str, str]]) -> list[tuple[str, str]]:
    """(dataset, metric) columns in table order: CUB, ILSVRC, OpenImages, others; classic metric order."""
    return sorted(columns, key=lambda c: (_dataset_sort_key(c[0]), _metric_sort_key(c[1])))


# --------------------------------------------------------------------------- building


def build_table(selected: pd.DataFrame, style: TableStyle, references: list[Reference] | None = None
                ) -> Table:
    """The results table of `selected` (from select_entries); with `references`, each of our rows is
    followed by the published row of the same method (same backbone when published, else the method's
    headline backbone) and, for a same-backbone match, a Δ row (ours − paper)."""
    summary = summarize(selected)
    if style.metrics is not None:
        summary = summary[summary["metric"].isin(style.metrics)]
    if summary.empty:
        raise ValueError(f"no metrics for the {style.name!r} table (style metrics: {style.metrics})")
    rows: dict[tuple, Row] = {}
    for rec in summary.itertuples(index=False):
        backbone = None if pd.isna(rec.backbone) else rec.backbone
        key = (rec.experiment, rec.method, backbone, rec.variant)
        row = rows.setdefault(key, Row(rec.method, backbone, variant=rec.variant, experiment=rec.experiment))
        std = None if rec.n < 2 or pd.isna(rec.std) else float(rec.std)
        row.cells[(rec.dataset, rec.metric)] = Cell(float(rec.mean), std, int(rec.n))
    ours = sorted(rows.values(), key=_row_sort_key)
    datasets = sorted(set(summary["dataset"]), key=_dataset_sort_key)
    table_rows: list[Row] = []
    sources: list[str] = []
    for row in ours:
        table_rows.append(row)
        if references is not None and not row.variant:
            extra = _paper_rows(row, datasets, references, style, sources)
            table_rows.extend(extra)
    columns = order_columns({key for r in table_rows for key in r.cells})
    table = Table(columns, table_rows, style, show_experiment=len({r.experiment for r in ours}) > 1)
    table.notes = _selection_notes(selected) + sources
    return table


def _paper_rows(row: Row, datasets: list[str], references: list[Reference], style: TableStyle,
                sources: list[str]) -> list[Row]:
    backbone = row.backbone
    found = {d: lookup(references, row.method, d, backbone) for d in datasets}
    same_backbone = any(found.values())
    if not same_backbone:
        first = headline(references, row.method)
        if first is None:
            return []
        backbone = first.backbone
        found = {d: lookup(references, row.method, d, backbone) for d in datasets}
    paper = Row(row.method, backbone, kind="paper", variant=row.variant, experiment=row.experiment)
    for dataset, refs in found.items():
        for metric, ref in refs.items():
            if style.metrics is None or metric in style.metrics:
                paper.cells[(dataset, metric)] = Cell(ref.value)
                note = f"{method_name(row.method, style)} {backbone_name(backbone, style)} (paper) " \
                       f"{dataset_name(dataset, style)}: {ref.source}; protocol: {ref.protocol}"
                if note not in sources:
                    sources.append(note)
    if not paper.cells:
        return []
    if not same_backbone:
        return [paper]
    delta = Row(row.method, row.backbone, kind="delta", variant=row.variant, experiment=row.experiment)
    for key, cell in paper.cells.items():
        if key in row.cells:
            delta.cells[key] = Cell(row.cells[key].mean - cell.mean)
    return [paper, delta]


def _selection_notes(selected: pd.DataFrame) -> list[str]:
    combos = selected.drop_duplicates("run_dir")[ENTRY_COLUMNS].value_counts(sort=False)
    parts = [f"eval protocol {p}, threshold policy {t}, checkpoint {c} ({n} run{'s' if n > 1 else ''})"
             for (p, t, c), n in sorted(combos.items())]
    return ["Test split; " + "; ".join(parts) + ". Mean ± sample std over seeds where several exist."]


def published_table(references: list[Reference], methods: list[str], style: TableStyle) -> Table | None:
    """Every main published row (no few-shot / budget variants) of `methods`, or None if there is none."""
    rows: dict[tuple, Row] = {}
    for ref in references:
        wanted = style.metrics is None or ref.metric in style.metrics
        if ref.method in methods and not ref.variant and wanted:
            row = rows.setdefault((ref.method, ref.backbone), Row(ref.method, ref.backbone, kind="paper"))
            row.cells.setdefault((ref.dataset, ref.metric), Cell(ref.value))
    if not rows:
        return None
    columns = order_columns({key for row in rows.values() for key in row.cells})
    table = Table(columns, list(rows.values()), style)
    table.notes = ["Published numbers of these methods (reports/references.yaml; first source per cell)."]
    return table


# --------------------------------------------------------------------------- names and cells


@functools.cache
def _published_names() -> dict[str, dict[str, str]]:
    return published_names()


def method_display_name(method: str) -> str:
    """A registered method's `display_name`, else the published name (references.yaml), else the id."""
    registered = method_display_names()
    return registered[method] if method in registered else _published_names()["methods"].get(method, method)


def backbone_display_name(backbone: str) -> str:
    """The display name a registered method gives the backbone, else the published one, else the id."""
    registered = backbone_display_names()
    return registered[backbone] if backbone in registered else _published_names()["backbones"].get(backbone, backbone)


def method_name(method: str, style: TableStyle) -> str:
    return method_display_name(method) if style.display_names else method


def backbone_name(backbone: str | None, style: TableStyle) -> str:
    if backbone is None:
        return "–"
    return backbone_display_name(backbone) if style.display_names else backbone


def dataset_name(dataset: str, style: TableStyle) -> str:
    return DATASET_NAMES.get(dataset, dataset) if style.display_names else dataset


def metric_name(metric: str, style: TableStyle) -> str:
    return METRIC_NAMES.get(metric, metric) if style.display_names else metric


def row_labels(table: Table, row: Row) -> list[str]:
    """The label cells of a row: [experiment,] method (with variant / paper / Δ marks), backbone."""
    if row.labels is not None:
        return row.labels
    method = method_name(row.method, table.style)
    if row.variant:
        method += f" ({row.variant})"
    if row.kind == "paper":
        method += " (paper)"
    elif row.kind == "delta":
        method = "Δ ours − paper"
    labels = [method, backbone_name(row.backbone, table.style)]
    return [row.experiment, *labels] if table.show_experiment else labels


def header_labels(table: Table) -> list[str]:
    if table.label_columns is not None:
        return table.label_columns
    return (["Experiment"] if table.show_experiment else []) + ["Method", "Backbone"]


def best_values(table: Table) -> dict[tuple[str, str], float]:
    """Per column, the highest displayed (rounded) mean over our and published rows (empty without bold)."""
    if not table.style.bold:
        return {}
    best: dict[tuple[str, str], float] = {}
    for row in table.rows:
        if row.kind == "delta":
            continue
        for key, cell in row.cells.items():
            value = round(cell.mean, table.decimals)
            best[key] = max(best.get(key, -math.inf), value)
    return best


TIE_MARK = "†"


def cell_parts(table: Table, row: Row, column: tuple[str, str]) -> tuple[str, str | None, bool] | None:
    """(mean text, ± text or None, is-best) for a cell, or None when it is empty.

    The ± text is the bootstrap half-width when the table shows intervals, else the seed std; the mean
    text ends in TIE_MARK when the cell is not significantly different from its column's best.
    """
    cell = row.cells.get(column)
    if cell is None:
        return None
    d = table.decimals
    if row.kind == "delta":
        return f"{cell.mean:+.{d}f}", None, False
    spread = cell.half_width if table.intervals and cell.half_width is not None else cell.std
    spread_text = None if spread is None else f"{spread:.{d}f}"
    best = best_values(table).get(column)
    is_best = best is not None and round(cell.mean, d) == best
    mark = TIE_MARK if cell.tied and not is_best else ""
    return f"{cell.mean:.{d}f}{mark}", spread_text, is_best


# --------------------------------------------------------------------------- renderers


def body_cells(table: Table, row: Row, missing: str, render: Callable[[str, str | None, bool], str]) -> list[str]:
    """One rendered cell per column of `row`: `render(mean, spread, is_best)`, or `missing` where it has no value."""
    cells = []
    for column in table.columns:
        parts = cell_parts(table, row, column)
        cells.append(missing if parts is None else render(*parts))
    return cells


def _markdown_cell(mean: str, std: str | None, best: bool) -> str:
    text = mean if std is None else f"{mean} ± {std}"
    return f"**{text}**" if best else text


def _latex_cell(mean: str, std: str | None, best: bool) -> str:
    math_mean = mean.replace(TIE_MARK, r"^\dagger")
    if std is None:
        return rf"\textbf{{{mean}}}" if best else (f"${math_mean}$" if math_mean != mean else mean)
    return rf"$\mathbf{{{mean} \pm {std}}}$" if best else rf"${math_mean} \pm {std}$"


def to_markdown(table: Table) -> str:
    """A GitHub Markdown table, one column per (dataset, metric), then a blank line and the notes, if any.

    A column whose dataset is empty (one dataset per row, as in the run summary) is headed by its metric.
    """
    header = header_labels(table) + [
        " ".join(filter(None, (dataset_name(d, table.style), metric_name(m, table.style)))) for d, m in table.columns
    ]
    align = ["---"] * len(header_labels(table)) + ["---:"] * len(table.columns)
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in table.rows:
        lines.append("| " + " | ".join(row_labels(table, row) + body_cells(table, row, "–", _markdown_cell)) + " |")
    return "\n".join(lines + ([""] + table.notes if table.notes else [])) + "\n"


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                 "±": r"$\pm$", "Δ": r"$\Delta$", "−": "--", "–": "--", "≥": r"$\geq$", ">": r"$>$",
                 "τ": r"$\tau$", "†": r"$^\dagger$", "θ": r"$\theta$", "δ": r"$\delta$", "§": r"\S{}"}


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(table: Table) -> str:
    """A booktabs `table` environment: a dataset header row with cmidrules, then the metric row."""
    n_labels = len(header_labels(table))
    groups: list[tuple[str, int]] = []
    for dataset, _ in table.columns:
        if groups and groups[-1][0] == dataset:
            groups[-1] = (dataset, groups[-1][1] + 1)
        else:
            groups.append((dataset, 1))
    spec = "l" * n_labels + "".join("r" * width for _, width in groups)
    top = [""] * n_labels
    rules = []
    start = n_labels + 1
    for dataset, width in groups:
        top.append(rf"\multicolumn{{{width}}}{{c}}{{{latex_escape(dataset_name(dataset, table.style))}}}")
        rules.append(rf"\cmidrule(lr){{{start}-{start + width - 1}}}")
        start += width
    header = [latex_escape(h) for h in header_labels(table)]
    header += [latex_escape(metric_name(m, table.style)) for _, m in table.columns]
    lines = [
        r"\begin{table}[t]", r"\centering", r"\small",
        rf"\caption{{{latex_escape(' '.join(table.notes))}}}",
        rf"\begin{{tabular}}{{{spec}}}", r"\toprule",
        " & ".join(top) + r" \\", "".join(rules), " & ".join(header) + r" \\", r"\midrule",
    ]
    for row in table.rows:
        cells = body_cells(table, row, "--", _latex_cell)
        lines.append(" & ".join([latex_escape(x) for x in row_labels(table, row)] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def to_csv(table: Table) -> str:
    """Numbers unformatted: label columns, kind, seeds, then `<dataset>.<metric>` and `.std` per column."""
    records = []
    for row in table.rows:
        record = {"experiment": row.experiment, "method": row.method, "backbone": row.backbone or "",
                  "variant": row.variant, "kind": row.kind,
                  "seeds": max((c.n for c in row.cells.values()), default=0) if row.kind == "ours" else ""}
        for dataset, metric in table.columns:
            cell = row.cells.get((dataset, metric))
            record[f"{dataset}.{metric}"] = "" if cell is None else round(cell.mean, 6)
            record[f"{dataset}.{metric}.std"] = "" if cell is None or cell.std is None else round(cell.std, 6)
        records.append(record)
    buffer = io.StringIO()
    pd.DataFrame(records).to_csv(buffer, index=False)
    return buffer.getvalue()
