"""Experiment config: YAML + dotted overrides, typed sections, clear errors, atomic resolved save."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from datasets.typed import ConfigError
from pipeline.record.config import ExperimentConfig, load_config, save_config

ROOT = Path(__file__).resolve().parents[2]


def test_load_typed_sections_and_overrides(write_config):
    path = write_config()
    cfg, config_dir = load_config(path, ["optim.lr=0.01", "trainer.max_epochs=7", "model.name=eegnet",
                                         "tracking.tags=[a,b]", "trainer.devices=2"])
    assert isinstance(cfg, ExperimentConfig)
    assert config_dir == path.parent.resolve()
    assert cfg.optim.lr == 0.01 and cfg.trainer.max_epochs == 7 and cfg.model.name == "eegnet"
    assert cfg.tracking.tags == ["a", "b"] and cfg.trainer.devices == 2
    assert cfg.data.split.test == ["03"] and cfg.model.params == {"n_filters": 8}
    assert cfg.trainer.precision is None and cfg.trainer.accelerator == "auto"


def test_unknown_key_lists_valid_keys_and_closest(write_config):
    path = write_config()
    with pytest.raises(ConfigError) as err:
        load_config(path, ["optim.learning_rat=0.1"])
    assert "learning_rat" in str(err.value) and "lr" in str(err.value)
    with pytest.raises(ConfigError) as err:
        load_config(path, ["trainer.max_epoch=3"])
    assert "max_epochs" in str(err.value)


def test_unknown_key_in_yaml(write_config):
    path = write_config(optim={"lr": 0.01, "sheduler": "cosine"})
    with pytest.raises(ConfigError, match="scheduler"):
        load_config(path)


def test_bad_values_are_clear(write_config):
    with pytest.raises(ConfigError, match="max_epochs"):
        load_config(write_config(), ["trainer.max_epochs=0"])
    with pytest.raises(ConfigError, match="lr"):
        load_config(write_config(), ["optim.lr=-1"])
    with pytest.raises(ConfigError, match="scheduler"):
        load_config(write_config(), ["optim.scheduler=linear"])
    with pytest.raises(ConfigError, match="mode"):
        load_config(write_config(), ["tracking.mode=maybe"])


def test_missing_data_section(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(yaml.safe_dump({"model": {"name": "eegnet"}}))
    with pytest.raises(ConfigError, match="data"):
        load_config(path)
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "absent.yaml")


def test_save_config_round_trip(write_config, tmp_path):
    cfg, _ = load_config(write_config(), ["optim.lr=0.02"])
    out = tmp_path / "config.yaml"
    save_config(cfg, out)
    again, _ = load_config(out)
    assert again == cfg
    assert [p.name for p in tmp_path.iterdir()] == ["config.yaml"] or not list(tmp_path.glob(".*.tmp"))


@pytest.mark.parametrize("name", ["demo", "train_eegmmidb", "eegmmidb_real", "train_gpu", "train_ddp"])
def test_shipped_configs_load(name):
    cfg, _ = load_config(ROOT / "configs" / f"{name}.yaml")
    assert cfg.data.files and cfg.model.name
