"""A self-contained HTML report: inline CSS, tables as HTML, figures embedded as base64 PNG.

Guarantees: the page references no external file or URL (it opens offline from anywhere), carries
no script, and every text is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass, field
from pathlib import Path

from .tables import Table, cell_parts, dataset_name, header_labels, metric_name, row_labels

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1200px; color: #222; padding: 0 1em; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ddd; padding-bottom: .2em; }
table { border-collapse: collapse; margin: 1em 0; font-size: .9em; }
th, td { padding: .3em .7em; border-bottom: 1px solid #e4e4e4; text-align: right; white-space: nowrap; }
th.label, td.label { text-align: left; }
thead th { border-bottom: 2px solid #444; } th.group { text-align: center; border-bottom: 1px solid #999; }
div.scroll { overflow-x: auto; }
tr.paper td { color: #555; font-style: italic; } tr.delta td { color: #555; font-size: .85em; }
p.note { color: #555; font-size: .85em; max-width: 100%; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: .85em; }
"""

@dataclass
class Section:
    """A titled part of the page: paragraphs, tables and figures, in that order."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)


def table_html(table: Table) -> str:
    """The table as HTML (bold best values, paper / Δ rows styled), followed by its notes."""
    esc = html.escape
    head = "".join(f'<th class="label">{esc(h)}</th>' for h in header_labels(table))
    datasets: list[list] = []
    for dataset, _ in table.columns:
        if datasets and datasets[-1][0] == dataset:
            datasets[-1][1] += 1
        else:
            datasets.append([dataset, 1])
    group = "".join(f'<th class="group" colspan="{n}">{esc(dataset_name(d, table.style))}</th>'
                    for d, n in datasets)
    metrics = "".join(f"<th>{esc(metric_name(m, table.style))}</th>" for _, m in table.columns)
    blank = f'<th colspan="{len(header_labels(table))}"></th>'
    lines = ['<div class="scroll"><table>', f"<thead><tr>{blank}{group}</tr><tr>{head}{metrics}</tr></thead>",
             "<tbody>"]
    for row in table.rows:
        cells = "".join(f'<td class="label">{esc(x)}</td>' for x in row_labels(table, row))
        for column in table.columns:
            parts = cell_parts(table, row, column)
            if parts is None:
                cells += "<td>–</td>"
                continue
            mean, std, best = parts
            text = esc(mean if std is None else f"{mean} ± {std}")
            cells += f"<td><b>{text}</b></td>" if best else f"<td>{text}</td>"
        lines.append(f'<tr class="{row.kind}">{cells}</tr>')
    lines.append("</tbody></table></div>")
    lines += [f'<p class="note">{esc(note)}</p>' for note in table.notes]
    return "\n".join(lines)


def figure_html(png: Path) -> str:
    data = base64.b64encode(png.read_bytes()).decode("ascii")
    name = html.escape(png.stem)
    return (f'<figure><img alt="{name}" src="data:image/png;base64,{data}">'
            f"<figcaption>{name} (PDF beside it: {name}.pdf)</figcaption></figure>")


def render(title: str, sections: list[Section]) -> str:
    """The whole page as one string."""
    body = [f"<h1>{html.escape(title)}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{html.escape(p)}</p>" for p in section.paragraphs]
        body += [table_html(t) for t in section.tables]
        body += [figure_html(f) for f in section.figures]
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
