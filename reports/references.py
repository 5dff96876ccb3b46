"""Published numbers (reports/references.yaml) as flat, checked entries.

Guarantees: every entry has a non-empty `source` and `protocol`, a known dataset and metric key, and a
float value in [0, 100]; entries keep the file's priority order (a method's own paper first), so
`lookup` returns the number a reproduction should be compared against.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wsolbench.errors import BadFileError

REFERENCES_FILE = Path(__file__).with_name("references.yaml")
DATASETS = ("cub", "ilsvrc", "openimages")
METRICS = ("top1_loc", "top5_loc", "gt_known_loc", "maxboxaccv2", "top1_cls", "top5_cls", "pxap")


@dataclass(frozen=True)
class Reference:
    method: str
    backbone: str | None
    dataset: str
    metric: str
    value: float
    source: str
    protocol: str
    variant: str = ""


def load_references(path: str | Path = REFERENCES_FILE) -> list[Reference]:
    """All published numbers in `path`, in file order; BadFileError names the group/row on bad input."""
    path = Path(path)
    data = _read(path)
    if not isinstance(data, dict) or not isinstance(data.get("groups"), list):
        raise BadFileError(f"{path}: expected a mapping with a list under 'groups'")
    entries: list[Reference] = []
    for g, group in enumerate(data["groups"]):
        entries.extend(_group_entries(group, f"{path}: groups[{g}]"))
    return entries


def published_names(path: str | Path = REFERENCES_FILE) -> dict[str, dict[str, str]]:
    """{"methods": {...}, "backbones": {...}}: display names of published methods and backbones that no
    plugin implements (the file's `names` section); BadFileError when it is not two string mappings."""
    path = Path(path)
    names = (_read(path) or {}).get("names") or {}
    out = {}
    for kind in ("methods", "backbones"):
        table = names.get(kind) or {}
        if not isinstance(table, dict) or not all(isinstance(v, str) for v in table.values()):
            raise BadFileError(f"{path}: names.{kind} must map ids to display names")
        out[kind] = {str(k): v for k, v in table.items()}
    return out


def _read(path: Path) -> Any:
    """The parsed YAML of a references file; BadFileError naming the file when it is not valid YAML."""
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as error:
        raise BadFileError(f"{path}: not valid YAML: {error}") from None


def _group_entries(group: Any, where: str) -> list[Reference]:
    if not isinstance(group, dict):
        raise BadFileError(f"{where}: expected a mapping")
    for key in ("source", "protocol", "columns", "rows"):
        if not group.get(key):
            raise BadFileError(f"{where}: missing or empty {key!r}")
    keys = group.get("key_columns", ["method", "backbone"])
    if keys not in (["method", "backbone"], ["method", "backbone", "variant"]):
        raise BadFileError(f"{where}: key_columns must be [method, backbone] or [method, backbone, variant]")
    columns = [_column(c, f"{where}.columns") for c in group["columns"]]
    entries = []
    for r, row in enumerate(group["rows"]):
        if not isinstance(row, list) or len(row) != len(keys) + len(columns):
            raise BadFileError(
                f"{where}.rows[{r}]: expected {len(keys)} keys and {len(columns)} values, got {row!r}")
        named = dict(zip(keys, row, strict=False))
        for (dataset, metric), value in zip(columns, row[len(keys):], strict=False):
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 100:
                raise BadFileError(f"{where}.rows[{r}]: {dataset}.{metric} must be a percentage, got {value!r}")
            entries.append(Reference(
                method=str(named["method"]), backbone=named["backbone"], dataset=dataset, metric=metric,
                value=float(value), source=str(group["source"]), protocol=str(group["protocol"]),
                variant=str(named.get("variant", "")),
            ))
    return entries


def _column(text: Any, where: str) -> tuple[str, str]:
    dataset, _, metric = str(text).partition(".")
    if dataset not in DATASETS or metric not in METRICS:
        raise BadFileError(
            f"{where}: {text!r} is not <dataset>.<metric> with dataset in {DATASETS} and metric in {METRICS}"
        )
    return dataset, metric


def lookup(entries: list[Reference], method: str, dataset: str, backbone: str | None) -> dict[str, Reference]:
    """metric → the first published number for (method, backbone, dataset), main results only (no variant)."""
    found: dict[str, Reference] = {}
    for entry in entries:
        if (entry.method, entry.backbone, entry.dataset) == (method, backbone, dataset) and not entry.variant:
            found.setdefault(entry.metric, entry)
    return found


def headline(entries: list[Reference], method: str) -> Reference | None:
    """The method's first main-result entry (its own paper's headline row), or None when it has none."""
    for entry in entries:
        if entry.method == method and not entry.variant:
            return entry
    return None
