"""Command line: `python bench.py <command>`. Thin: parse, call the library, print."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wsolbench.config import ConfigError
from wsolbench.data import MetadataError
from wsolbench.registry import DATASETS, METHODS, REPORTS, RegistryError

USER_ERRORS = (ConfigError, MetadataError, RegistryError, FileNotFoundError, ValueError)


class FriendlyGroup(click.Group):
    """Turns expected user errors into one clear line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except USER_ERRORS as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """wsolbench: benchmark weakly supervised object localization methods under one protocol."""


@main.command("list")
def list_command() -> None:
    """List methods, datasets, backbones and protocols."""
    from wsolbench.method import PROTOCOLS

    click.echo("methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        backbones = ", ".join(getattr(cls, "backbones", ())) or "-"
        click.echo(f"  {name:<14} backbones: {backbones}   [{METHODS.origin(name)}]")
    click.echo("datasets:")
    for name in DATASETS.names():
        adapter = DATASETS.get(name)
        click.echo(f"  {name:<14} {adapter.num_classes:>5} classes  {adapter.description}")
    click.echo("training protocols: " + ", ".join(PROTOCOLS))
    try:
        from wsolbench.metrics.protocols import EVAL_PROTOCOLS, THRESHOLD_POLICIES
    except ImportError:  # metrics layer not installed in this build
        pass
    else:
        click.echo("evaluation protocols: " + ", ".join(EVAL_PROTOCOLS))
        click.echo("threshold policies: " + ", ".join(THRESHOLD_POLICIES))
    if REPORTS.names():
        click.echo("reports: " + ", ".join(REPORTS.names()))


@main.command()
@click.argument("dataset")
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Folder holding the official archive, extracted (see README).")
@click.option("--data-root", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="Where prepared datasets live; the dataset goes to <data-root>/<dataset>.")
def prepare(dataset: str, source: Path | None, data_root: Path) -> None:
    """Convert an official dataset layout into wsolbench metadata (synthetic: generate it)."""
    adapter = DATASETS.get(dataset)
    if adapter.needs_source and source is None:
        raise click.UsageError(f"{dataset} needs --source: {adapter.source_hint}")
    prepared = adapter.prepare(source, data_root / dataset)
    counts = ", ".join(
        f"{split} {len(prepared.split(split))}" for split in ("train", "val", "test") if prepared.has_split(split)
    )
    click.echo(f"prepared {dataset} at {prepared.root} ({counts} images)")
