"""wsolbench: a harness for benchmarking weakly supervised object localization."""

from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {
    "Localization": "wsolbench.contracts.method",
    "MethodOutput": "wsolbench.contracts.method",
    "WSOLMethod": "wsolbench.contracts.method",
    "create_method": "wsolbench.contracts.method",
    "maps_to_boxes": "wsolbench.metrics.to_boxes",
}
__all__ = list(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The public API loads on first use, so that torch-free parts (metrics, `score`) start fast."""
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'wsolbench' has no attribute {name!r}")
