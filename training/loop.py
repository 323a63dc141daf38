"""The training loop: epochs, KL warm-up, early stopping, checkpoints, resume.

A checkpoint is written atomically at the end of every epoch, so Ctrl-C or a crash
loses at most the epoch in progress, and `--resume` continues from it. Each epoch draws
its shuffling and noise from a generator seeded by (seed, epoch), so a resumed run gives
the same weights as one that was never interrupted.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm import tqdm

from training.config import RunConfig
from training.nets import VAE
from training.objective import elbo_terms

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"


class TrainingError(RuntimeError):
    """Training cannot go on (a NaN loss, a checkpoint that does not fit the config)."""


@dataclass
class TrainState:
    """Everything a checkpoint holds besides the config."""

    epoch: int = 0  # epochs completed
    best_epoch: int = 0
    best_val: float = math.inf
    bad_epochs: int = 0  # epochs since the best, for early stopping
    wall_seconds: float = 0.0
    history: list[dict[str, float]] = field(default_factory=list)
    best_weights: dict[str, torch.Tensor] | None = None
    stopped_early: bool = False


def epoch_generator(seed: int, epoch: int) -> torch.Generator:
    """The generator for one epoch's shuffling and noise, independent of earlier epochs."""
    return torch.Generator().manual_seed(seed * 1_000_003 + epoch)


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


def random_shift(images: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image by up to max_shift pixels in x and y, filling with zeros."""
    n, c, h, w = images.shape
    padded = F.pad(images, (max_shift,) * 4)  # (N, C, H + 2s, W + 2s)
    offsets = torch.randint(0, 2 * max_shift + 1, (n, 2), generator=generator)
    rows = (offsets[:, 0, None] + torch.arange(h))[:, None, :, None]  # (N, 1, H, 1)
    cols = (offsets[:, 1, None] + torch.arange(w))[:, None, None, :]  # (N, 1, 1, W)
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


@torch.no_grad()
def evaluate_neg_elbo(model: VAE, images: torch.Tensor, seed: int, batch_size: int = 512) -> float:
    """Mean one-sample negative ELBO (beta = 1) over `images`, with fixed noise."""
    model.eval()
    generator = torch.Generator().manual_seed(seed)
    total = 0.0
    for start in range(0, len(images), batch_size):
        terms = elbo_terms(model, images[start : start + batch_size], generator)
        total += float((terms.reconstruction + terms.kl).sum())
    return total / len(images)


class Trainer:
    """Trains one VAE on train/validation tensors, checkpointing into `run_dir`."""

    def __init__(
        self, config: RunConfig, train: torch.Tensor, validation: torch.Tensor, run_dir: Path, progress: bool = True
    ) -> None:
        self.config = config
        self.progress = progress
        self.train_images = train  # (N, C, H, W)
        self.validation_images = validation if len(validation) else train
        self.run_dir = run_dir
        torch.manual_seed(config.train.seed)  # initial weights
        self.model = VAE(config.model, config.data)
        self.optimizer = torch.optim.AdamW(
            (p for p in self.model.parameters() if p.requires_grad),
            lr=config.train.lr,
            weight_decay=config.train.weight_decay,
        )
        self.state = TrainState()

    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / CHECKPOINT

    def resume(self) -> None:
        """Load the last checkpoint; its config must match this run's (epochs may grow)."""
        if not self.checkpoint_path.exists():
            raise TrainingError(f"no checkpoint to resume from at {self.checkpoint_path}")
        saved = torch.load(self.checkpoint_path, weights_only=False)
        mine, theirs = self.config.to_dict(), copy.deepcopy(saved["config"])
        mine["train"].pop("epochs"), theirs["train"].pop("epochs")
        if mine != theirs:
            raise TrainingError(f"checkpoint {self.checkpoint_path} was made with a different config")
        self.model.load_state_dict(saved["model"])
        self.optimizer.load_state_dict(saved["optimizer"])
        self.state = saved["state"]
        log.info("resumed from %s after epoch %d", self.checkpoint_path, self.state.epoch)

    def save_checkpoint(self) -> None:
        """Write the checkpoint atomically: a crash mid-write keeps the previous one."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        tmp = self.checkpoint_path.with_suffix(".tmp")
        payload: dict[str, Any] = {
            "config": self.config.to_dict(),
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "state": self.state,
        }
        torch.save(payload, tmp)
        os.replace(tmp, self.checkpoint_path)

    def fit(self) -> TrainState:
        """Train until `epochs` or early stopping; leaves the best weights in the model."""
        t = self.config.train
        if t.threads > 0:
            torch.set_num_threads(t.threads)
        start_epoch = self.state.epoch
        bar = tqdm(
            range(start_epoch, t.epochs),
            initial=start_epoch,
            total=t.epochs,
            desc="epochs",
            unit="ep",
            disable=not self.progress,
        )
        for epoch in bar:
            if self.state.stopped_early:
                break
            started = time.perf_counter()
            train_loss = self._train_epoch(epoch)
            val = evaluate_neg_elbo(self.model, self.validation_images, seed=t.seed)
            self._record(epoch, train_loss, val, time.perf_counter() - started)
            bar.set_postfix(loss=f"{train_loss:.2f}", val_neg_elbo=f"{val:.2f}", best=f"{self.state.best_val:.2f}")
            self.save_checkpoint()
        bar.close()
        if t.keep == "best" and self.state.best_weights is not None:
            self.model.load_state_dict(self.state.best_weights)
        self.model.eval()
        return self.state

    def _train_epoch(self, epoch: int) -> float:
        t = self.config.train
        self.model.train()
        generator = epoch_generator(t.seed, epoch)
        order = torch.randperm(len(self.train_images), generator=generator)
        beta = kl_weight(self.config, epoch)
        for group in self.optimizer.param_groups:
            group["lr"] = learning_rate(self.config, epoch)
        total, seen = 0.0, 0
        batches = tqdm(
            range(0, len(order), t.batch_size),
            desc=f"epoch {epoch + 1}",
            leave=False,
            unit="batch",
            disable=not self.progress,
        )
        for batch_index, start in enumerate(batches):
            x = self.train_images[order[start : start + t.batch_size]]
            if t.augment_shift:
                x = random_shift(x, t.augment_shift, generator)
            loss = elbo_terms(self.model, x, generator).loss(beta)
            if not torch.isfinite(loss):
                raise TrainingError(
                    f"loss became {float(loss.detach())} at epoch {epoch + 1}, batch {batch_index + 1}; "
                    f"the last good checkpoint (epoch {self.state.epoch}) is kept in {self.checkpoint_path}. "
                    "Try a lower train.lr."
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimizer.step()
            total += float(loss.detach()) * len(x)
            seen += len(x)
            batches.set_postfix(loss=f"{total / seen:.2f}")
        return total / seen

    def _record(self, epoch: int, train_loss: float, val: float, seconds: float) -> None:
        s, t = self.state, self.config.train
        s.epoch = epoch + 1
        s.wall_seconds += seconds
        s.history.append(
            {"epoch": epoch + 1, "train_loss": train_loss, "val_neg_elbo": val, "beta": kl_weight(self.config, epoch)}
        )
        log.info("epoch %d: train loss %.3f, validation neg ELBO %.3f", epoch + 1, train_loss, val)
        # Only epochs at full beta compete for "best": during warm-up the loss is not the ELBO.
        if epoch + 1 >= t.warmup_epochs and val < s.best_val:
            s.best_val, s.best_epoch, s.bad_epochs = val, epoch + 1, 0
            s.best_weights = copy.deepcopy(self.model.state_dict())
        else:
            s.bad_epochs += 1
        if t.early_stopping_patience and s.bad_epochs >= t.early_stopping_patience:
            s.stopped_early = True
            log.info("early stopping after epoch %d (best %d)", epoch + 1, s.best_epoch)
