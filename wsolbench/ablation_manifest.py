"""The ablation manifest `<output_dir>/<experiment>/ablation.json`: what the engine writes after an
ablation (wsolbench.engine.ablation) and what reports read (wsolbench.reports.ablation).

Schema: {method, dataset, experiment, overrides, studies: [{name, keys, cells: [{label, overrides,
values, runs}]}]}, run paths relative to the manifest. Each run folder of a cell also holds an
`ablation.json` ({experiment, study, cell, overrides}). Nothing here imports torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from wsolbench.errors import BadFileError

MANIFEST = "ablation.json"


def short_keys(keys: list[str]) -> dict[str, str]:
    """Each dotted key's last part, or the whole key where two keys share a last part."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last, strict=False)}


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
