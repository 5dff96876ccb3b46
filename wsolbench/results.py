"""Run directories and the results table that reports read.

Layout (DESIGN.md): `<output_dir>/<experiment>/<dataset>/<method>-<protocol>-seed<k>/` holding
`config.yaml`, `log.jsonl`, `checkpoints/{last,best}.pt`, `metrics.json`, `curves.csv`, and on box
datasets `per_image.npz` (wsolbench.metrics.per_image).

Guarantees: every file is written atomically (temp file in the same folder, then rename), so a
crash never leaves half a file; a run directory is held by one writer at a time through an
exclusive lock file holding the writer's host and pid (a second writer gets RunLockedError naming
both; only a dead process's lock on the same host is taken over).

`metrics.json` schema::

    {"experiment", "dataset", "method", "backbone", "protocol", "seed", "trainable_params",
     "results": [{"split": "test", "eval_protocol": "wsolevaluation",
                  "threshold_policy": "oracle-test", "checkpoint": "last",
                  "metrics": {"maxboxaccv2": 66.7, ...}, "thresholds": {...}}]}

`load_results` flattens it into one row per (run, result entry, metric).
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from wsolbench.data import atomic_write_text
from wsolbench.errors import WsolbenchError

RUN_KEYS = ("experiment", "dataset", "method", "backbone", "protocol", "seed", "trainable_params")
ENTRY_KEYS = ("split", "eval_protocol", "threshold_policy", "checkpoint")
RESULT_COLUMNS = ["run_dir", *RUN_KEYS, *ENTRY_KEYS, "metric", "value"]


class RunLockedError(WsolbenchError, RuntimeError):
    """Another process holds the run directory."""


def run_name(method: str, protocol: str, seed: int) -> str:
    return f"{method}-{protocol}-seed{seed}"


def run_path(output_dir: str | Path, experiment: str, dataset: str, method: str, protocol: str, seed: int) -> Path:
    return Path(output_dir) / experiment / dataset / run_name(method, protocol, seed)


class RunDir:
    """One run's folder. Use as a context manager to hold its lock while writing."""

    LOCK = ".lock"

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock_fd: int | None = None

    # -- locking
    def __enter__(self) -> RunDir:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        """Take the lock file `.lock` (it holds "<host> <pid>"), or raise RunLockedError naming the holder.

        A lock left by a dead process of this host is taken over; a lock from another host is never
        taken over (its pid cannot be checked from here), so the error says how to remove it.
        """
        self.path.mkdir(parents=True, exist_ok=True)
        lock = self.path / self.LOCK
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        except FileExistsError:
            host, pid = _lock_holder(lock)
            if host == socket.gethostname() and pid is not None and not _pid_alive(pid):
                _remove_stale_lock(lock, (host, pid))
                return self.acquire()
            if host == socket.gethostname():
                raise RunLockedError(
                    f"run directory {self.path} is in use by process {pid} on this host ({host}); "
                    f"wait for it to finish (lock file {lock})"
                ) from None
            holder = f"process {pid} on host {host}" if pid is not None else "a process its lock file does not name"
            raise RunLockedError(
                f"run directory {self.path} is in use by {holder} (lock file {lock}); "
                f"wait for it to finish, or if that process is gone, remove the lock: rm {lock}"
            ) from None
        os.write(fd, f"{socket.gethostname()} {os.getpid()}\n".encode())
        self._lock_fd = fd

    def release(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None
            (self.path / self.LOCK).unlink(missing_ok=True)

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

    def save_checkpoint(self, name: str, state: dict[str, Any]) -> Path:
        """torch.save to checkpoints/<name> through a temp file and a rename."""
        self.checkpoints.mkdir(parents=True, exist_ok=True)
        target = self.checkpoints / name
        tmp = target.with_name(f".{target.name}.tmp")
        try:
            torch.save(state, tmp)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return target


def _lock_holder(lock: Path) -> tuple[str, int | None]:
    """(host, pid) written in a lock file; an unreadable one is reported as host '?'.

    A lock file is created empty and written straight after, so an empty one is re-read for up to 1 s.
    """
    for _ in range(10):
        try:
            parts = lock.read_text().split()
        except FileNotFoundError:
            return "?", None
        except OSError:
            break
        if parts:
            break
        time.sleep(0.1)
    if len(parts) == 2 and parts[1].isdigit():
        return parts[0], int(parts[1])
    return "?", None


def _remove_stale_lock(lock: Path, stale: tuple[str, int]) -> None:
    """Unlink `lock` if it still names `stale`, under an exclusive flock of its folder, so that of two
    processes taking over the same stale lock, the second cannot remove the lock the first just made."""
    folder = os.open(lock.parent, os.O_RDONLY)
    try:
        fcntl.flock(folder, fcntl.LOCK_EX)
        if _lock_holder(lock) == stale:
            lock.unlink(missing_ok=True)
    finally:
        os.close(folder)  # releases the flock


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


def load_results(paths: Iterable[str | Path]) -> pd.DataFrame:
    """One row per (run, result entry, metric), columns RESULT_COLUMNS; raises on a malformed file."""
    rows: list[dict[str, Any]] = []
    for run in find_runs(paths):
        path = run / "metrics.json"
        try:
            data = json.loads(path.read_text())
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: not valid JSON: {error}") from None
        for key in ("method", "dataset", "results"):
            if key not in data:
                raise ValueError(f"{path}: missing key {key!r}")
        base = {"run_dir": str(run), **{k: data.get(k) for k in RUN_KEYS}}
        for i, entry in enumerate(data["results"]):
            if "metrics" not in entry:
                raise ValueError(f"{path}: results[{i}] has no 'metrics'")
            info = {k: entry.get(k) for k in ENTRY_KEYS}
            for metric, value in entry["metrics"].items():
                rows.append({**base, **info, "metric": metric, "value": value})
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
