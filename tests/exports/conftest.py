"""A tiny real training run on synthetic FIF recordings, exported once per session."""

from pathlib import Path

import pytest
import yaml


def write_training_config(folder: Path, files, **overrides) -> Path:
    cfg = {
        "data": {
            "files": [str(f) for f in files],
            "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
            "tmin": 0.5, "tmax": 1.5, "bandpass": [8.0, 30.0], "resample": 125.0,
            "split": {"method": "holdout", "by": "run"}, "batch_size": 16, "cache_dir": str(folder / "cache"),
        },
        "model": {"name": "eegnet", "params": {}},
        "trainer": {"max_epochs": 1, "early_stopping_patience": None, "enable_progress_bar": False},
        "tracking": {"mode": "disabled"},
        "runs_dir": str(folder / "runs"),
    }
    for key, value in overrides.items():
        node = cfg
        *parents, last = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    path = folder / "train.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


@pytest.fixture(scope="session")
def recordings(tmp_path_factory):
    from datasets.synthetic import write_synthetic

    folder = tmp_path_factory.mktemp("recordings")
    return write_synthetic(folder, n_subjects=1, n_runs=3, trials_per_class=4, seed=3)


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory, recordings):
    from pipeline.record.config import load_config
    from pipeline.train import run_training

    folder = tmp_path_factory.mktemp("run")
    cfg, config_dir = load_config(write_training_config(folder, recordings))
    summary = run_training(cfg, config_dir, progress=False)
    return Path(summary["run_dir"])


@pytest.fixture(scope="session")
def exported(tmp_path_factory, trained_run):
    from exports.onnx import export_run

    return export_run(trained_run, out=tmp_path_factory.mktemp("model") / "decoder.onnx")
