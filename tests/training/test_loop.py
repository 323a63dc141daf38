"""The training loop's schedule and stopping rules."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from training.config import RunConfig, load_config
from training.loop import Trainer, kl_weight, learning_rate


def _config(*overrides: str) -> RunConfig:
    base = ["model.arch=mlp", "model.hidden=[16]", "model.latent_dim=2", "train.batch_size=32"]
    return load_config(None, base + list(overrides))


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
    trainer = Trainer(config, images, images[:16], tmp_path, progress=False)
    state = trainer.fit()
    assert state.stopped_early and state.epoch < 40
    assert state.epoch - state.best_epoch == 2
    best = min(h["val_neg_elbo"] for h in state.history)
    assert state.best_val == best
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in state.best_weights.items())


def test_random_shift_translates_whole_images() -> None:
    from training.loop import random_shift

    images = torch.zeros(64, 1, 8, 8)
    images[:, 0, 3:5, 3:5] = 1.0  # a centred square
    shifted = random_shift(images, 2, torch.Generator().manual_seed(0))
    assert shifted.shape == images.shape and torch.equal(shifted.sum((1, 2, 3)), images.sum((1, 2, 3)))
    tops = [int(torch.nonzero(s[0])[:, 0].min()) for s in shifted]
    lefts = [int(torch.nonzero(s[0])[:, 1].min()) for s in shifted]
    assert set(tops) == set(lefts) == {1, 2, 3, 4, 5}  # every offset in [-2, 2] occurs


def test_keep_last_exports_the_final_weights(tmp_path: Path, digit_images: np.ndarray) -> None:
    images = torch.from_numpy(digit_images)
    config = _config("train.epochs=8", 'train.keep="last"', "train.lr=0.01")
    # Validating on inverted digits: the better the model fits digits, the worse it gets there.
    trainer = Trainer(config, images, 1.0 - images[:16], tmp_path, progress=False)
    state = trainer.fit()
    assert state.best_epoch < 8  # so "best" and "last" are different weights
    weights = trainer.model.state_dict()
    saved = torch.load(tmp_path / "checkpoint.pt", weights_only=False)
    assert all(torch.equal(v, saved["model"][k]) for k, v in weights.items())
    assert not all(torch.equal(v, weights[k]) for k, v in state.best_weights.items())
