"""Training checkpoints: what `--resume` needs to continue bit-identically on CPU.

A checkpoint is a plain dict that `torch.load(..., weights_only=True)` reads back (so published-
model loaders such as `WSOLMethod.load_checkpoint` accept it too): `model` (the unwrapped state
dict), `optimizer`, `scaler`, `epoch` (completed epochs), `step_in_epoch` (optimizer steps done in
the current epoch), `global_step`, `rng` (python / numpy / torch / cuda states of every rank),
`best` (the val-selected best so far) and `config` (the resolved config as a dict).
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsolbench.atomic import atomic_write
from wsolbench.errors import BadFileError, MissingFileError
from wsolbench.results import RunDir


def save_checkpoint(run: RunDir, name: str, state: dict[str, Any]) -> Path:
    """torch.save `state` to the run's `checkpoints/<name>` through `atomic_write`: a failed save keeps
    the previous file and leaves no temp file."""
    return atomic_write(run.checkpoints / name, lambda handle: torch.save(state, handle))


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices); cudnn deterministic, no benchmark."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False


def rng_state() -> dict[str, Any]:
    """This process's RNG states, as tensors and ints only (weights_only-loadable)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state: dict[str, Any] = {
        "python": [version, list(internal), gauss],
        "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what `rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def checkpoint_config(path: Path) -> dict[str, Any] | None:
    """The resolved config our checkpoints carry (their `config` entry); None for any other file.

    The file is memory-mapped, so its tensors are not read here (the weight loader reads them next)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # noqa: BLE001 - not a torch file of ours; the weight loader reports what it is
        return None
    config = state.get("config") if isinstance(state, dict) else None
    return config if isinstance(config, dict) else None


def load_training_state(path: Path) -> dict[str, Any]:
    """Read a checkpoint written by the trainer; error names the file when it is not one."""
    if not path.is_file():
        raise MissingFileError(f"cannot resume: {path} does not exist (start without --resume)")
    state = torch.load(path, map_location="cpu", weights_only=True)
    required = ("model", "optimizer", "epoch", "step_in_epoch", "global_step", "rng")
    missing = [k for k in required if k not in state]
    if missing:
        raise BadFileError(f"{path}: not a wsolbench training checkpoint (missing {', '.join(missing)})")
    return state
