"""`bench.py report`: one experiment's tables, figures and index.html in one call.

Writes into `out` (default `<runs_dir>/report/`): table.md (printed by the CLI), table.tex, table.csv,
index.html and every figure as PNG + PDF; with an ablation manifest in `runs_dir` (wsolbench.ablation_manifest),
also ablation.md / .csv / .tex and its bar chart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from wsolbench.ablation_manifest import find_manifest, load_manifest
from wsolbench.atomic import atomic_write_text

from . import ablation, html, plots, thresholds, uncertainty
from .references import load_references
from .runs import load_curves, load_logs, load_run_frame, load_samples
from .tables import build_table, get_style, published_table, select_entries, to_csv, to_latex, to_markdown


@dataclass
class Report:
    markdown: str
    out: Path
    files: list[Path] = field(default_factory=list)


def build_report(runs_dir: str | Path, style: str = "paper", with_paper: bool = False,
                 out: str | Path | None = None, protocol: str | None = None,
                 threshold_policy: str | None = None, intervals: bool = False) -> Report:
    """Tables, figures and index.html for every run under `runs_dir` (see the module docstring).

    Cells not significantly different from their column's best are marked (reports.uncertainty);
    `intervals` shows ± the 95 % bootstrap half-width instead of the seed std.
    """
    runs_dir = Path(runs_dir)
    out = Path(out) if out is not None else runs_dir / "report"
    table_style = get_style(style)
    frame = load_run_frame([runs_dir])
    selected = select_entries(frame, protocol, threshold_policy)
    references = load_references() if with_paper else None
    table = build_table(selected, table_style, references)
    uncertainty.annotate(table, selected, intervals)
    tables = [table]
    if references is not None:
        published = published_table(references, sorted(set(selected["method"])), table_style)
        if published is not None:
            tables.append(published)
        if not any(row.kind == "paper" for row in table.rows):
            table.notes.append("No published numbers for these datasets and methods; see the table below.")
    honesty = thresholds.threshold_table(selected, frame)
    markdown = "\n".join(to_markdown(t) for t in tables + ([honesty] if honesty is not None else []))
    out.mkdir(parents=True, exist_ok=True)
    files = [out / "table.md", out / "table.tex", out / "table.csv"]
    atomic_write_text(files[0], markdown)
    atomic_write_text(files[1], "\n".join(to_latex(t) for t in tables))
    atomic_write_text(files[2], to_csv(table))

    curves = load_curves(selected)
    sections = [
        html.Section("Results", tables=tables),
        html.Section("Localization curves", figures=plots.boxacc_curves(curves, out)
                     + plots.pxprec_pxrec_curves(curves, out)),
        html.Section("Threshold choice: test (oracle) vs val", tables=[honesty] if honesty is not None else [],
                     figures=thresholds.threshold_curves(selected, curves, out)),
        html.Section("Qualitative examples", figures=plots.qualitative_grid(load_samples(selected), out)),
        html.Section("Training", figures=plots.training_curves(load_logs(selected), out)),
        html.Section("Few-shot and parameter-efficient", figures=plots.few_shot_curves(selected, out)
                     + plots.parameter_efficient_curves(selected, out)),
    ]
    manifest = find_manifest(runs_dir)
    if manifest is not None:
        result = ablation.write_outputs(load_manifest(manifest), out, table_style)
        files += result.files
        sections.append(html.Section("Ablation", paragraphs=[f"Manifest: {manifest}"],
                                     tables=result.tables, figures=result.figures))
        markdown += "\n" + result.markdown
    sections = [s for s in sections if s.tables or s.figures]
    for section in sections:
        files += [f for png in section.figures for f in (png, png.with_suffix(".pdf"))]
    index = out / "index.html"
    atomic_write_text(index, html.render(f"wsolbench report: {runs_dir.name}", sections))
    files.append(index)
    return Report(markdown, out, files)
