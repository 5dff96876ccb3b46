"""Command line: `python bench.py <command>`. Thin: parse, call the library, print."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from wsolbench.errors import WsolbenchError
from wsolbench.registry import DATASETS, METHODS, REPORTS


class FriendlyGroup(click.Group):
    """Turns user errors (`WsolbenchError`) into one clear line on stderr and exit status 2; any other
    exception is a bug and keeps its traceback."""

    def invoke(self, ctx: click.Context):  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except WsolbenchError as error:
            click.echo(f"error: {error}", err=True)
            sys.exit(2)


@click.group(cls=FriendlyGroup, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """wsolbench: benchmark weakly supervised object localization methods under one protocol."""


@main.command("list")
def list_command() -> None:
    """List methods, datasets, backbones, training regimes and evaluation protocols."""
    from wsolbench.config import REGIMES
    from wsolbench.metrics.protocols import EVAL_PROTOCOLS, THRESHOLD_POLICIES

    click.echo("methods:")
    for name in METHODS.names():
        cls = METHODS.get(name)
        backbones = ", ".join(getattr(cls, "backbones", ())) or "-"
        click.echo(f"  {name:<14} backbones: {backbones}   [{METHODS.origin(name)}]")
    click.echo("datasets:")
    for name in DATASETS.names():
        adapter = DATASETS.get(name)
        click.echo(f"  {name:<14} {adapter.num_classes:>5} classes  {adapter.description}")
    click.echo("training regimes: " + ", ".join(REGIMES))
    click.echo("evaluation protocols: " + ", ".join(EVAL_PROTOCOLS))
    click.echo("threshold policies: " + ", ".join(THRESHOLD_POLICIES))
    click.echo("report styles: " + ", ".join(REPORTS.names()))


@main.command()
@click.argument("dataset")
@click.option("--source", type=click.Path(path_type=Path), default=None,
              help="Folder holding the official archive, extracted (see README).")
@click.option("--data-root", type=click.Path(path_type=Path), default=Path("data"), show_default=True,
              help="Where prepared datasets live; the dataset goes to <data-root>/<dataset>.")
def prepare(dataset: str, source: Path | None, data_root: Path) -> None:
    """Convert an official dataset layout into wsolbench metadata (synthetic: generate it)."""
    import warnings

    _check_names("DATASET", "dataset", [dataset], DATASETS.names())
    adapter = DATASETS.get(dataset)
    if adapter.needs_source and source is None:
        raise click.UsageError(f"{dataset} needs --source: {adapter.source_hint}")
    with warnings.catch_warnings(record=True) as caught:  # printed below as plain lines, once each
        warnings.simplefilter("always")
        prepared = adapter.prepare(source, data_root / dataset)
    for message in dict.fromkeys(str(w.message) for w in caught if w.category is UserWarning):
        click.echo(f"NOTE: {message}")
    for w in caught:
        if w.category is not UserWarning:
            warnings.showwarning(w.message, w.category, w.filename, w.lineno)
    counts = ", ".join(
        f"{split} {len(prepared.split(split))}" for split in ("train", "val", "test") if prepared.has_split(split)
    )
    click.echo(f"prepared {dataset} at {prepared.root} ({counts} images)")


def _csv(value: str | None) -> list[str] | None:
    return [v.strip() for v in value.split(",") if v.strip()] if value else None


def _seeds(value: str | None) -> list[int] | None:
    try:
        return [int(s) for s in _csv(value)] if value else None
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {value!r}") from None


def _check_names(flag: str, kind: str, names: list[str], valid: list[str] | tuple[str, ...]) -> None:
    """UsageError naming `flag` for the first of `names` not in `valid`, with the closest valid name."""
    from wsolbench.registry import unknown_name

    for name in names:
        if name not in valid:
            raise click.BadParameter(unknown_name(kind, name, valid), param_hint=flag)


def _user_layer(config_file: Path | None) -> tuple[dict, str]:
    from wsolbench.config import load_yaml

    return (load_yaml(config_file), str(config_file)) if config_file else ({}, "")


def _print_metrics(path: Path) -> None:
    import json

    data = json.loads((path / "metrics.json").read_text())
    for entry in data["results"]:
        values = ", ".join(f"{k} {v:.2f}" for k, v in entry["metrics"].items())
        click.echo(f"  {entry['split']} [{entry['eval_protocol']}/{entry['threshold_policy']}]: {values}")
    for note in data.get("notes", []):
        click.echo(f"NOTE: {note}")


config_option = click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
                             help="User config YAML (keys of the experiment config).")
set_option = click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
                          help="Override one config key, e.g. --set train.epochs=2 (repeatable).")
dry_run_option = click.option("--dry-run", is_flag=True,
                              help="Validate the plan and print each resolved config (YAML) with its cost; "
                                   "prepare, create and download nothing.")


def _renamed_flag(old: str, new: str):
    """A hidden option that refuses the flag `old` with one line naming `new`."""

    def refuse(ctx: click.Context, param: click.Parameter, value: object) -> None:
        if value:
            raise WsolbenchError(f"{old} is now {new} (the training regime); evaluation protocols are "
                                 "`evaluate --protocol` and the config key eval.protocol")

    return click.option(old, hidden=True, expose_value=False, callback=refuse, help=f"Renamed: {new}.")


def _print_dry_run(configs: list) -> None:
    from wsolbench.engine.dry_run import describe_plan

    click.echo(describe_plan(configs), nl=False)


@main.command()
@click.option("--method", required=True, help="Method name (see `list`).")
@click.option("--dataset", default="synthetic", show_default=True)
@click.option("--regime", default=None, help="Training regime: full, parameter_efficient, few_shot.")
@_renamed_flag("--protocol", "--regime")
@click.option("--seed", type=int, default=None)
@config_option
@set_option
@click.option("--experiment", default=None, help="Experiment name (the folder under output_dir).")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from checkpoints/last.pt.")
@dry_run_option
def train(method: str, dataset: str, regime: str | None, seed: int | None, config_file: Path | None,
          overrides: tuple[str, ...], experiment: str | None, resume: bool, dry_run: bool) -> None:
    """Train and evaluate one method on one dataset; prints the run directory and its metrics."""
    from wsolbench.config import CHOICES
    from wsolbench.engine.distributed import is_main_process
    from wsolbench.engine.runner import execute, plan_runs
    from wsolbench.reports.summary import write_summary

    _check_names("--method", "method", [method], METHODS.names())
    _check_names("--dataset", "dataset", [dataset], DATASETS.names())
    _check_names("--regime", "training regime", [regime] if regime else [], CHOICES["regime.name"])
    user, source = _user_layer(config_file)
    configs = plan_runs([method], [dataset], regimes=[regime] if regime else None,
                        seeds=None if seed is None else [seed], user=user, user_source=source,
                        overrides=list(overrides), experiment=experiment)
    if dry_run:
        return _print_dry_run(configs)
    paths = execute(configs, resume=resume)
    if is_main_process():
        write_summary(paths)
    for path in paths:
        if is_main_process():
            click.echo(f"run: {path}")
            _print_metrics(path)


@main.command()
@click.option("--method", default=None, help="Method name (see `list`) [the checkpoint's, for ours].")
@click.option("--dataset", default=None, help="Dataset [the checkpoint's, for ours; else synthetic].")
@click.option("--checkpoint", required=True, type=click.Path(path_type=Path),
              help="Ours (checkpoints/*.pt) or an official SAT / TS-CAM / SCM / wsolevaluation file.")
@click.option("--protocol", default=None,
              help="Evaluation protocol: wsolevaluation, sat, ts_cam, scm; also applies that repository's "
                   "test-script defaults for the dataset (thresholds, ten-crop); --config/--set override them.")
@click.option("--threshold-policy", default=None, help="oracle-test, fixed (with eval.thresholds) or val.")
@config_option
@set_option
@click.option("--output", type=click.Path(path_type=Path), default=None, help="Folder for metrics.json etc.")
def evaluate(method: str | None, dataset: str | None, checkpoint: Path, protocol: str | None,
             threshold_policy: str | None, config_file: Path | None, overrides: tuple[str, ...],
             output: Path | None) -> None:
    """Score a trained or published checkpoint under any evaluation protocol.

    Our checkpoints carry their resolved config: the method is rebuilt from it, and --method,
    --dataset, --config and --set given on top override it (each change is printed).
    """
    from wsolbench.config import CHOICES, resolve, resolve_saved
    from wsolbench.engine.checkpoint import checkpoint_config
    from wsolbench.engine.distributed import is_main_process
    from wsolbench.engine.runner import evaluate_checkpoint
    from wsolbench.metrics.protocols import EVAL_PROTOCOLS, official_evaluator

    _check_names("--method", "method", [method] if method else [], METHODS.names())
    _check_names("--dataset", "dataset", [dataset] if dataset else [], DATASETS.names())
    _check_names("--protocol", "evaluation protocol", [protocol] if protocol else [], EVAL_PROTOCOLS)
    _check_names("--threshold-policy", "threshold policy", [threshold_policy] if threshold_policy else [],
                 CHOICES["eval.threshold_policy"])
    extra = [("eval.protocol", protocol)] if protocol else []
    extra += [("eval.threshold_policy", threshold_policy)] if threshold_policy else []
    user, source = _user_layer(config_file)
    saved = checkpoint_config(checkpoint) if checkpoint.is_file() else None
    data_name = dataset or (saved or {}).get("dataset", {}).get("name") or "synthetic"
    official = {"eval": official_evaluator(protocol, data_name).eval_layer(protocol)} if protocol else None
    if saved is not None:
        named = [("method.name", method)] if method else []
        named += [("dataset.name", dataset)] if dataset else []
        config, changes = resolve_saved(saved, source=str(checkpoint), base=official, user=user, user_source=source,
                                        overrides=[*named, *overrides, *extra])
        click.echo(f"config: the one stored in {checkpoint}"
                   + (", with these overrides:" if changes else " (no overrides)"))
        for change in changes:
            click.echo(f"  {change}")
    else:
        if method is None:
            raise click.UsageError(f"{checkpoint} carries no wsolbench config; name its --method")
        config = resolve(method=method, dataset=data_name, user=user, user_source=source,
                         overrides=[*overrides, *extra], base=official)
    if protocol and is_main_process():
        swept = f"thresholds arange(0, 1, {config.eval.cam_curve_interval})"
        fixed = f"thresholds {', '.join(map(str, config.eval.thresholds))} (policy fixed; oracle-test over {swept})"
        click.echo(f"protocol {protocol} on {data_name}: "
                   f"{fixed if config.eval.threshold_policy == 'fixed' else swept}, "
                   f"{'ten-crop' if config.eval.ten_crop else 'single-view'} classification")
    path = evaluate_checkpoint(config, checkpoint, output)
    if is_main_process():
        click.echo(f"evaluation: {path}")
        _print_metrics(path)


@main.command()
@click.option("--methods", default=None, help="Comma-separated methods (default: all registered).")
@click.option("--dataset", "--datasets", "datasets", default=None, help="Comma-separated datasets.")
@click.option("--regimes", default=None, help="Comma-separated training regimes (default: full).")
@_renamed_flag("--protocols", "--regimes")
@click.option("--seeds", default=None, help="Comma-separated seeds (default: 0).")
@config_option
@set_option
@click.option("--experiment", default=None, help="Experiment name (the folder under output_dir).")
@click.option("--resume", is_flag=True, help="Continue interrupted runs (finished ones of the same config are reused).")
@dry_run_option
def run(methods: str | None, datasets: str | None, regimes: str | None, seeds: str | None,
        config_file: Path | None, overrides: tuple[str, ...], experiment: str | None, resume: bool,
        dry_run: bool) -> None:
    """Plan → train → evaluate → table for every method × dataset × training regime × seed.

    With no --methods and no --dataset this is the embedded default benchmark: every method on the
    synthetic dataset with tiny backbones (wsolbench/engine/default_run.yaml), minutes on a CPU.
    """
    import time

    from wsolbench.config import CHOICES
    from wsolbench.engine.distributed import is_main_process
    from wsolbench.engine.runner import default_run, execute, plan_runs
    from wsolbench.reports.summary import summary_markdown, summary_notes, write_summary

    base = None
    method_list, dataset_list = _csv(methods), _csv(datasets)
    plan: dict = {}
    if method_list is None and dataset_list is None:
        embedded = default_run()
        plan, base = embedded["plan"], embedded["base"]
    method_list = method_list or plan.get("methods") or METHODS.names()
    dataset_list = dataset_list or plan.get("datasets") or ["synthetic"]
    _check_names("--methods", "method", method_list, METHODS.names())
    _check_names("--dataset", "dataset", dataset_list, DATASETS.names())
    _check_names("--regimes", "training regime", _csv(regimes) or [], CHOICES["regime.name"])
    user, source = _user_layer(config_file)
    configs = plan_runs(method_list, dataset_list,
                        regimes=_csv(regimes) or plan.get("regimes") or ["full"],
                        seeds=_seeds(seeds) or plan.get("seeds") or [0], user=user, user_source=source,
                        overrides=list(overrides), experiment=experiment or plan.get("experiment"), base=base)
    if dry_run:
        return _print_dry_run(configs)
    started = time.perf_counter()
    paths = execute(configs, resume=resume)
    if is_main_process():
        for frame in write_summary(paths).values():
            click.echo(summary_markdown(frame))
        for note in summary_notes(paths):
            click.echo(note)
        click.echo(f"{len(paths)} run(s) in {time.perf_counter() - started:.0f} s; "
                   f"table written to {paths[0].parents[1] / 'summary.md'} (+ .csv)")


@main.command()
@click.argument("runs_dir", type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--style", type=click.Choice(["paper", "plain"]), default="paper", show_default=True,
              help="paper: classic WSOL columns, display names, best in bold; plain: every metric, raw keys.")
@click.option("--with-paper", is_flag=True, help="Add the published numbers (reports/references.yaml) and Δ.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Output folder [RUNS_DIR/report].")
@click.option("--protocol", default=None, help="Eval protocol entry to tabulate [each run's own].")
@click.option("--threshold-policy", default=None, help="Threshold policy entry to tabulate [each run's own].")
@click.option("--intervals", is_flag=True,
              help="Show ± the 95 % bootstrap half-width (test images and seeds) instead of the seed std.")
def report(runs_dir: Path, style: str, with_paper: bool, out: Path | None, protocol: str | None,
           threshold_policy: str | None, intervals: bool) -> None:
    """Tables (Markdown printed; .tex/.csv/.md), figures (PNG+PDF) and index.html for RUNS_DIR."""
    from wsolbench.reports.report import build_report

    result = build_report(runs_dir, style=style, with_paper=with_paper, out=out, protocol=protocol,
                          threshold_policy=threshold_policy, intervals=intervals)
    click.echo(result.markdown)
    click.echo(f"report written to {result.out / 'index.html'} ({len(result.files)} files)")


@main.command()
@click.option("--method", default="sat", show_default=True, help="Method to ablate.")
@click.option("--dataset", default="synthetic", show_default=True)
@click.option("--grid", "grids", multiple=True, metavar="KEY=V1,V2",
              help="Config key and values (repeatable; cartesian product). Default for sat: the loss grid "
                   "(use_area_loss × use_norm_loss) and an area_threshold sweep.")
@click.option("--seeds", default="0", show_default=True, help="Comma-separated seeds per cell.")
@config_option
@set_option
@click.option("--experiment", default=None, help="Experiment name [ablation-<method>-<dataset>].")
@click.option("--resume", is_flag=True, help="Continue interrupted cells (finished ones are reused).")
@dry_run_option
def ablate(method: str, dataset: str, grids: tuple[str, ...], seeds: str, config_file: Path | None,
           overrides: tuple[str, ...], experiment: str | None, resume: bool, dry_run: bool) -> None:
    """Run an ablation grid through the engine, then write its table (md/csv/tex) and bar chart."""
    from wsolbench.ablation_manifest import load_manifest
    from wsolbench.engine import ablation
    from wsolbench.engine.distributed import is_main_process
    from wsolbench.reports.ablation import write_outputs
    from wsolbench.reports.summary import write_summary
    from wsolbench.reports.tables import PAPER

    _check_names("--method", "method", [method], METHODS.names())
    _check_names("--dataset", "dataset", [dataset], DATASETS.names())
    studies = [ablation.parse_grid(list(grids))] if grids else ablation.default_studies(method)
    user, source = _user_layer(config_file)
    if dry_run:
        _, planned = ablation.plan_ablation(method, dataset, studies, overrides=list(overrides),
                                            experiment=experiment, seeds=_seeds(seeds), user=user,
                                            user_source=source)
        return _print_dry_run([c for _, _, configs in planned for c in configs])
    manifest, paths = ablation.run_ablation(method, dataset, studies, overrides=list(overrides),
                                            experiment=experiment, seeds=_seeds(seeds), user=user,
                                            user_source=source, resume=resume)
    if is_main_process():
        write_summary(paths)
        out = manifest.parent / "report"
        result = write_outputs(load_manifest(manifest), out, PAPER)
        click.echo(result.markdown)
        click.echo(f"ablation written to {out} (manifest {manifest})")


@main.command()
@click.option("--scoremaps", required=True, type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="Folder of <image_id>.npy maps (wsolevaluation layout), 224x224, values in [0, 1].")
@click.option("--metadata", "metadata_dir", required=True,
              type=click.Path(path_type=Path, file_okay=False, exists=True),
              help="A metadata split folder, e.g. datasets/wsolevaluation/metadata/CUB/test.")
@click.option("--metric", type=click.Choice(["maxboxacc", "maxboxaccv2", "pxap"]), default="maxboxaccv2",
              show_default=True)
@click.option("--cam-curve-interval", type=float, default=0.001, show_default=True,
              help="Threshold step Δ: thresholds arange(0, 1, Δ).")
@click.option("--iou-thresholds", default="30,50,70", show_default=True, help="Comma-separated δ in percent.")
@click.option("--mask-root", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Folder the mask paths of localization.txt are relative to (pxap).")
@click.option("--output", required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--workers", type=int, default=None, help="Processes (default: all cores).")
@click.option("--per-image", "per_image", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="Also write every image's IoUs per threshold to this .npz (box metrics; docs/per_image.md).")
def score(scoremaps: Path, metadata_dir: Path, metric: str, cam_curve_interval: float, iou_thresholds: str,
          mask_root: Path | None, output: Path, workers: int | None, per_image: Path | None) -> None:
    """Score saved maps against a metadata split (oracle-test threshold sweep) and write OUT.json."""
    from wsolbench.metrics.score import score_saved_maps, write_score

    try:
        deltas = [int(d) for d in iou_thresholds.split(",")]
    except ValueError:
        raise click.BadParameter(f"expected integers like 30,50,70, got {iou_thresholds!r}",
                                 param_hint="--iou-thresholds") from None
    record = score_saved_maps(scoremaps, metadata_dir, metric, cam_curve_interval, deltas, mask_root, workers,
                       per_image_output=per_image)
    write_score(record, output)
    per_iou = ", ".join(f"IoU{d} {v:.2f}" for d, v in record["per_iou"].items())
    click.echo(f"{metric} = {record['value']:.2f}" + (f" ({per_iou})" if per_iou else "")
               + f" over {record['num_images']} images -> {output}"
               + (f" (per-image results -> {per_image})" if per_image else ""))


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(path_type=Path, exists=True, file_okay=False))
@click.option("--threshold-policy", type=click.Choice(["oracle-test", "val"]), default=None,
              help="Score every run under this τ policy [each run's own eval.threshold_policy].")
@click.option("--resamples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Bootstrap resamples of the test images.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the resampling.")
def compare(runs: tuple[Path, ...], threshold_policy: str | None, resamples: int, seed: int) -> None:
    """Paired comparison of RUN_A with RUN_B (and further runs): Δ per metric, 95 % interval, p-value.

    Each argument is a run folder; several seeds of one configuration (folders differing only in
    -seed<k>, e.g. a shell glob) form one side, and the test then combines seeds and images.
    """
    from wsolbench.stats.runs import arms_from_paths, compare_arms, format_comparison

    arms = arms_from_paths(list(runs), threshold_policy)
    click.echo(format_comparison(compare_arms(arms, resamples=resamples, seed=seed)), nl=False)
