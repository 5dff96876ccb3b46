"""The summary of a batch of runs that `bench.py run` prints and writes as `<experiment>/summary.{md,csv}`.

One row per run, in the order given: method, dataset, regime, seed, `eval` (eval protocol /
threshold policy of the entry shown) and the test metrics. The entry that represents a run is the
one `tables.select_entries` picks for every table (the run's own threshold policy). Values are
rounded to 2 decimals; where the run has per-image results, each metric column `X` of the frame is
followed by `X ±`, the half-width of its 95 % bootstrap interval over the test images
(wsolbench.stats), which the Markdown shows as `value ± half-width` with a note.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from wsolbench.atomic import atomic_write_text
from wsolbench.stats.runs import run_intervals

from .runs import load_run_frame
from .tables import Cell, Row, Table, TableStyle, select_entries, to_markdown

SUMMARY_COLUMNS = {
    "maxboxaccv2": "MaxBoxAccV2",
    "maxboxacc": "MaxBoxAcc",
    "gt_known_loc": "GT-known",
    "top1_loc": "Top-1 Loc",
    "top1_cls": "Top-1 Cls",
    "pxap": "PxAP",
}
LABEL_COLUMNS = ["method", "dataset", "regime", "seed", "eval"]
SUMMARY_STYLE = TableStyle("summary", tuple(SUMMARY_COLUMNS), display_names=False, bold=False)
INTERVAL_NOTE = ("± : half-width of the 95 % bootstrap interval over the test images (1,000 resamples; "
                 "τ re-selected in each resample under oracle-test, held under val).")


def summary_frame(paths: list[Path]) -> pd.DataFrame:
    """One row per run of `paths` (in that order): LABEL_COLUMNS, then each metric and its `X ±` column."""
    selected = select_entries(load_run_frame(paths))
    by_run = dict(iter(selected.groupby("run_dir", sort=False)))
    rows = []
    for path in paths:
        entries = by_run[str(Path(path))]
        first = entries.iloc[0]
        row = {"method": first["method"], "dataset": first["dataset"], "regime": first["regime"],
               "seed": first["seed"], "eval": f"{first['eval_protocol']}/{first['threshold_policy']}"}
        values = dict(zip(entries["metric"], entries["value"], strict=True))
        policy = None if pd.isna(first["own_policy"]) else first["own_policy"]
        intervals = run_intervals(Path(path), policy)
        for key, column in SUMMARY_COLUMNS.items():
            if key in values:
                row[column] = round(float(values[key]), 2)
                if intervals is not None and key in intervals:
                    row[f"{column} ±"] = round(intervals[key].half_width, 2)
        rows.append(row)
    return pd.DataFrame(rows)


def summary_markdown(frame: pd.DataFrame) -> str:
    """The summary frame through the tables writer: a column `X ±` is shown inside `X` as `value ± half-width`."""
    metrics = [c for c in frame.columns if c not in LABEL_COLUMNS and not str(c).endswith(" ±")]
    rows = []
    for record in frame.to_dict("records"):
        row = Row(record["method"], None, labels=[str(record[c]) for c in LABEL_COLUMNS])
        for column in metrics:
            half = record.get(f"{column} ±")
            if not pd.isna(record[column]):
                row.cells[("", column)] = Cell(record[column], half_width=None if half is None or pd.isna(half)
                                               else half)
        rows.append(row)
    has_intervals = len(metrics) + len(LABEL_COLUMNS) < len(frame.columns)
    table = Table([("", c) for c in metrics], rows, SUMMARY_STYLE, label_columns=LABEL_COLUMNS, intervals=True,
                  notes=[INTERVAL_NOTE] if has_intervals else [])
    return to_markdown(table)


def summary_notes(paths: list[Path]) -> list[str]:
    """The distinct notes of the runs' metrics.json ("notes"), in run order, each naming its runs' count."""
    notes: dict[str, int] = {}
    for path in paths:
        for note in json.loads((Path(path) / "metrics.json").read_text()).get("notes", []):
            notes[note] = notes.get(note, 0) + 1
    return [f"NOTE ({count} of {len(paths)} runs): {note}" for note, count in notes.items()]


def write_summary(paths: list[Path]) -> dict[Path, pd.DataFrame]:
    """Write `<output_dir>/<experiment>/summary.md` (table, then notes) and `.csv` for each experiment
    among `paths`; returns each experiment folder's summary frame."""
    by_experiment: dict[Path, list[Path]] = {}
    for path in paths:
        by_experiment.setdefault(Path(path).parents[1], []).append(Path(path))
    written = {}
    for folder, runs in by_experiment.items():
        frame = summary_frame(runs)
        text = summary_markdown(frame) + "".join(f"\n{note}\n" for note in summary_notes(runs))
        atomic_write_text(folder / "summary.csv", frame.to_csv(index=False))
        atomic_write_text(folder / "summary.md", text)
        written[folder] = frame
    return written
