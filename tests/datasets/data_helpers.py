"""Config helpers for the dataset tests."""

import yaml


def data_config(files, tmp_path, **overrides):
    """A DataConfig for synthetic files, cache in ``tmp_path``."""
    from datasets.config import DataConfig
    from datasets.typed import from_mapping

    raw = {
        "files": [str(f) for f in files],
        "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
        "tmin": 0.5, "tmax": 1.5, "bandpass": [8.0, 30.0], "resample": 125.0,
        "cache_dir": str(tmp_path / "cache"),
    }
    raw.update(overrides)
    return from_mapping(DataConfig, raw, "data")


def write_config(path, files, **overrides):
    raw = {"files": [str(f) for f in files], "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
           "tmin": 0.5, "tmax": 1.5, "resample": 125.0, "cache_dir": str(path.parent / "cache")}
    raw.update(overrides)
    path.write_text(yaml.safe_dump({"data": raw}, sort_keys=False))
    return path
