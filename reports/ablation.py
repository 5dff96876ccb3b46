"""Ablation grids through the engine, and their tables and bar charts.

A study is a cartesian grid over config keys (`--grid key=v1,v2`, values parsed like `--set`). Each
cell runs as its own experiment `<experiment>/<cell label>`, so its run directories are
`<output_dir>/<experiment>/<cell label>/<dataset>/<method>-<protocol>-seed<k>/` (the engine's
run_path with a nested experiment name), e.g. `runs/ablation-sat-synthetic/use_area_loss=false,
use_norm_loss=true/synthetic/sat-full-seed0/`. Every such run directory gets `ablation.json`
({experiment, study, cell, overrides}) and `<output_dir>/<experiment>/ablation.json` is the
manifest listing every study, cell, override and run (paths relative to the manifest), which
`bench.py report` picks up.

Default for SAT (its three losses, docs/methods.md): batch-area loss on/off × normalization loss on/off
(`method.hparams.use_area_loss` / `use_norm_loss`), and an `area_threshold` sweep. The engine's
embedded default run layer (wsolbench/engine/default_run.yaml, tiny backbones) applies to the
datasets its plan names (synthetic); other datasets use the papers' recipes (docs/methods.md).
"""

from __future__ import annotations

import io
import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from wsolbench.atomic import atomic_write_text
from wsolbench.config import ConfigError, parse_set
from wsolbench.engine.distributed import is_main_process
from wsolbench.errors import BadFileError
from wsolbench.results import RunDir

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

MANIFEST = "ablation.json"
BAR_METRICS = ("maxboxaccv2", "pxap", "gt_known_loc", "top1_loc", "top1_cls")


@dataclass
class Study:
    """A named grid: dotted config key → raw values (as typed after `key=`)."""

    name: str
    grid: dict[str, list[str]]


DEFAULT_STUDIES: dict[str, list[Study]] = {
    "sat": [
        Study("loss terms", {"method.hparams.use_area_loss": ["true", "false"],
                             "method.hparams.use_norm_loss": ["true", "false"]}),
        Study("area threshold", {"method.hparams.area_threshold": ["0.15", "0.25", "0.35", "0.45"]}),
    ],
}


def parse_grid(specs: list[str]) -> Study:
    """`["key=v1,v2", ...]` → one Study over their cartesian product; ConfigError on bad input."""
    grid: dict[str, list[str]] = {}
    for spec in specs:
        key, sep, raw = spec.partition("=")
        values = [v.strip() for v in raw.split(",") if v.strip()]
        if not sep or not key.strip() or not values:
            raise ConfigError(f"--grid {spec!r}: expected key=v1,v2,... "
                              "e.g. method.hparams.area_threshold=0.2,0.3")
        if key.strip() in grid:
            raise ConfigError(f"--grid {spec!r}: key {key.strip()!r} given twice")
        for value in values:
            parse_set(f"{key.strip()}={value}")  # same parsing as --set; errors name the key
        grid[key.strip()] = values
    return Study("grid", grid)


def default_studies(method: str) -> list[Study]:
    if method not in DEFAULT_STUDIES:
        raise ConfigError(f"no default ablation for method {method!r} (defaults exist for "
                          f"{', '.join(DEFAULT_STUDIES)}); pass --grid key=v1,v2 ...")
    return DEFAULT_STUDIES[method]


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's last part, or the whole key where two keys share a last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=False)}


def cells(study: Study) -> list[dict[str, Any]]:
    """The grid's cells in order: {label, overrides ['key=value', ...], values {key: value}}."""
    keys = list(study.grid)
    names = short_keys(keys)
    out = []
    for combo in itertools.product(*(study.grid[k] for k in keys)):
        values = dict(zip(keys, combo, strict=False))
        label = ",".join(f"{names[k]}={v}" for k, v in values.items())
        out.append({"label": re.sub(r"[^A-Za-z0-9._=,+-]", "_", label),
                    "overrides": [f"{k}={v}" for k, v in values.items()], "values": values})
    return out


def plan_ablation(method: str, dataset: str, studies: list[Study], overrides: list[str] = (),
                  experiment: str | None = None, seeds: list[int] = (0,), user: dict[str, Any] | None = None,
                  user_source: str = "") -> tuple[str, list[tuple[Study, dict[str, Any], list[Any]]]]:
    """The experiment name and, per study and cell, its validated configs (nothing runs or is written)."""
    from wsolbench.engine.runner import default_run, plan_runs

    experiment = experiment or f"ablation-{method}-{dataset}"
    embedded = default_run()
    base = embedded["base"] if dataset in embedded["plan"]["datasets"] else None
    planned = []
    for study in studies:
        for cell in cells(study):
            configs = plan_runs([method], [dataset], protocols=None, seeds=list(seeds), user=user,
                                user_source=user_source, overrides=[*overrides, *cell["overrides"]],
                                experiment=f"{experiment}/{cell['label']}", base=base)
            planned.append((study, cell, configs))
    return experiment, planned


def run_ablation(method: str, dataset: str, studies: list[Study], overrides: list[str] = (),
                 experiment: str | None = None, seeds: list[int] = (0,), user: dict[str, Any] | None = None,
                 user_source: str = "", resume: bool = False) -> Path:
    """Plan every cell and run them in one engine call (config and dataset errors surface before any
    training), then write the manifests.

    Returns the experiment manifest's path. Under torchrun every rank runs the cells; only rank 0 writes.
    """
    from wsolbench.engine.runner import execute

    experiment, planned = plan_ablation(method, dataset, studies, overrides, experiment, seeds, user, user_source)
    root = Path(planned[0][2][0].output_dir) / experiment
    main_rank = is_main_process()
    manifest: dict[str, Any] = {"method": method, "dataset": dataset, "experiment": experiment,
                                "overrides": list(overrides), "studies": []}
    all_paths = iter(execute([c for _, _, configs in planned for c in configs], resume=resume))
    for study, cell, configs in planned:
        paths = [next(all_paths) for _ in configs]
        for path in paths if main_rank else []:
            RunDir(path).write_json(MANIFEST, {"experiment": experiment, "study": study.name,
                                               "cell": cell["label"], "overrides": cell["overrides"]})
        if not manifest["studies"] or manifest["studies"][-1]["name"] != study.name:
            manifest["studies"].append({"name": study.name, "keys": list(study.grid), "cells": []})
        manifest["studies"][-1]["cells"].append(
            {**cell, "runs": [str(Path(p).relative_to(root)) for p in paths]})
    path = root / MANIFEST
    if main_rank:
        atomic_write_text(path, json.dumps(manifest, indent=2) + "\n")
    return path


def find_manifest(runs_dir: Path) -> Path | None:
    path = Path(runs_dir) / MANIFEST
    return path if path.is_file() else None


def load_manifest(path: Path) -> dict[str, Any]:
    """The manifest with run paths made absolute; BadFileError names the missing key."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise BadFileError(f"{path}: not valid JSON: {error}") from None
    for key in ("method", "dataset", "experiment", "studies"):
        if key not in data:
            raise BadFileError(f"{path}: missing key {key!r}")
    for s, study in enumerate(data["studies"]):
        for c, cell in enumerate(study.get("cells", [])):
            for key in ("label", "values", "runs"):
                if key not in cell:
                    raise BadFileError(f"{path}: studies[{s}].cells[{c}] has no {key!r}")
            cell["runs"] = [str(Path(path).parent / r) for r in cell["runs"]]
    return data


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
        row_of = {id(cell): row for cell, row in zip(study["cells"], table.rows, strict=True)}
        metric = next((m for m in BAR_METRICS if any(c[1] == m for c in table.columns)), None)
        if metric is None:
            continue
        column = next(c for c in table.columns if c[1] == metric)
        present = [r for r in table.rows if column in r.cells]
        names = ["\n".join(f"{k}={v}" for k, v in zip(table.label_columns, r.labels, strict=True))
                 for r in present]
        cells_with_runs = [c for c in study["cells"] if column in row_of[id(c)].cells]
        widths = [half_width(c["runs"], metric) for c in cells_with_runs]
        errors = [w if w is not None else r.cells[column].std for w, r in zip(widths, present, strict=True)]
        bars = "95 % bootstrap interval" if all(w is not None for w in widths) else "seed std"
        figures.append(plots.bar_chart(
            names, [r.cells[column].mean for r in present], errors, f"{metric_name(metric, style)} (%)",
            f"{title}: {study['name']} ({', '.join(table.label_columns)}); bars ± {bars}", out, f"ablation_{k}"))
    files += [f for png in figures for f in (png, png.with_suffix(".pdf"))]
    return AblationOutput(markdown, tables, figures, files)
