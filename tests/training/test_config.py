"""Config files, overrides, the errors for bad ones, and configs stored by older versions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.config import ConfigError, Flip, RunConfig, Shift, load_config

ROOT = Path(__file__).resolve().parents[2]


def test_toml_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[model]\nlatent_dim = 8\nchannels = [4, 8]\n[train]\nepochs = 3\n'
                    '[[train.augment]]\nkind = "flip"\nprobability = 1.0\n')  # fmt: skip
    config = load_config(path, ["train.lr=0.01", "data.labels=[1, 7]", "data.source=some/folder", "name=y",
                                'train.augment=[{kind="shift", pixels=2}, {kind="flip"}]'])  # fmt: skip
    assert (config.name, config.model.latent_dim, config.model.channels) == ("y", 8, [4, 8])
    assert (config.train.epochs, config.train.lr) == (3, 0.01)
    assert config.data.labels == [1, 7] and config.data.source == "some/folder"
    assert config.train.augment == [Shift(kind="shift", pixels=2), Flip(kind="flip")]
    assert load_config(path, []).train.augment == [Flip(kind="flip", probability=1.0)]


def test_dict_round_trip() -> None:
    config = load_config(None, ["model.arch=mlp", "train.warmup_epochs=5", 'train.augment=[{kind="rotate"}]',
                                'data.labels=[3, "cats"]'])  # fmt: skip
    assert RunConfig.from_dict(config.to_dict()) == config
    assert json.loads(json.dumps(config.to_dict())) == config.to_dict()


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown config key train.epoch"),
        ("optim.lr=3", r"unknown config section \[optim\]"),
        ("train.epochs=many", "train.epochs: Input should be a valid integer, got 'many'"),
        ("train.epochs=2.5", "train.epochs: Input should be a valid integer, got 2.5"),
        ('train.epochs="3"', "train.epochs: Input should be a valid integer, got '3'"),  # strict: no guessing
        ("model.arch=rnn", "model.arch: Input should be 'conv' or 'mlp', got 'rnn'"),
        ("train.early_stopping_patience", "must look like section.key=value"),
        ("model.latent_dim=0", "model.latent_dim: Input should be greater than or equal to 1, got 0"),
        ("data.test_fraction=0.95", "fractions must be < 1, got 1.05"),
        ("calibration.false_positive_rate=0", "calibration.false_positive_rate: Input should be greater than 0, got 0"),
        ("name=a/b", "name 'a/b' may hold only"),
        ('train.augment=[{kind="flip", prob=1}]', r"unknown config key train.augment\[0\].prob"),
        ('train.augment=[{kind="blur"}]', r"train.augment\[0\]: Input tag 'blur' found using 'kind'"),
        ("data.labels=[1.5]", r"data.labels\[0\]: Input should be a valid integer, got 1.5"),
        ('train.device="gpu"', "train.device: String should match pattern"),
        ('train.precision="fp8"', "train.precision: Input should be 'fp32', 'bf16' or 'fp16'"),
        ("data.channels=2", "data.channels: Input should be 1 or 3, got 2"),
        ("model.channels=[8, 0]", r"model.channels\[1\]: Input should be greater than 0, got 0"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_conv_depth_must_fit_the_size() -> None:
    with pytest.raises(ConfigError, match="needs height and width divisible by 4, got 30x28"):
        load_config(None, ["model.channels=[8, 16]", "data.height=30", "data.width=28"])
    assert load_config(None, ["data.height=30", "data.width=28"]).model.channels == "auto"  # resolved at training


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", [])
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(tmp_path / "bad.toml", [])
    (tmp_path / "typo.toml").write_text("[modle]\nlatent_dim = 3\n")
    with pytest.raises(ConfigError, match=r"unknown config section \[modle\]"):
        load_config(tmp_path / "typo.toml", [])


def test_shipped_configs_load() -> None:
    for path in (ROOT / "training" / "configs").glob("*.toml"):
        assert load_config(path, []).name


def test_the_shipped_manifest_config_still_reads() -> None:
    """Stored before augmentations were a list: `augment_shift = 1` becomes one shift."""
    manifest = json.loads((ROOT / "model" / "zoo" / "mnist-vae" / "1" / "manifest.json").read_text())
    stored = manifest["training"]["config"]
    with pytest.raises(ConfigError, match=r"unknown config key train\.augment_shift"):
        RunConfig.from_dict(stored)
    config = RunConfig.from_stored(stored)
    assert config.train.augment == [Shift(kind="shift", pixels=1)] and config.model.channels == [32, 64]
