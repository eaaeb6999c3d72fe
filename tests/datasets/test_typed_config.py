"""Typed configuration: unknown keys, wrong types and overrides give errors that say what is allowed."""

import pytest

from datasets.config import DataConfig, load_data_config
from datasets.typed import ConfigError, apply_overrides, from_mapping, to_mapping

BASE = {"files": ["a.fif"], "events": {"T1": "left", "T2": "right"}}


def test_valid_mapping_builds_nested_dataclasses():
    cfg = from_mapping(DataConfig, {**BASE, "picks": {"types": ["eeg"], "roi": "left_sensorimotor"}, "tmax": 2})
    assert cfg.picks.roi == "left_sensorimotor"
    assert cfg.tmax == 2.0 and isinstance(cfg.tmax, float)
    assert cfg.class_names == ["left", "right"]
    assert from_mapping(DataConfig, to_mapping(cfg)) == cfg


def test_unknown_key_lists_valid_keys_and_suggests_closest():
    with pytest.raises(ConfigError) as err:
        from_mapping(DataConfig, {**BASE, "bandpas": [1, 30]})
    msg = str(err.value)
    assert "'bandpas'" in msg and "bandpass" in msg and "Did you mean 'bandpass'" in msg


def test_wrong_type_and_literal_are_named():
    with pytest.raises(ConfigError, match=r"data.tmin must be a number"):
        from_mapping(DataConfig, {**BASE, "tmin": "soon"}, "data")
    with pytest.raises(ConfigError, match=r"data.split.method .*'holdout', 'kfold', 'loso'"):
        from_mapping(DataConfig, {**BASE, "split": {"method": "random"}}, "data")


def test_cross_field_check_names_both_values():
    with pytest.raises(ConfigError, match=r"'tmax' \(0.5\) must be greater than 'tmin' \(1.0\)"):
        from_mapping(DataConfig, {**BASE, "tmin": 1.0, "tmax": 0.5})


def test_overrides_parse_yaml_values_and_refuse_unknown_paths():
    data = apply_overrides({"data": dict(BASE)}, ["data.tmax=3", "data.bandpass=[1, 40]"])
    assert data["data"]["tmax"] == 3 and data["data"]["bandpass"] == [1, 40]
    with pytest.raises(ConfigError, match="Did you mean 'tmax'"):
        apply_overrides(dict(BASE), ["tmaxx=3"], DataConfig)
    with pytest.raises(ConfigError, match="key.path=value"):
        apply_overrides(dict(BASE), ["tmax"], DataConfig)


def test_load_data_config_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_data_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_data_config(bad)
    good = tmp_path / "good.yaml"
    good.write_text("data:\n  files: [x.edf]\n  events: {T1: left}\n")
    cfg, folder = load_data_config(good)
    assert cfg.files == ["x.edf"] and folder == tmp_path.resolve()
