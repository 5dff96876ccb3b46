"""Reading what reports need from run directories: results (+ regime settings), curves, logs, samples.

Guarantees: `load_run_frame` is `wsolbench.results.load_results` plus the columns `shots`,
`trainable_blocks`, `own_policy` (from each run's config.yaml: regime.shots, regime.trainable_blocks,
eval.threshold_policy; config.yaml is required for few-shot and parameter-efficient runs, and
own_policy is None without it) and `variant` ('' for full runs, else a short label such as
'5-shot'). The artifact loaders read only the runs of a selected frame (see
tables.select_entries), leave out runs that lack the file (partial runs), and raise BadFileError
naming the file and line on malformed content.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from wsolbench.errors import BadFileError, WsolbenchError
from wsolbench.results import load_results, saved_config


class NoRunsError(WsolbenchError, ValueError):
    """The paths given to a report hold no finished run."""


RUN_COLUMNS = ["run_dir", "experiment", "dataset", "method", "backbone", "variant", "regime", "seed",
               "eval_protocol"]
LOG_FIELDS = ("step", "epoch", "lr", "images_per_s")
SAMPLE_KEYS = ("image_ids", "images", "maps", "pred_boxes", "gt_boxes", "threshold")


def load_run_frame(paths: list[str | Path]) -> pd.DataFrame:
    """load_results(paths) with shots / trainable_blocks / variant; NoRunsError when there are no runs."""
    frame = load_results(paths)
    if frame.empty:
        raise NoRunsError(f"no runs (folders with metrics.json) under {', '.join(map(str, paths))}")
    settings = {run: _regime_settings(Path(run), regime)
                for run, regime in frame[["run_dir", "regime"]].drop_duplicates().itertuples(index=False)}
    frame["shots"] = frame["run_dir"].map(lambda r: settings[r][0])
    frame["trainable_blocks"] = frame["run_dir"].map(lambda r: settings[r][1])
    frame["own_policy"] = frame["run_dir"].map(lambda r: settings[r][2])
    frame["variant"] = [_variant(r, s, b) for r, s, b in zip(frame["regime"], frame["shots"],
                                                             frame["trainable_blocks"], strict=False)]
    return frame


def _regime_settings(run: Path, regime: str) -> tuple[int, int, str | None]:
    config = saved_config(run)
    if config is None:
        if regime in (None, "full"):
            return 0, 0, None
        raise BadFileError(f"{run / 'config.yaml'}: missing; a {regime} run needs it to tell its setting apart")
    section = config.get("regime") or {}
    policy = (config.get("eval") or {}).get("threshold_policy")
    return int(section.get("shots", 0)), int(section.get("trainable_blocks", 0)), policy


def _variant(regime: str | None, shots: int, blocks: int) -> str:
    if regime == "few_shot":
        return f"{shots}-shot"
    if regime == "parameter_efficient":
        return f"{blocks} block{'' if blocks == 1 else 's'}"
    return "" if regime in (None, "full") else str(regime)


def runs_of(selected: pd.DataFrame) -> pd.DataFrame:
    """One row per run of a selected frame, with RUN_COLUMNS, in a stable order."""
    runs = selected.drop_duplicates("run_dir")[RUN_COLUMNS]
    return runs.sort_values(["dataset", "method", "backbone", "variant", "seed"], na_position="first")


def load_curves(selected: pd.DataFrame) -> pd.DataFrame:
    """curves.csv rows on the test split under each run's selected eval protocol, with RUN_COLUMNS
    (the oracle-test copy of the τ sweep where the file has a threshold_policy column)."""
    parts = []
    for run in runs_of(selected).itertuples(index=False):
        path = Path(run.run_dir) / "curves.csv"
        if not path.is_file():
            continue
        curves = pd.read_csv(path)
        missing = {"curve", "threshold", "value", "split", "eval_protocol"} - set(curves.columns)
        if missing:
            raise BadFileError(f"{path}: missing column(s) {', '.join(sorted(missing))}")
        curves = curves[(curves["split"] == "test") & (curves["eval_protocol"] == run.eval_protocol)]
        if "threshold_policy" in curves:  # the τ sweep is the same under every policy: keep one copy
            curves = curves[curves["threshold_policy"] == "oracle-test"].drop(columns=["threshold_policy"])
        parts.append(curves.drop(columns=["split", "eval_protocol"]).assign(**run._asdict()))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def load_logs(selected: pd.DataFrame) -> pd.DataFrame:
    """log.jsonl records (one row per line) with RUN_COLUMNS; loss-term columns are the numeric keys
    other than step / epoch / lr / images_per_s."""
    parts = []
    for run in runs_of(selected).itertuples(index=False):
        path = Path(run.run_dir) / "log.jsonl"
        if not path.is_file():
            continue
        records = []
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise BadFileError(f"{path}:{number}: not valid JSON: {error}") from None
            if not isinstance(record, dict) or "step" not in record:
                raise BadFileError(f"{path}:{number}: expected a JSON object with a 'step' key")
            records.append(record)
        if records:
            parts.append(pd.DataFrame(records).assign(**run._asdict()))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def loss_terms(logs: pd.DataFrame) -> list[str]:
    """The loss-term columns of load_logs' frame, total 'loss' first (validation metrics the engine logs
    as `val_<metric>` are not loss terms)."""
    terms = [c for c in logs.columns if c not in (*LOG_FIELDS, *RUN_COLUMNS) and not c.startswith("val_")
             and pd.api.types.is_numeric_dtype(logs[c])]
    return sorted(terms, key=lambda t: (t != "loss", t))


def load_samples(selected: pd.DataFrame) -> list[tuple[dict[str, Any], dict[str, np.ndarray]]]:
    """(run info, samples.npz arrays) for the lowest seed of each (dataset, method, backbone, variant)."""
    found = []
    for run in runs_of(selected).drop_duplicates(["experiment", "dataset", "method", "backbone", "variant"]
                                                 ).itertuples(index=False):
        path = Path(run.run_dir) / "samples.npz"
        if not path.is_file():
            continue
        with np.load(path, allow_pickle=False) as data:
            missing = [k for k in SAMPLE_KEYS if k not in data.files]
            if missing:
                raise BadFileError(f"{path}: missing array(s) {', '.join(missing)}")
            arrays = {k: data[k] for k in SAMPLE_KEYS}
        n = len(arrays["image_ids"])
        if arrays["images"].shape[0] != n or arrays["maps"].shape[0] != n or arrays["images"].ndim != 4:
            raise BadFileError(f"{path}: images (N,S,S,3) and maps (N,S,S) must have one entry per image id")
        found.append((run._asdict(), arrays))
    return found
