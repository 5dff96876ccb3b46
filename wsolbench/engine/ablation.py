"""Ablation grids through the engine: parse a grid, plan its cells, run them, write the manifest.

A study is a cartesian grid over config keys (`--grid key=v1,v2`, values parsed like `--set`). Each
cell runs as its own experiment `<experiment>/<cell label>`, so its run directories are
`<output_dir>/<experiment>/<cell label>/<dataset>/<method>-<regime>-seed<k>/` (the engine's
run_path with a nested experiment name), e.g. `runs/ablation-sat-synthetic/use_area_loss=false,
use_norm_loss=true/synthetic/sat-full-seed0/`. Every such run directory gets `ablation.json`
({experiment, study, cell, overrides}) and `<output_dir>/<experiment>/ablation.json` is the
manifest listing every study, cell, override and run (wsolbench.ablation_manifest), which
`bench.py report` renders (wsolbench.reports.ablation).

Default for SAT (its three losses, docs/methods.md): batch-area loss on/off × normalization loss on/off
(`method.hparams.use_area_loss` / `use_norm_loss`), and an `area_threshold` sweep. The engine's
embedded default run layer (wsolbench/engine/default_run.yaml, tiny backbones) applies to the
datasets its plan names (synthetic); other datasets use the papers' recipes (docs/methods.md).
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from wsolbench.ablation_manifest import MANIFEST, short_keys
from wsolbench.atomic import atomic_write_text
from wsolbench.config import ConfigError, parse_set
from wsolbench.engine.distributed import is_main_process
from wsolbench.engine.runner import default_run, execute, plan_runs
from wsolbench.results import RunDir


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
    experiment = experiment or f"ablation-{method}-{dataset}"
    embedded = default_run()
    base = embedded["base"] if dataset in embedded["plan"]["datasets"] else None
    planned = []
    for study in studies:
        for cell in cells(study):
            configs = plan_runs([method], [dataset], regimes=None, seeds=list(seeds), user=user,
                                user_source=user_source, overrides=[*overrides, *cell["overrides"]],
                                experiment=f"{experiment}/{cell['label']}", base=base)
            planned.append((study, cell, configs))
    return experiment, planned


def run_ablation(method: str, dataset: str, studies: list[Study], overrides: list[str] = (),
                 experiment: str | None = None, seeds: list[int] = (0,), user: dict[str, Any] | None = None,
                 user_source: str = "", resume: bool = False) -> tuple[Path, list[Path]]:
    """Plan every cell and run them in one engine call (config and dataset errors surface before any
    training), then write the manifests.

    Returns the experiment manifest's path and every cell's run directories, in plan order. Under
    torchrun every rank runs the cells; only rank 0 writes.
    """
    experiment, planned = plan_ablation(method, dataset, studies, overrides, experiment, seeds, user, user_source)
    root = Path(planned[0][2][0].output_dir) / experiment
    main_rank = is_main_process()
    manifest: dict[str, Any] = {"method": method, "dataset": dataset, "experiment": experiment,
                                "overrides": list(overrides), "studies": []}
    run_paths = execute([c for _, _, configs in planned for c in configs], resume=resume)
    all_paths = iter(run_paths)
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
    return path, run_paths
