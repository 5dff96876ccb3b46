"""Plan and execute runs: config → dataset + method → train → evaluate → run directory.

    configs = plan_runs(methods=["sat"], datasets=["synthetic"], regimes=["full"], seeds=[0])
    run_dirs = execute(configs, resume=False)

Each run writes `<output_dir>/<experiment>/<dataset>/<method>-<regime>-seed<k>/` (config.yaml,
log.jsonl, checkpoints/{last,best}.pt, metrics.json, curves.csv, samples.npz, per_image.npz; few_shot_ids.txt
under few_shot). Under torchrun every rank executes the same plan; only rank 0 writes. The summary
table of a batch of runs is wsolbench.reports.summary.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import yaml

from wsolbench.annotations import Metadata
from wsolbench.atomic import atomic_write
from wsolbench.config import (
    ConfigError,
    ExperimentConfig,
    Override,
    config_changes,
    dump,
    resolve,
    to_dict,
)
from wsolbench.contracts.method import WSOLMethod, create_method
from wsolbench.engine import distributed
from wsolbench.engine.checkpoint import save_checkpoint, seed_everything
from wsolbench.engine.distributed import DistInfo
from wsolbench.engine.evaluate import (
    accumulate,
    curves_frame,
    gather_per_image,
    qualitative_samples,
    result_entry,
    result_under_policy,
    selection_metric,
)
from wsolbench.engine.loaders import WSOLDataset, train_transform
from wsolbench.engine.regimes import count_trainable, per_class_subset, trainable_groups, training_images
from wsolbench.engine.train import Trainer, amp_dtype, micro_batch_size
from wsolbench.errors import MissingFileError, RunConflictError, WsolbenchError
from wsolbench.metrics.per_image import PER_IMAGE_FILE
from wsolbench.metrics.per_image import save as save_per_image
from wsolbench.prepared_dataset import PreparedDataset, open_dataset
from wsolbench.registry import DATASETS, METHODS
from wsolbench.results import RunDir, run_path, saved_config
from wsolbench.weights import fetch_pretrained

DEFAULT_RUN = Path(__file__).with_name("default_run.yaml")


# --------------------------------------------------------------------------- planning


def default_run() -> dict[str, Any]:
    """The embedded `bench.py run` plan: {"plan": {methods, datasets, ...}, "base": {...}}."""
    return yaml.safe_load(DEFAULT_RUN.read_text())


def _deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def plan_runs(
    methods: list[str],
    datasets: list[str],
    regimes: list[str] | None = ("full",),
    seeds: list[int] | None = (0,),
    user: dict[str, Any] | None = None,
    user_source: str = "",
    overrides: list[Override] = (),
    experiment: str | None = None,
    base: dict[str, Any] | None = None,
) -> list[ExperimentConfig]:
    """One validated config per (method × dataset × training regime × seed), resolved before any work.

    `base` is the embedded-defaults layer (see wsolbench.config.resolve); its optional key
    `per_method: {<method>: {...}}` adds a per-method layer on top of it. `regimes` / `seeds`
    None keep what the config layers say. Every config error surfaces here, before training.
    """
    configs = []
    base = dict(base or {})
    per_method = base.pop("per_method", None) or {}
    for method in methods:
        method_base = _deep_merge(base, per_method.get(method) or {})
        for dataset in datasets:
            for regime in regimes or [None]:
                for seed in seeds or [None]:
                    extra: list[Override] = [("regime.name", regime)] if regime is not None else []
                    extra += [("seed", seed)] if seed is not None else []
                    extra += [("experiment", str(experiment))] if experiment else []  # "2024" stays a string
                    configs.append(resolve(
                        method=method, dataset=dataset, user=user, user_source=user_source,
                        overrides=[*overrides, *extra], base=method_base or None,
                    ))
    return configs


# --------------------------------------------------------------------------- building blocks


def check_dataset(config: ExperimentConfig) -> None:
    """MissingFileError naming the `prepare` command when a dataset that needs a source is missing."""
    root = Path(config.dataset.data_root) / config.dataset.name
    adapter = DATASETS.get(config.dataset.name)
    if adapter.needs_source and not (root / "dataset.yaml").is_file():
        raise MissingFileError(
            f"dataset {config.dataset.name!r} is not prepared at {root}; run "
            f"`python bench.py prepare {config.dataset.name} --source <folder> "
            f"--data-root {config.dataset.data_root}` first ({adapter.source_hint})"
        )


def check_val_split(config: ExperimentConfig) -> None:
    """ConfigError, before any training, when `threshold_policy: val` meets a prepared dataset without val GT."""
    root = Path(config.dataset.data_root) / config.dataset.name
    if config.eval.threshold_policy != "val" or not (root / "dataset.yaml").is_file():
        return
    prepared = open_dataset(root)
    if not prepared.has_split("val") or prepared.split("val").kind == "labels":
        reason = DATASETS.get(config.dataset.name).missing_val_reason
        why = f" ({reason}; add them and prepare again)" if reason else ""
        raise ConfigError(f"eval.threshold_policy 'val' needs a val split with GT in {root}{why}; "
                         "use 'oracle-test' or 'fixed' with this dataset")


def preflight(config: ExperimentConfig, info: DistInfo) -> int:
    """The checks a run passes before any work (a val split when the threshold policy needs one, the batch
    split over grad_accum and processes, AMP on this device); returns the per-process micro-batch size."""
    check_val_split(config)
    micro = micro_batch_size(config, info)
    amp_dtype(config.train.amp, info.device)
    return micro


def ensure_dataset(config: ExperimentConfig, info: DistInfo) -> PreparedDataset:
    """The prepared dataset; datasets that need no source (synthetic) are prepared on first use."""
    check_dataset(config)
    root = Path(config.dataset.data_root) / config.dataset.name
    if not (root / "dataset.yaml").is_file():
        if info.is_main:
            DATASETS.get(config.dataset.name).prepare(None, root)
        distributed.barrier(info)
    return open_dataset(root)


def build_model(config: ExperimentConfig, num_classes: int, with_pretrained: bool = True) -> WSOLMethod:
    """The configured method; `method.pretrained` weights come from a local file (see wsolbench.weights).

    `with_pretrained=False` skips them (the caller loads a full checkpoint next).
    """
    m = config.method
    pretrained = fetch_pretrained(m.name, m.backbone, m.pretrained) if with_pretrained else False
    return create_method(
        m.name, num_classes=num_classes, backbone=m.backbone, pretrained=pretrained,
        img_size=m.img_size or config.dataset.crop_size, drop_path_rate=m.drop_path_rate,
        backbone_kwargs=m.backbone_kwargs, **m.hparams,
    )


def val_metadata(prepared: PreparedDataset, config: ExperimentConfig) -> Metadata | None:
    """train-fullsup (split val), limited to dataset.val_per_class per class; None without GT."""
    if not prepared.has_split("val"):
        return None
    metadata = prepared.split("val")
    if metadata.kind == "labels":
        return None
    if config.dataset.val_per_class:
        metadata = per_class_subset(metadata, config.dataset.val_per_class, config.seed)
    return metadata


def backbone_name(config: ExperimentConfig) -> str | None:
    return config.method.backbone or METHODS.get(config.method.name).default_backbone


def _run_mode(run: RunDir, config: ExperimentConfig, resume: bool) -> str:
    """'fresh', 'resume' or 'done' for the run folder; ValueError when it holds a different or unrequested run.

    - no config.yaml, or no checkpoint and no metrics.json (a run that died before its first
      checkpoint): 'fresh', whatever config the folder holds;
    - a different config.yaml: ValueError showing the diff;
    - the same config and metrics.json: 'done' (the finished run is reused);
    - the same config and checkpoints/last.pt only: 'resume' with `resume`, else ValueError.
    """
    saved_path = run.path / "config.yaml"
    finished = (run.path / "metrics.json").is_file()
    if not saved_path.is_file() or not (finished or (run.checkpoints / "last.pt").is_file()):
        return "fresh"
    diff = config_changes(saved_config(run.path), to_dict(config))
    if diff:
        changes = "\n  ".join(diff)
        raise RunConflictError(
            f"run directory {run.path} holds a run with a different config (saved → now):\n  {changes}\n"
            "choose another --experiment, or remove that folder to start over"
        )
    if finished:
        return "done"
    if not resume:
        raise RunConflictError(
            f"run directory {run.path} holds an interrupted run of this config; pass --resume to continue it, "
            "or choose another --experiment"
        )
    return "resume"


# --------------------------------------------------------------------------- one run


def execute(configs: list[ExperimentConfig], resume: bool = False) -> list[Path]:
    """Train and evaluate every config in order; returns their run directories.

    A finished run of the identical config is reused as it is; with `resume`, an interrupted one
    continues from last.pt.
    """
    if not configs:
        return []
    info = distributed.setup(configs[0].device)
    for config in configs:  # what can only be checked now fails before any run starts
        check_dataset(config)
        preflight(config, info)
    fetch_all_pretrained(configs, info)
    return [run_one(config, resume, info) for config in configs]


def fetch_all_pretrained(configs: list[ExperimentConfig], info: DistInfo) -> None:
    """Make every configured pretrained weight file local before any run folder exists (rank 0 downloads).

    A WeightsError (not cached and not downloadable) is raised on every rank.
    """
    error: Exception | None = None
    if info.is_main:
        try:
            for config in configs:
                fetch_pretrained(config.method.name, config.method.backbone, config.method.pretrained)
        except WsolbenchError as caught:
            error = caught
    error = distributed.broadcast_object(error, info)
    if error is not None:
        raise error


def run_one(config: ExperimentConfig, resume: bool, info: DistInfo) -> Path:
    """Train (or continue) one run, then evaluate it; returns its run directory."""
    path = run_path(config.output_dir, config.experiment, config.dataset.name, config.method.name,
                    config.regime.name, config.seed)
    run = RunDir(path)
    mode: Any = None
    if info.is_main:
        try:
            mode = _run_mode(run, config, resume)
        except ValueError as error:
            mode = error
    mode = distributed.broadcast_object(mode, info)
    if isinstance(mode, Exception):
        raise mode
    if mode == "done":
        return path
    if info.is_main:
        run.acquire()
    try:
        if info.is_main and mode == "fresh":
            run.write_text("config.yaml", dump(config))
        _train_and_evaluate(config, run, info, resume=mode == "resume")
    finally:
        run.release()
    return path


def _train_and_evaluate(config: ExperimentConfig, run: RunDir, info: DistInfo, resume: bool) -> None:
    prepared = ensure_dataset(config, info)
    seed_everything(config.seed)  # identical initial weights on every rank
    model = build_model(config, prepared.num_classes).to(info.device)
    seed_everything(config.seed + info.rank)
    train_meta = training_images(prepared.split("train"), config)
    val_meta = val_metadata(prepared, config)
    test_meta = prepared.split("test")
    groups = trainable_groups(model, config)
    trainable = count_trainable(groups)
    if info.is_main and config.regime.name == "few_shot":
        run.write_text("few_shot_ids.txt", "\n".join(train_meta.image_ids) + "\n")

    last_val: dict[str, Any] = {}

    def validate(module: WSOLMethod) -> tuple[str, float]:
        accumulator = accumulate(module, prepared, val_meta, config, info)
        result = result_under_policy(accumulator, "oracle-test")
        metric = selection_metric(val_meta)
        last_val["result"] = result
        return metric, float(result.metrics[metric])

    best: dict[str, Any] = {}
    if trainable:
        dataset = WSOLDataset(prepared, train_meta,
                              transform=train_transform(config.dataset.resize_size, config.dataset.crop_size))
        validator = validate if val_meta is not None else None
        trainer = Trainer(config, model, groups, dataset, run, info, validator)
        if resume and (run.checkpoints / "last.pt").is_file():
            trainer.resume()
        elif info.is_main:  # a run that died before its first checkpoint starts over
            (run.path / "log.jsonl").unlink(missing_ok=True)
        best = dict(trainer.fit().best)
        if config.eval.checkpoint == "best" and val_meta is not None:
            state = torch.load(run.checkpoints / "best.pt", map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            last_val.clear()
    elif info.is_main:
        save_checkpoint(run, "last.pt", {"model": model.state_dict(), "epoch": 0})
    checkpoint = ("last" if val_meta is None else config.eval.checkpoint) if trainable else "untrained"
    note = missing_val_note(prepared, config, bool(trainable)) if val_meta is None else None
    evaluate_into(run, model, prepared, config, info, val_meta, test_meta, checkpoint,
                  val_result=last_val.get("result"),
                  extra={"trainable_params": trainable, "best": best, **_few_shot_info(config, train_meta),
                         **({"notes": [note]} if note else {})})


def missing_val_note(prepared: PreparedDataset, config: ExperimentConfig, trained: bool) -> str:
    """The plain sentence a run without a val split (train-fullsup) reports in its output and table."""
    reason = DATASETS.get(prepared.name).missing_val_reason
    why = f" ({reason})" if reason else ""
    text = f"{prepared.name} has no val split with boxes{why}, so nothing is scored on val"
    if trained and config.eval.checkpoint == "best":
        text += "; the scored checkpoint is therefore the LAST one, not the val-selected best (eval.checkpoint: best)"
    return text


def _few_shot_info(config: ExperimentConfig, train_meta: Metadata) -> dict[str, Any]:
    if config.regime.name != "few_shot":
        return {}
    return {"few_shot": {"shots": config.regime.shots, "seed": config.seed, "images": len(train_meta),
                         "ids_file": "few_shot_ids.txt"}}


def evaluate_into(
    run: RunDir,
    model: WSOLMethod,
    prepared: PreparedDataset,
    config: ExperimentConfig,
    info: DistInfo,
    val_meta: Metadata | None,
    test_meta: Metadata,
    checkpoint: str,
    val_result: Any = None,
    extra: dict[str, Any] | None = None,
    regime_name: str | None = None,
) -> None:
    """Evaluate val (oracle-test) and test, then write metrics.json, curves.csv, samples.npz and, for
    box datasets, per_image.npz (the test images' results; wsolbench.metrics.per_image).

    Test is always scored under oracle-test (labelled so); `threshold_policy: val` adds test scored
    at the thresholds chosen on val, `fixed` adds test at `eval.thresholds`.
    """
    entries, curves = [], []
    if val_meta is not None:
        if val_result is None:
            val_result = result_under_policy(accumulate(model, prepared, val_meta, config, info), "oracle-test")
        entries.append(result_entry("val", config, "oracle-test", checkpoint, val_result))
        curves.append(curves_frame("val", config, "oracle-test", val_result))
    boxes = test_meta.kind != "masks"
    test_acc = accumulate(model, prepared, test_meta, config, info, record_images=boxes)
    per_image = gather_per_image(test_acc, test_meta, info) if boxes else None
    oracle = result_under_policy(test_acc, "oracle-test")
    entries.append(result_entry("test", config, "oracle-test", checkpoint, oracle))
    curves.append(curves_frame("test", config, "oracle-test", oracle))
    chosen = oracle
    policy = config.eval.threshold_policy
    if policy == "val":  # the callers ran check_val_split: there is a val result
        chosen = result_under_policy(test_acc, "fixed", dict(val_result.thresholds))
    elif policy == "fixed":
        chosen = result_under_policy(test_acc, "fixed", list(config.eval.thresholds))
    if policy != "oracle-test":
        entries.append(result_entry("test", config, policy, checkpoint, chosen))
        curves.append(curves_frame("test", config, policy, chosen))
    if not info.is_main:
        return
    metrics = {
        "experiment": config.experiment,
        "dataset": config.dataset.name,
        "method": config.method.name,
        "backbone": backbone_name(config),
        "regime": regime_name or config.regime.name,
        "seed": config.seed,
        **(extra or {}),
        "results": entries,
    }
    run.write_text("curves.csv", pd.concat(curves, ignore_index=True).to_csv(index=False))
    tau = chosen.thresholds.get("maxboxacc", next(iter(chosen.thresholds.values()), 0.5))
    samples = qualitative_samples(model, prepared, test_meta, config, info.device, float(tau))
    atomic_write(run.path / "samples.npz", lambda handle: np.savez_compressed(handle, **samples))
    if per_image is not None:
        save_per_image(per_image, run.path / PER_IMAGE_FILE)
    run.write_json("metrics.json", metrics)  # last: its presence marks a finished run


# --------------------------------------------------------------------------- evaluate a checkpoint


def evaluate_checkpoint(config: ExperimentConfig, checkpoint: Path, output: Path | None = None) -> Path:
    """Score a checkpoint (ours or an official one, via method.load_checkpoint) under config.eval.

    Writes metrics.json (regime 'external', checkpoint = the file), curves.csv and samples.npz to
    `output` (default `<output_dir>/<experiment>/<dataset>/<method>-eval-<eval protocol>-seed<k>`).
    """
    info = distributed.setup(config.device)
    prepared = ensure_dataset(config, info)
    check_val_split(config)
    seed_everything(config.seed)
    model = build_model(config, prepared.num_classes, with_pretrained=False)
    model.load_checkpoint(checkpoint)
    model.to(info.device)
    path = output or run_path(config.output_dir, config.experiment, config.dataset.name, config.method.name,
                              f"eval-{config.eval.protocol}", config.seed)
    run = RunDir(path)
    if info.is_main:
        run.acquire()
    try:
        if info.is_main:
            run.write_text("config.yaml", dump(config))
        evaluate_into(run, model, prepared, config, info, val_metadata(prepared, config),
                      prepared.split("test"), str(checkpoint), regime_name="external",
                      extra={"trainable_params": 0})
    finally:
        run.release()
    return path
