"""Atomic file writes: a reader sees the old file or the whole new one, never a part.

Every file wsolbench writes (metadata, configs, metrics, checkpoints, samples) goes through
`atomic_write`: the content is written to a temp file in the target's folder, which is then renamed
over the target. A failed write removes the temp file and leaves the old target untouched. The new
file gets the mode a plain `open(path, "w")` would give it (0666 less the umask).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO


def current_umask() -> int:
    """The process umask: from /proc on Linux, else by setting it and straight back (not thread-safe)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Create `path` (and its folder) from what `write(handle)` writes to a binary handle; returns `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~current_umask())
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` as UTF-8, line endings unchanged, through `atomic_write`."""
    return atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
