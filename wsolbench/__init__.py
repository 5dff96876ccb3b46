"""wsolbench: a harness for benchmarking weakly supervised object localization."""

from __future__ import annotations

from typing import Any

__all__ = ["Localization", "MethodOutput", "WSOLMethod", "create_method"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """The method API loads on first use, so that torch-free parts (metrics, `score`) start fast."""
    if name in __all__:
        from wsolbench import method

        return getattr(method, name)
    raise AttributeError(f"module 'wsolbench' has no attribute {name!r}")
