"""The training loop: epochs, KL warm-up, early stopping, checkpoints, resume, DDP.

A checkpoint is written atomically by rank 0 at the end of every epoch, so Ctrl-C or a
crash loses at most the epoch in progress, and `--resume` continues from it with any
number of processes. Each epoch's shuffle comes from (seed, epoch) and each image's noise
and augmentation from (seed, epoch, row) (training/data.py), so a resumed run gives the
same weights as one that was never interrupted. `train.batch_size` is the global batch:
with W processes each takes batch_size / W rows of it, DistributedDataParallel averages
their gradients, and a step sees the same images and noise as in one process.
"""

from __future__ import annotations

import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm import tqdm

from training.config import ConfigError, RunConfig
from training.data import TRAIN_STREAM, VALIDATION_STREAM, EpochShuffle, Shard, TrainingImages, loader
from training.devices import autocast
from training.distributed import Processes
from training.nets import VAE
from training.objective import elbo_terms
from training.sources import ImageSplit

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss)."""


@dataclass
class TrainState:
    """Everything a checkpoint holds besides the config."""

    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0  # epochs since the best, for early stopping
    wall_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] | None = None  # on the CPU
    stopped_early: bool = False


def learning_rate(config: RunConfig, epoch: int) -> float:
    """The epoch's learning rate; a function of the epoch alone, so resume needs no scheduler state."""
    t = config.train
    if t.lr_schedule == "cosine":
        return t.lr * 0.5 * (1.0 + math.cos(math.pi * epoch / t.epochs))
    return t.lr


def kl_weight(config: RunConfig, epoch: int) -> float:
    """beta, linearly warmed up from beta/warmup over the first `warmup_epochs` epochs."""
    t = config.train
    if t.warmup_epochs <= 0:
        return t.beta
    return t.beta * min(1.0, (epoch + 1) / t.warmup_epochs)


def _cpu(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v.detach().to("cpu", copy=True) for k, v in state.items()}


def _differences(ours: dict[str, Any], theirs: dict[str, Any], prefix: str = "") -> list[str]:
    """`section.key X here, Y in the checkpoint` for every key whose values differ (nested dicts by key)."""
    out: list[str] = []
    for key in sorted(ours.keys() | theirs.keys()):
        mine, saved = ours.get(key), theirs.get(key)
        if isinstance(mine, dict) and isinstance(saved, dict):
            out += _differences(mine, saved, f"{prefix}{key}.")
        elif mine != saved:
            out.append(f"{prefix}{key} {mine!r} here, {saved!r} in the checkpoint")
    return out


class Trainer:
    """Trains one VAE on a train and a validation split, checkpointing into `run_dir`."""

    def __init__(
        self,
        config: RunConfig,
        train: ImageSplit,
        validation: ImageSplit,
        run_dir: Path,
        *,
        processes: Processes | None = None,
        workers: int = 0,
        progress: bool = True,
    ) -> None:
        self.config = config
        self.processes = processes or Processes()
        self.device = self.processes.device
        self.progress = progress and self.processes.is_main
        self.run_dir = run_dir
        t, world = config.train, self.processes.world_size
        if t.batch_size % world:
            raise ConfigError(f"train.batch_size {t.batch_size} must be divisible by the {world} processes")
        torch.manual_seed(t.seed)  # initial weights, the same in every process and on every device
        self.model = VAE(config.model, config.data).to(self.device)
        self.net: torch.nn.Module = self.model
        if self.processes.distributed:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(self.model, device_ids=ids)
        self.optimizer = torch.optim.AdamW(
            (p for p in self.model.parameters() if p.requires_grad), lr=t.lr, weight_decay=t.weight_decay
        )
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=t.precision == "fp16")
        rank, pin = self.processes.rank, self.device.type == "cuda"
        latent = config.model.latent_dim
        self.train_size = len(train)
        self.shuffle = EpochShuffle(len(train), t.seed, rank, world)
        self.train_batches = loader(TrainingImages(train, latent, t.seed, TRAIN_STREAM, t.augment), self.shuffle,
                                    t.batch_size // world, workers, pin)  # fmt: skip
        validation = validation if len(validation) else train
        checked = TrainingImages(validation, latent, t.seed, VALIDATION_STREAM)
        shard = Shard(len(validation), rank, world)
        self.validation_batches = loader(checked, shard, t.batch_size // world, workers, pin)  # memory as in training
        self.state = TrainState()

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def resume(self) -> None:
        """Continue from the last checkpoint, written by any number of processes.

        Rank 0 reads it and sends it to the others, so every process raises the same error.
        Its config must match this run's, but for where and how long it runs
        (config.RUNTIME_KEYS); a missing checkpoint or another config is a ConfigError (bad
        input, exit code 2) that names the keys that differ."""
        saved: dict[str, Any] | str | None = None
        if self.processes.is_main:
            if not self.checkpoint_path.exists():
                saved = f"no checkpoint to resume from at {self.checkpoint_path}"
            else:
                saved = torch.load(self.checkpoint_path, map_location="cpu", weights_only=False)
        saved = self.processes.broadcast(saved)
        if isinstance(saved, str) or saved is None:
            raise ConfigError(str(saved))
        theirs = RunConfig.from_stored(saved["config"]).without_runtime_keys()
        differ = _differences(self.config.without_runtime_keys(), theirs)
        if differ:
            where = f"checkpoint {self.checkpoint_path} was made with a different config"
            raise ConfigError(f"{where}: {'; '.join(differ)}")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = saved["state"]
        log.info("resumed from %s after epoch %d (written by %d process(es))", self.checkpoint_path,
                 self.state.epoch, saved.get("world_size", 1))  # fmt: skip

    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically: a crash mid-write keeps the previous one."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        payload: dict[str, Any] = {
            "config": self.config.to_dict(),
            "model": _cpu(self.model.state_dict()),
            "optimizer": self.optimizer.state_dict(),
            "state": self.state,
            "world_size": self.processes.world_size,
        }
        torch.save(payload, tmp)
        os.replace(tmp, self.checkpoint_path)

    def fit(self) -> TrainState:
        """Train until `epochs` or early stopping; leaves the chosen weights in the model, in eval mode."""
        t = self.config.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        start_epoch = self.state.epoch
        bar = tqdm(range(start_epoch, t.epochs), initial=start_epoch, total=t.epochs, desc="epochs", unit="ep",
                   disable=None if self.progress else True)  # fmt: skip
        for epoch in bar:
            if self.state.stopped_early:
                break
            started, cpu_started = time.perf_counter(), time.process_time()
            train_loss = self._train_epoch(epoch)
            val = self.validate()
            (cpu_seconds,) = self.processes.all_sum([time.process_time() - cpu_started])  # of every process
            self._record(epoch, train_loss, val, time.perf_counter() - started, cpu_seconds)
            bar.set_postfix(loss=f"{train_loss:.2f}", val_neg_elbo=f"{val:.2f}", best=f"{self.state.best_val:.2f}")
            if self.processes.is_main:
                self.save_checkpoint()
        bar.close()
        if t.keep == "best" and self.state.best_weights is not None:
            self.model.load_state_dict(self.state.best_weights)
        self.model.eval()
        return self.state

    def _train_epoch(self, epoch: int) -> float:
        t = self.config.train
        self.net.train()
        self.shuffle.set_epoch(epoch)
        beta = kl_weight(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, epoch)
        total, seen = 0.0, 0
        batches = tqdm(self.train_batches, desc=f"epoch {epoch + 1}", leave=False, unit="batch",
                       disable=None if self.progress else True)  # fmt: skip
        for batch_index, (images, eps) in enumerate(batches):
            x = images.to(self.device, non_blocking=True)  # (B, C, H, W)
            eps = eps.to(self.device, non_blocking=True)  # (B, D)
            with autocast(self.device, t.precision):
                loss = elbo_terms(self.model, x, eps, self.net).loss(beta)
            if not torch.isfinite(loss):
                # A NaN reaches every process: the averaged gradients carry it to the next step.
                raise TrainingError(
                    f"loss became {float(loss.detach())} at epoch {epoch + 1}, batch {batch_index + 1}; "
                    f"the last good checkpoint (epoch {self.state.epoch}) is kept in {self.checkpoint_path}. "
                    "Try a lower train.lr."
                )
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()  # type: ignore[no-untyped-call]
            self.scaler.step(self.optimizer)
            self.scaler.update()
            total += float(loss.detach()) * len(x)
            seen += len(x)
            batches.set_postfix(loss=f"{total / seen:.2f}")
        total, seen_all = self.processes.all_sum([total, seen])
        return total / seen_all

    @torch.no_grad()
    def validate(self) -> float:
        """Mean one-sample negative ELBO (beta = 1) over the validation split, with fixed noise,
        in float32; each process takes every W-th image and the sums are added up."""
        self.model.eval()
        total, seen = 0.0, 0
        for images, eps in self.validation_batches:
            terms = elbo_terms(self.model, images.to(self.device), eps.to(self.device))
            total += float((terms.reconstruction + terms.kl).sum())
            seen += len(images)
        total, seen_all = self.processes.all_sum([total, seen])
        value = total / seen_all
        if not math.isfinite(value):
            raise TrainingError(
                f"validation negative ELBO became {value}; the last good checkpoint (epoch {self.state.epoch}) "
                f"is kept in {self.checkpoint_path}. Try a lower train.lr."
            )
        return value

    def _record(self, epoch: int, train_loss: float, val: float, seconds: float, cpu_seconds: float) -> None:
        s, t = self.state, self.config.train
        s.epoch = epoch + 1
        s.wall_seconds += seconds
        s.history.append({
            "epoch": epoch + 1, "train_loss": train_loss, "val_neg_elbo": val, "beta": kl_weight(self.config, epoch),
            "seconds": seconds, "images_per_second": self.train_size / seconds, "cpu_seconds": cpu_seconds,
        })  # fmt: skip
        log.info("epoch %d: train loss %.3f, validation neg ELBO %.3f, %.0f images/s", epoch + 1, train_loss, val,
                 self.train_size / seconds)  # fmt: skip
        # Only epochs at full beta compete for "best": during warm-up the loss is not the ELBO.
        if epoch + 1 >= t.warmup_epochs and val < s.best_val:
            s.best_val, s.best_epoch, s.bad_epochs = val, epoch + 1, 0
            s.best_weights = _cpu(self.model.state_dict())
        else:
            s.bad_epochs += 1
        if t.early_stopping_patience and s.bad_epochs >= t.early_stopping_patience:
            s.stopped_early = True
            log.info("early stopping after epoch %d (best %d)", epoch + 1, s.best_epoch)
