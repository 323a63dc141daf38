"""The training loop's schedule and stopping rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.config import RunConfig, load_config
from training.loop import Trainer, kl_weight


def _config(*overrides: str) -> RunConfig:
    base = ["model.arch=mlp", "model.hidden=[16]", "model.latent_dim=2", "train.batch_size=32"]
    return load_config(None, base + list(overrides))


def test_kl_warmup_is_linear_to_beta() -> None:
    config = _config("train.beta=2.0", "train.warmup_epochs=4")
    assert [kl_weight(config, e) for e in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert kl_weight(_config(), 0) == 1.0


def test_early_stopping_keeps_the_best_weights(tmp_path: Path, digit_images: np.ndarray) -> None:
    images = torch.from_numpy(digit_images)
    # A huge learning rate makes validation worse after the first epochs, so patience runs out.
    config = _config("train.epochs=40", "train.early_stopping_patience=2", "train.lr=0.05")
    trainer = Trainer(config, images, images[:16], tmp_path, progress=False)
    state = trainer.fit()
    assert state.stopped_early and state.epoch < 40
    assert state.epoch - state.best_epoch == 2
    best = min(h["val_neg_elbo"] for h in state.history)
    assert state.best_val == best
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in state.best_weights.items())
