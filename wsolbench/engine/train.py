"""The training loop: seeded data order and augmentation, grad accumulation, AMP, DDP, checkpoints.

Determinism (CPU): the epoch's image order comes from `DistributedSampler` seeded with
(config.seed, epoch); each image's augmentation is drawn from a torch generator seeded with
(seed, epoch, index), independent of workers and of where a run was resumed; the model's own
randomness (drop-path, dropout) comes from the process RNG, which checkpoints save and restore.
So a run resumed from any checkpoint — end of epoch or mid-epoch (`train.checkpoint_every_steps`)
— continues exactly as the uninterrupted run would have.
"""

from __future__ import annotations

import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm import tqdm

from wsolbench.config import ConfigError, ExperimentConfig, to_dict
from wsolbench.contracts.method import ParamGroup, WSOLMethod
from wsolbench.engine.checkpoint import load_training_state, rng_state, save_checkpoint, set_rng_state
from wsolbench.engine.distributed import DistInfo, all_gather_object
from wsolbench.engine.loaders import WSOLDataset, collate
from wsolbench.engine.optim import LRSchedule, build_optimizer
from wsolbench.errors import RunConflictError, WsolbenchError
from wsolbench.results import RunDir

Validator = Callable[[WSOLMethod], tuple[str, float]]


class TrainingDiverged(WsolbenchError, RuntimeError):
    """The loss became NaN or infinite; the message names the step and the last good checkpoint."""


class SeededItems(Dataset):
    """Items keyed by (epoch, index), each augmented under its own seed (see module docstring)."""

    def __init__(self, base: WSOLDataset, seed: int) -> None:
        self.base = base
        self.seed = seed

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, key: tuple[int, int]) -> dict[str, Any]:
        epoch, index = key
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(((self.seed * 1_000_003 + epoch) * 10_000_019 + index) % 2**63)
            return self.base[index]


def amp_dtype(mode: str, device: torch.device) -> torch.dtype | None:
    """`auto`: bf16 on a GPU that supports it, else fp16 on GPU, off on CPU."""
    if mode == "off":
        return None
    if device.type != "cuda":
        if mode == "auto":
            return None
        raise ConfigError(f"train.amp: {mode!r} needs a GPU; use 'auto' or 'off' on CPU")
    if mode == "fp16" or (mode == "auto" and not torch.cuda.is_bf16_supported()):
        return torch.float16
    return torch.bfloat16


@dataclass
class TrainState:
    epoch: int = 0  # completed epochs
    step_in_epoch: int = 0  # optimizer steps done in the current epoch
    global_step: int = 0
    best: dict[str, Any] = field(default_factory=dict)  # {"metric", "value", "epoch"}
    epoch_sums: dict[str, float] = field(default_factory=dict)  # loss-term sums × images, this epoch


def epoch_batches(
    n: int, epoch: int, config: ExperimentConfig, info: DistInfo
) -> list[list[tuple[int, int]]]:
    """This rank's micro-batches of `epoch` as (epoch, index) keys, in training order."""
    sampler = DistributedSampler(
        range(n), num_replicas=info.world_size, rank=info.rank, shuffle=True, seed=config.seed
    )
    sampler.set_epoch(epoch)
    indices = list(sampler)
    micro = micro_batch_size(config, info)
    return [[(epoch, i) for i in indices[k : k + micro]] for k in range(0, len(indices), micro)]


def micro_batch_size(config: ExperimentConfig, info: DistInfo) -> int:
    """Images per rank per forward pass; train.batch_size is the global batch per optimizer step."""
    per_step = info.world_size * config.train.grad_accum
    if config.train.batch_size % per_step:
        raise ConfigError(
            f"train.batch_size ({config.train.batch_size}) must be divisible by grad_accum × processes "
            f"({config.train.grad_accum} × {info.world_size})"
        )
    return config.train.batch_size // per_step


class Trainer:
    """Trains `model` on `dataset` for config.train.epochs, writing into `run` (rank 0 only)."""

    def __init__(
        self,
        config: ExperimentConfig,
        model: WSOLMethod,
        groups: list[ParamGroup],
        dataset: WSOLDataset,
        run: RunDir,
        info: DistInfo,
        validate: Validator | None,
    ) -> None:
        self.config = config
        self.model = model.to(info.device)
        self.dataset = SeededItems(dataset, config.seed)
        self.run = run
        self.info = info
        self.validate = validate
        self.optimizer = build_optimizer(groups, config.train)
        self.amp = amp_dtype(config.train.amp, info.device)
        self.scaler = torch.amp.GradScaler("cuda") if self.amp is torch.float16 else None
        self.micro_batches = len(epoch_batches(len(dataset), 0, config, info))
        self.steps_per_epoch = math.ceil(self.micro_batches / config.train.grad_accum)
        self.schedule = LRSchedule(config.train, self.steps_per_epoch)
        self.state = TrainState()
        wrapped: nn.Module = self.model
        if info.enabled:
            device_ids = [info.device.index] if info.device.type == "cuda" else None
            wrapped = DistributedDataParallel(self.model, device_ids=device_ids, find_unused_parameters=True)
        self.ddp = wrapped
        self.forward = torch.compile(wrapped) if config.train.compile else wrapped
        self.tb = self._tensorboard()

    # ------------------------------------------------------------------ checkpoints
    def checkpoint(self) -> dict[str, Any]:
        rngs = all_gather_object(rng_state(), self.info)
        s = self.state
        return {
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scaler": None if self.scaler is None else self.scaler.state_dict(),
            "epoch": s.epoch,
            "step_in_epoch": s.step_in_epoch,
            "global_step": s.global_step,
            "rng": rngs,
            "best": dict(s.best),
            "epoch_sums": dict(s.epoch_sums),
            "config": to_dict(self.config),
        }

    def save(self, name: str, state: dict[str, Any] | None = None) -> None:
        state = self.checkpoint() if state is None else state  # every rank joins the RNG gather
        if self.info.is_main:
            save_checkpoint(self.run, name, state)

    def resume(self) -> None:
        """Restore model, optimizer, scaler, RNG states, epoch and position from last.pt."""
        state = load_training_state(self.run.checkpoints / "last.pt")
        if len(state["rng"]) != self.info.world_size:
            raise RunConflictError(
                f"{self.run.checkpoints / 'last.pt'} was written by {len(state['rng'])} process(es); "
                f"resume it with the same number (now {self.info.world_size})"
            )
        self.model.load_state_dict(self.model.adapt_state_dict(state["model"]))  # earlier versions: official keys
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scaler is not None and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        set_rng_state(state["rng"][self.info.rank])
        self.state = TrainState(
            epoch=state["epoch"],
            step_in_epoch=state["step_in_epoch"],
            global_step=state["global_step"],
            best=dict(state["best"]),
            epoch_sums=dict(state["epoch_sums"]),
        )
        if self.info.is_main:
            self._truncate_log(self.state.global_step)

    def _truncate_log(self, step: int) -> None:
        """Drop log lines the interrupted run wrote after the checkpoint it is resumed from."""
        path = self.run.path / "log.jsonl"
        if not path.is_file():
            return
        keep = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        self.run.write_text("log.jsonl", "".join(f"{line}\n" for line in keep))

    # ------------------------------------------------------------------ logging
    def _tensorboard(self) -> Any:
        if not self.info.is_main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is optional
            return None
        return SummaryWriter(str(self.run.path / "tensorboard"))

    def _log(self, record: dict[str, Any]) -> None:
        if not self.info.is_main:
            return
        self.run.append_log(record)
        if self.tb is not None:
            prefix = "epoch" if record.get("kind") == "epoch" else "train"
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("step", "epoch"):
                    self.tb.add_scalar(f"{prefix}/{key}", value, record["step"])

    # ------------------------------------------------------------------ the loop
    def fit(self) -> TrainState:
        """Train the remaining epochs; raises TrainingDiverged on a non-finite loss."""
        for epoch in range(self.state.epoch, self.config.train.epochs):
            self._train_epoch(epoch)
            metric = self.validate(self.model) if self.validate is not None else None
            self.state.epoch = epoch + 1
            self.state.step_in_epoch = 0
            record = self._epoch_record(epoch, metric)
            improved = metric is not None and (not self.state.best or metric[1] > self.state.best["value"])
            if improved:
                self.state.best = {"metric": metric[0], "value": metric[1], "epoch": epoch + 1}
            self.state.epoch_sums = {}
            state = self.checkpoint()
            self.save("last.pt", state)
            if improved or (metric is None and epoch + 1 == self.config.train.epochs):
                self.save("best.pt", state)
            self._log(record)
        if self.tb is not None:
            self.tb.close()
        return self.state

    def _epoch_record(self, epoch: int, metric: tuple[str, float] | None) -> dict[str, Any]:
        sums = dict(self.state.epoch_sums)
        images = sums.pop("_images", 0.0) or 1.0
        seconds = sums.pop("_seconds", 0.0) or 1e-9
        record: dict[str, Any] = {
            "kind": "epoch",
            "step": self.state.global_step,
            "epoch": epoch + 1,
            "lr": self.schedule.lr_at(max(self.state.global_step - 1, 0)),
            "images_per_s": images / seconds,
            **{k: v / images for k, v in sums.items()},
        }
        if metric is not None:
            record[f"val_{metric[0]}"] = metric[1]
        return record

    def _train_epoch(self, epoch: int) -> None:
        config, info = self.config, self.info
        accum = config.train.grad_accum
        batches = epoch_batches(len(self.dataset), epoch, config, info)
        steps = [batches[k : k + accum] for k in range(0, len(batches), accum)]
        first = self.state.step_in_epoch
        remaining = [mb for step in steps[first:] for mb in step]
        loader = DataLoader(
            self.dataset,
            batch_sampler=remaining,
            num_workers=config.dataset.num_workers,
            collate_fn=collate,
            pin_memory=info.device.type == "cuda",
            generator=torch.Generator(),  # its base seed must not come from (and advance) the process RNG
        )
        self.model.train()
        every = config.train.checkpoint_every_steps
        iterator = iter(loader)
        bar = tqdm(
            range(first, len(steps)), total=len(steps), initial=first, disable=not info.is_main, leave=False,
            desc=f"{config.method.name} epoch {epoch + 1}/{config.train.epochs}", dynamic_ncols=True,
        )
        for step_index in bar:
            started = time.perf_counter()
            micro = [next(iterator) for _ in steps[step_index]]
            lr = self.schedule.apply(self.optimizer, self.state.global_step)
            terms, images = self._step(micro)
            self.state.global_step += 1
            self.state.step_in_epoch = step_index + 1
            seconds = time.perf_counter() - started
            sums = self.state.epoch_sums
            for key, value in terms.items():
                sums[key] = sums.get(key, 0.0) + value * images
            sums["_images"] = sums.get("_images", 0.0) + images
            sums["_seconds"] = sums.get("_seconds", 0.0) + seconds
            record = {"step": self.state.global_step, "epoch": epoch + 1, "lr": lr,
                      "images_per_s": images / seconds, **terms}
            self._log(record)
            bar.set_postfix({k: f"{v:.4g}" for k, v in terms.items()} | {"img/s": f"{images / seconds:.1f}"})
            if every and self.state.global_step % every == 0 and step_index + 1 < len(steps):
                self.save("last.pt")
        bar.close()

    def _step(self, micro: list[dict[str, Any]]) -> tuple[dict[str, float], int]:
        """One optimizer step over `micro` batches: the loss is the mean over all their images.

        Returns the loss terms averaged over images and ranks, and the global image count.
        """
        device = self.info.device
        local_images = sum(len(b["label"]) for b in micro)
        totals: dict[str, torch.Tensor] = {}
        for k, batch in enumerate(micro):
            images = batch["image"].to(device, non_blocking=True)
            labels = batch["label"].to(device, non_blocking=True)
            weight = len(labels) / local_images
            sync = k == len(micro) - 1 or not self.info.enabled
            context = self.ddp.no_sync() if not sync else contextlib.nullcontext()
            with context:
                with torch.autocast(device.type, dtype=self.amp, enabled=self.amp is not None):
                    output = self.forward(images)
                    terms = self.model.loss(output, labels)
                loss = terms["loss"] * weight
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            for key, value in terms.items():
                totals[key] = totals.get(key, 0.0) + value.detach().float() * weight
        keys = sorted(totals)
        stacked = torch.stack([totals[k] for k in keys])
        if self.info.enabled:
            torch.distributed.all_reduce(stacked, op=torch.distributed.ReduceOp.SUM)
            stacked /= self.info.world_size
        values = dict(zip(keys, stacked.tolist(), strict=True))
        if not math.isfinite(values["loss"]):
            last = self.run.checkpoints / "last.pt"
            kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was saved yet"
            raise TrainingDiverged(
                f"non-finite loss ({values['loss']}) at step {self.state.global_step + 1} "
                f"(epoch {self.state.epoch + 1}); stopped, {kept}"
            )
        clip = self.config.train.clip_grad
        if self.scaler is not None:
            if clip:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            if clip:
                nn.utils.clip_grad_norm_(self.model.parameters(), clip)
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        return values, local_images * self.info.world_size
