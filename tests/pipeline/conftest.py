"""Tiny synthetic recordings (real FIF files written by MNE) and experiment configs for the pipeline tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

CHANNELS = ["FC1", "FC2", "C3", "Cz", "C4", "CP1", "CP2", "Pz"]


def experiment(files: list[str], runs_dir: Path, **sections) -> dict:
    """A small experiment config mapping: 8 channels, 1 s windows at 125 Hz, shallow net, 1 epoch, no W&B."""
    cfg = {
        "data": {
            "files": files,
            "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
            "tmin": 0.5,
            "tmax": 1.5,
            "picks": {"names": CHANNELS},
            "bandpass": [8.0, 30.0],
            "resample": 125.0,
            "split": {"method": "holdout", "by": "run", "test": ["03"]},
            "batch_size": 16,
            "cache_dir": "cache",
        },
        "model": {"name": "shallow", "params": {"n_filters": 8}},
        # one fit per test (the refit on training + validation trials has its own tests in test_small_data.py)
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "early_stopping_patience": None, "refit": False},
        "optim": {"lr": 0.003},
        "tracking": {"mode": "disabled"},
        "seed": 0,
        "runs_dir": str(runs_dir),
    }
    for key, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(key), dict):
            cfg[key] = {**cfg[key], **value}
        else:
            cfg[key] = value
    return cfg


@pytest.fixture(scope="session")
def make_experiment():
    """The :func:`experiment` helper, for module-scoped fixtures."""
    return experiment


@pytest.fixture(scope="session")
def synth_dir(tmp_path_factory) -> Path:
    """One subject, three runs (train/val from 01-02, test 03), 5 trials per class; plus a second 'day'."""
    from datasets.synthetic import write_synthetic

    root = tmp_path_factory.mktemp("synth")
    write_synthetic(root / "day1", n_subjects=1, n_runs=3, trials_per_class=5, seed=0)
    write_synthetic(root / "day2", n_subjects=1, n_runs=1, trials_per_class=4, seed=1)
    return root


@pytest.fixture
def write_config(synth_dir, tmp_path):
    """Write an experiment YAML beside the synthetic files; returns its path. Keyword args update sections."""

    def _write(name: str = "exp.yaml", folder: str = "day1", **sections) -> Path:
        files = sorted(p.name for p in (synth_dir / folder).glob("*_raw.fif"))
        path = synth_dir / folder / name
        path.write_text(yaml.safe_dump(experiment(files, tmp_path / "runs", **sections), sort_keys=False))
        return path

    return _write


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL server on a free loopback port in a temporary data directory (``tests/postgres.py``),
    stopped at the end of the session. Skips where it cannot run, unless ``BMI_REQUIRE_POSTGRES=1`` (CI)."""
    import os

    from postgres import start_postgres, unavailable_reason

    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get("BMI_REQUIRE_POSTGRES") == "1":
            pytest.fail(f"BMI_REQUIRE_POSTGRES=1 but {reason}")
        pytest.skip(reason)
    server = start_postgres()
    yield server
    server.stop()
