"""Registries of methods, datasets and reports.

Built-in plugins register themselves with the decorators below when their package
(`wsolbench.methods`, `wsolbench.datasets`, `wsolbench.reports`) is imported; third-party packages
add theirs through the entry-point groups `wsolbench.methods` and `wsolbench.datasets`, whose
entry points name a module (or object) that registers on import.
"""

from __future__ import annotations

import difflib
import importlib
import pkgutil
from collections.abc import Callable
from importlib import metadata
from typing import Any, Generic, TypeVar

from wsolbench.errors import WsolbenchError

T = TypeVar("T")


class RegistryError(WsolbenchError, KeyError):
    """An unknown or duplicate name; the message names the registry and the closest valid names."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it plain
        return str(self.args[0])


def closest(name: str, choices: list[str] | tuple[str, ...]) -> str:
    """' (did you mean X?)' for the closest of `choices`, or '' when nothing is close.

    Case is ignored when comparing ('SAT' suggests 'sat'); the suggestion is spelled as in `choices`.
    """
    lowered = {choice.lower(): choice for choice in choices}
    match = difflib.get_close_matches(name.lower(), list(lowered), n=1, cutoff=0.5)
    return f" (did you mean {lowered[match[0]]!r}?)" if match else ""


def unknown_name(kind: str, name: str, valid: list[str] | tuple[str, ...]) -> str:
    """"unknown <kind> 'name' (did you mean ...?); valid: a, b": the message for a name not in `valid`."""
    return f"unknown {kind} {name!r}{closest(name, valid)}; valid: {', '.join(valid)}"


class Registry(Generic[T]):
    """A name → object map filled by a decorator; lookups load the plugins first."""

    def __init__(self, kind: str, package: str, entry_point_group: str | None) -> None:
        self.kind = kind
        self.package = package
        self.entry_point_group = entry_point_group
        self._items: dict[str, T] = {}
        self._origins: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        def decorator(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise RegistryError(f"{self.kind} {name!r} is registered twice")
            self._items[name] = obj
            self._origins[name] = getattr(obj, "__module__", "?")
            return obj

        return decorator

    def load_plugins(self) -> None:
        """Import every module of the built-in plugin package, then the entry points (once)."""
        if self._loaded:
            return
        self._loaded = True
        package = importlib.import_module(self.package)
        for info in pkgutil.iter_modules(package.__path__):
            if not info.name.startswith("_"):
                importlib.import_module(f"{self.package}.{info.name}")
        if self.entry_point_group:
            for entry_point in metadata.entry_points(group=self.entry_point_group):
                entry_point.load()

    def get(self, name: str) -> T:
        self.load_plugins()
        try:
            return self._items[name]
        except KeyError:
            raise RegistryError(unknown_name(self.kind, name, sorted(self._items))) from None

    def origin(self, name: str) -> str:
        """The module that registered `name` (built-in plugin or third-party package)."""
        self.get(name)
        return self._origins[name]

    def names(self) -> list[str]:
        self.load_plugins()
        return sorted(self._items)

    def __contains__(self, name: Any) -> bool:
        self.load_plugins()
        return name in self._items


METHODS: Registry[Any] = Registry("method", "wsolbench.methods", "wsolbench.methods")
DATASETS: Registry[Any] = Registry("dataset", "wsolbench.datasets", "wsolbench.datasets")
REPORTS: Registry[Any] = Registry("report", "wsolbench.reports", None)


def method_display_names() -> dict[str, str]:
    """Every registered method → its class's `display_name` (the registered name when it declares none)."""
    return {name: getattr(METHODS.get(name), "display_name", "") or name for name in METHODS.names()}


def backbone_display_names() -> dict[str, str]:
    """Backbone id → display name, from the `backbone_names` of every registered method."""
    names: dict[str, str] = {}
    for name in METHODS.names():
        names.update(getattr(METHODS.get(name), "backbone_names", {}) or {})
    return names


register_method = METHODS.register
register_dataset = DATASETS.register
register_report = REPORTS.register
