"""The training loop's schedule and stopping rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from training.config import ConfigError, RunConfig, load_config
from training.loop import Trainer, kl_weight, learning_rate
from training.sources import ImageSplit


def _config(*overrides: str) -> RunConfig:
    base = ["model.arch=mlp", "model.hidden=[16]", "model.latent_dim=2", "train.batch_size=32",
            "data.channels=1", "data.height=28", "data.width=28"]  # fmt: skip
    return load_config(None, base + list(overrides))


def _split(images: torch.Tensor) -> ImageSplit:
    return ImageSplit.of(images.numpy())


def test_cosine_learning_rate() -> None:
    config = _config("train.lr=0.002", 'train.lr_schedule="cosine"', "train.epochs=4")
    assert [round(learning_rate(config, e), 6) for e in range(4)] == [0.002, 0.001707, 0.001, 0.000293]
    assert learning_rate(_config("train.lr=0.002"), 3) == 0.002


def test_kl_warmup_is_linear_to_beta() -> None:
    config = _config("train.beta=2.0", "train.warmup_epochs=4")
    assert [kl_weight(config, e) for e in range(6)] == [0.5, 1.0, 1.5, 2.0, 2.0, 2.0]
    assert kl_weight(_config(), 0) == 1.0


def test_early_stopping_keeps_the_best_weights(tmp_path: Path, digit_images: np.ndarray) -> None:
    images = torch.from_numpy(digit_images)
    # A huge learning rate makes validation worse after the first epochs, so patience runs out.
    config = _config("train.epochs=40", "train.early_stopping_patience=2", "train.lr=0.05")
    trainer = Trainer(config, _split(images), _split(images[:16]), tmp_path, progress=False)
    state = trainer.fit()
    assert state.stopped_early and state.epoch < 40
    assert state.epoch - state.best_epoch == 2
    best = min(h["val_neg_elbo"] for h in state.history)
    assert state.best_val == best
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in state.best_weights.items())


def test_the_global_batch_must_split_evenly(tmp_path: Path, digit_images: np.ndarray) -> None:
    from training.distributed import Processes

    images = _split(torch.from_numpy(digit_images))
    with pytest.raises(ConfigError, match=r"train\.batch_size 30 must be divisible by the 4 processes"):
        Trainer(_config("train.batch_size=30"), images, images, tmp_path, processes=Processes(world_size=4))


def test_keep_last_exports_the_final_weights(tmp_path: Path, digit_images: np.ndarray) -> None:
    images = torch.from_numpy(digit_images)
    config = _config("train.epochs=8", 'train.keep="last"', "train.lr=0.01")
    # Validating on inverted digits: the better the model fits digits, the worse it gets there.
    trainer = Trainer(config, _split(images), _split(1.0 - images[:16]), tmp_path, progress=False)
    state = trainer.fit()
    assert state.best_epoch < 8  # so "best" and "last" are different weights
    weights = trainer.model.state_dict()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(v, saved["model"][k]) for k, v in weights.items())
    assert not all(torch.equal(v, weights[k]) for k, v in state.best_weights.items())
