"""Config files, overrides, and the errors for bad ones."""

from __future__ import annotations

from pathlib import Path

import pytest

from training.config import ConfigError, RunConfig, load_config


def test_toml_file_with_overrides(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('name = "x"\n[model]\nlatent_dim = 8\nchannels = [4, 8]\n[train]\nepochs = 3\n')
    config = load_config(path, ["train.lr=0.01", "data.labels=[1, 7]", "data.source=some/folder", "name=y"])
    assert (config.name, config.model.latent_dim, config.model.channels) == ("y", 8, [4, 8])
    assert (config.train.epochs, config.train.lr) == (3, 0.01)
    assert config.data.labels == [1, 7] and config.data.source == "some/folder"


def test_dict_round_trip() -> None:
    config = load_config(None, ["model.arch=mlp", "train.warmup_epochs=5"])
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epoch=3", "unknown config key train.epoch"),
        ("optim.lr=3", r"unknown config section \[optim\]"),
        ("train.epochs=many", "train.epochs must be int, got 'many'"),
        ("train.epochs=2.5", "train.epochs must be int, got 2.5"),
        ("model.arch=rnn", r"model.arch must be one of \['conv', 'mlp'\], got 'rnn'"),
        ("train.early_stopping_patience", "must look like section.key=value"),
        ("model.latent_dim=0", "model.latent_dim must be >= 1"),
        ("data.height=30", "needs height and width divisible by 4, got 30x28"),
        ("data.test_fraction=0.95", "fractions must be < 1"),
        ("calibration.false_positive_rate=0", r"false_positive_rate must be in \(0, 1\)"),
        ("name=a/b", "name 'a/b' may hold only"),
    ],
)
def test_bad_overrides_name_the_key(override: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_bad_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.toml", [])
    (tmp_path / "bad.toml").write_text("[model\n")
    with pytest.raises(ConfigError, match="is not valid TOML"):
        load_config(tmp_path / "bad.toml", [])


def test_shipped_configs_load() -> None:
    for path in Path("training/configs").glob("*.toml"):
        assert load_config(path, []).name
