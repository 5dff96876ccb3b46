"""Run directories and the results table that reports read.

Layout: `<output_dir>/<experiment>/<dataset>/<method>-<regime>-seed<k>/` holding
`config.yaml`, `log.jsonl`, `checkpoints/{last,best}.pt` (written by wsolbench.engine.checkpoint),
`metrics.json`, `curves.csv`, and on box datasets `per_image.npz` (wsolbench.metrics.per_image).
Nothing here imports torch.

Guarantees: every file is written atomically (temp file in the same folder, then rename), so a
crash never leaves half a file; a run directory is held by one writer at a time through an
exclusive lock file holding the writer's host and pid (a second writer gets RunLockedError naming
both; only a dead process's lock on the same host is taken over).

`metrics.json` schema::

    {"experiment", "dataset", "method", "backbone", "regime", "seed", "trainable_params",
     "results": [{"split": "test", "eval_protocol": "wsolevaluation",
                  "threshold_policy": "oracle-test", "checkpoint": "last",
                  "metrics": {"maxboxaccv2": 66.7, ...}, "thresholds": {...}}]}

`load_results` flattens it into one row per (run, result entry, metric).
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from filelock import FileLock, Timeout

from wsolbench.atomic import atomic_write_text
from wsolbench.config import migrate_saved
from wsolbench.errors import BadFileError, WsolbenchError

RUN_KEYS = ("experiment", "dataset", "method", "backbone", "regime", "seed", "trainable_params")
ENTRY_KEYS = ("split", "eval_protocol", "threshold_policy", "checkpoint")
RESULT_COLUMNS = ["run_dir", *RUN_KEYS, *ENTRY_KEYS, "metric", "value"]


class RunLockedError(WsolbenchError, RuntimeError):
    """Another process holds the run directory."""


def run_name(method: str, regime: str, seed: int) -> str:
    return f"{method}-{regime}-seed{seed}"


def run_path(output_dir: str | Path, experiment: str, dataset: str, method: str, regime: str, seed: int) -> Path:
    return Path(output_dir) / experiment / dataset / run_name(method, regime, seed)


class RunDir:
    """One run's folder. Use as a context manager to hold its lock while writing."""

    LOCK = ".lock"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock: FileLock | None = None

    # -- locking
    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock file `.lock` (it holds "<host> <pid>"), or raise RunLockedError naming the holder.

        Exclusion is an OS file lock (filelock), released by the kernel when its process dies. The
        host+pid record decides what an unlocked file means: left by a dead process of this host, it is
        taken over; from another host, it is never taken over (its pid cannot be checked from here, and
        a network file system may not share OS locks across hosts), so the error says how to remove it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        lock = FileLock(self.path / self.LOCK, timeout=0, fallback_to_soft=False, on_acquired=self._claim)
        try:
            lock.acquire()
        except Timeout:
            raise self._locked_error(*_lock_holder(lock.lock_file)) from None
        self._lock = lock

    def _claim(self, fd: int) -> None:
        """Under the OS lock: refuse a record of another host, of a live process or unreadable; else write ours."""
        text = os.pread(fd, 256, 0).decode(errors="replace")
        host, pid = _parse_record(text)
        mine = socket.gethostname()
        if text.strip() and (host != mine or (pid != os.getpid() and _pid_alive(pid))):
            raise self._locked_error(host, pid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{mine} {os.getpid()}\n".encode(), 0)

    def _locked_error(self, host: str, pid: int | None) -> RunLockedError:
        lock = self.path / self.LOCK
        if host == socket.gethostname():
            return RunLockedError(
                f"run directory {self.path} is in use by process {pid} on this host ({host}); "
                f"wait for it to finish (lock file {lock})"
            )
        holder = f"process {pid} on host {host}" if pid is not None else "a process its lock file does not name"
        return RunLockedError(
            f"run directory {self.path} is in use by {holder} (lock file {lock}); "
            f"wait for it to finish, or if that process is gone, remove the lock: rm {lock}"
        )

    def release(self) -> None:
        """Remove `.lock` and drop the OS lock (a waiting process then finds no file or a fresh one)."""
        if self._lock is not None:
            (self.path / self.LOCK).unlink(missing_ok=True)
            self._lock.release()
            self._lock = None

    # -- files
    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"

    def write_text(self, name: str, text: str) -> Path:
        target = self.path / name
        atomic_write_text(target, text)
        return target

    def write_json(self, name: str, data: Any) -> Path:
        return self.write_text(name, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def append_log(self, record: dict[str, Any]) -> None:
        """Append one JSON line to log.jsonl (a single write of a whole line)."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / "log.jsonl", "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")


def _lock_holder(lock: str | Path) -> tuple[str, int | None]:
    """(host, pid) written in a lock file; an unreadable one is reported as host '?'.

    The holder writes its record straight after taking the OS lock, so an empty file is re-read for up to 1 s.
    """
    text = ""
    for _ in range(10):
        try:
            text = Path(lock).read_text()
        except FileNotFoundError:
            return "?", None
        except OSError:
            break
        if text.strip():
            break
        time.sleep(0.1)
    return _parse_record(text)


def _parse_record(text: str) -> tuple[str, int | None]:
    """("<host>", pid) from a "<host> <pid>" record; ("?", None) for anything else (an empty file too)."""
    parts = text.split()
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return "?", None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as error:
        return error.errno == errno.EPERM
    return True


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """Run directories (folders holding metrics.json) at or below each path, sorted."""
    found: set[Path] = set()
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise FileNotFoundError(f"{path} does not exist")
        if (path / "metrics.json").is_file():
            found.add(path)
        found.update(p.parent for p in path.rglob("metrics.json"))
    return sorted(found)


def saved_config(run: str | Path) -> dict[str, Any] | None:
    """The run's config.yaml with keys saved under an old name read under the new one (config.migrate_saved);
    None when the run has no config.yaml; BadFileError naming the file when it is not valid YAML."""
    path = Path(run) / "config.yaml"
    if not path.is_file():
        return None
    try:
        return migrate_saved(yaml.safe_load(path.read_text()) or {})
    except yaml.YAMLError as error:
        raise BadFileError(f"{path}: not valid YAML: {error}") from None


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (run, result entry, metric), columns RESULT_COLUMNS; BadFileError names a malformed file.

    A metrics.json written before the rename holds the training regime under `protocol`; it is read as `regime`.
    """
    rows: list[dict[str, Any]] = []
    for run in find_runs(paths):
        path = run / "metrics.json"
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise BadFileError(f"{path}: not valid JSON: {error}") from None
        for key in ("method", "dataset", "results"):
            if key not in data:
                raise BadFileError(f"{path}: missing key {key!r}")
        data = migrate_saved(data)  # `protocol` (before the rename) is the regime
        base = {"run_dir": str(run), **{k: data.get(k) for k in RUN_KEYS}}
        for i, entry in enumerate(data["results"]):
            if "metrics" not in entry:
                raise BadFileError(f"{path}: results[{i}] has no 'metrics'")
            info = {k: entry.get(k) for k in ENTRY_KEYS}
            for metric, value in entry["metrics"].items():
                rows.append({**base, **info, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
