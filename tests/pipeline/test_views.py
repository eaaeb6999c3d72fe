"""Which view separates the training trials (``pipeline.views``): cut trials that carry only a slow lateralised
potential, or only a lateralised desynchronisation of a 10 Hz rhythm, written as real ``-epo.fif`` files. The
check picks the view that carries the signal, ``data.bandpass: auto`` trains the slow fields' decoder on the first
and decodes held-out trials, and the default band warns on the first only."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from datasets.config import ConfigError, DataConfig
from datasets.typed import from_mapping
from pipeline import views

SFREQ, TMIN, TMAX = 100.0, -1.5, 2.0  # each trial: 1.5 s before the cue (the filters settle), 2 s after
CHANNELS = ["FC3", "C3", "CP3", "FCz", "Cz", "CPz", "FC4", "C4", "CP4", "Fz", "Pz", "Oz"]
LEFT, RIGHT = [0, 1, 2], [6, 7, 8]  # the hand areas: a right-hand cue engages the left one
TRIALS_PER_CLASS, RUNS = 20, ("01", "02", "03")
#: the signal against a background of unit standard deviation: a slow deflection of 0.6 over the first second,
#: or the 10 Hz rhythm (amplitude 0.7) desynchronised to 60 % of itself
SLOW_DEPTH, RHYTHM_AMPLITUDE, ERD_KEEP = 0.6, 0.7, 0.6


def trials(kind: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``[n, chans, times]`` in volts and labels (0 left hand, 1 right hand) of one run."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round((TMAX - TMIN) * SFREQ))) / SFREQ + TMIN
    labels = np.repeat([0, 1], TRIALS_PER_CLASS)
    X = np.cumsum(rng.standard_normal((len(labels), len(CHANNELS), len(t))), axis=2)
    X -= np.linspace(0, 1, len(t)) * X[:, :, -1:]  # a bridge: brown-ish background that returns to zero
    X /= X.std(axis=(0, 2), keepdims=True)
    X = 0.5 * X + rng.standard_normal(X.shape)
    X /= X.std()
    after = (t >= 0) & (t < 1.0)
    for i, label in enumerate(labels):
        engaged = RIGHT if label == 0 else LEFT  # a left-hand cue engages the right hand area
        if kind == "slow":
            X[i][np.ix_(engaged, after)] -= SLOW_DEPTH * np.minimum(1, 3 * t[after])  # a negative shift, 0.33 s rise
        for side in (LEFT, RIGHT):
            phase = rng.uniform(0, 2 * np.pi)
            rhythm = RHYTHM_AMPLITUDE * np.sin(2 * np.pi * 10 * t + phase)
            if kind == "rhythm" and side == engaged:
                rhythm = rhythm * np.where(after, ERD_KEEP, 1.0)
            X[i][side] += rhythm
    return X * 10e-6, labels


def write_cut_trials(folder: Path, kind: str) -> list[str]:
    """One ``-epo.fif`` per run, the run in the trials' metadata."""
    import mne
    import pandas as pd

    folder.mkdir(parents=True, exist_ok=True)
    info = mne.create_info(CHANNELS, SFREQ, "eeg")
    names = []
    for r, run in enumerate(RUNS):
        X, labels = trials(kind, seed=100 * (kind == "slow") + r)
        events = np.column_stack([np.arange(len(labels)) * 1000, np.zeros(len(labels), int), labels + 1])
        epochs = mne.EpochsArray(X, info, events, tmin=TMIN, event_id={"left": 1, "right": 2}, verbose="error")
        epochs.metadata = pd.DataFrame({"run": [run] * len(labels)})
        epochs.save(folder / f"{kind}_{run}-epo.fif", overwrite=True, verbose="error")
        names.append(f"{kind}_{run}-epo.fif")
    return names


@pytest.fixture(scope="module")
def cut(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("views")
    for kind in ("slow", "rhythm"):
        write_cut_trials(root, kind)
    return root


def data_config(root: Path, kind: str, **extra) -> DataConfig:
    mapping = {"files": [f"{kind}_{run}-epo.fif" for run in RUNS], "events": {"left": "left", "right": "right"},
               "split": {"method": "holdout", "by": "run", "test": ["03"]}, "cache_dir": "cache", **extra}
    return from_mapping(DataConfig, mapping, "data")


@pytest.mark.parametrize("kind, choice", [("slow", "slow"), ("rhythm", "mu_beta")])
def test_the_check_picks_the_view_that_carries_the_signal(cut, kind, choice):
    check = views.check_views(data_config(cut, kind, bandpass="auto"), cut, seed=0)
    assert check.n_trials == 2 * 2 * TRIALS_PER_CLASS  # runs 01 and 02: the test run 03 is never seen
    assert check.choice == choice, check
    other = "mu_beta" if choice == "slow" else "slow"
    assert check.scores[choice] >= 0.85 and check.scores[other] <= 0.7, check.scores


def test_the_default_band_warns_on_cut_trials_that_carry_slow_fields_only(cut, make_experiment, tmp_path):
    from pipeline.record.config import ExperimentConfig

    def resolve(kind):
        raw = make_experiment([], tmp_path / "runs", data={"files": [f"{kind}_{r}-epo.fif" for r in RUNS],
                                                           "events": {"left": "left", "right": "right"},
                                                           "tmin": 0.0, "tmax": 1.0, "picks": {}, "resample": None,
                                                           "split": {"method": "holdout", "by": "run", "test": ["03"]}})
        return views.resolve(from_mapping(ExperimentConfig, raw, "config"), cut, seed=0)

    cfg, notes, warnings, check = resolve("slow")
    assert cfg.data.bandpass == [8.0, 30.0] and notes == []  # the configured band is kept ...
    assert check.choice == "slow" and len(warnings) == 1  # ... and the run says what it would miss
    assert "'data.bandpass: auto'" in warnings[0] and f"slow fields {check.scores['slow']:.2f}" in warnings[0]
    _, _, warnings, check = resolve("rhythm")
    assert check.choice == "mu_beta" and warnings == []


def test_a_view_whose_window_starts_inside_its_filter_transient_is_not_chosen(cut):
    # trials start at -1.5 s: the mu/beta filters settle 0.36 s later, the slow band's 0.45 s later
    check = views.check_views(data_config(cut, "slow", bandpass="auto", tmin=-1.1, tmax=-0.1), cut, seed=0)
    assert check.choice == "mu_beta" and list(check.unavailable) == ["slow"]
    assert "starts inside the filter transient" in check.unavailable["slow"] and "slow view cannot" in check.describe()


def test_recordings_are_checked_only_when_asked(write_config):
    from pipeline.record.config import load_config

    cfg, config_dir = load_config(write_config())  # continuous FIF recordings on the mu/beta band
    assert views.resolve(cfg, config_dir, seed=0)[1:] == ([], [], None)


def test_auto_band_is_refused_where_it_cannot_be_chosen(cut):
    with pytest.raises(ConfigError, match="'preprocessed: true' skips"):
        data_config(cut, "slow", bandpass="auto", preprocessed=True)
    from datasets.epochs import load_epochs

    with pytest.raises(ValueError, match="chosen on the training trials when a run starts"):
        load_epochs(data_config(cut, "slow", bandpass="auto"), cut)


@pytest.mark.slow
def test_bandpass_auto_trains_the_slow_fields_decoder_and_decodes_held_out_trials(cut, make_experiment, tmp_path):
    from pipeline.train import run_training

    raw = make_experiment([f"slow_{r}-epo.fif" for r in RUNS], tmp_path / "runs",
                          data={"events": {"left": "left", "right": "right"}, "tmin": 0.0, "tmax": 1.0, "picks": {},
                                "bandpass": "auto", "resample": None},
                          model={"name": "auto", "params": {}}, optim={"lr": "auto"}, trainer={"max_epochs": 60})
    path = cut / "auto.yaml"
    path.write_text(yaml.safe_dump(raw))
    from pipeline.record.config import load_config

    cfg, config_dir = load_config(path)
    summary = run_training(cfg, config_dir, progress=False)
    assert summary["model"] == "amplitude" and summary["view_check"]["choice"] == "slow"
    assert summary["recipe"][0].startswith("data.bandpass auto -> slow [None, 5.0]")
    assert summary["recipe"][1].startswith("model.name auto -> amplitude")
    saved = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert saved["data"]["bandpass"] == [None, 5.0] and saved["model"]["name"] == "amplitude"  # what ran
    assert summary["test"]["balanced_accuracy"] >= 0.85, summary["test"]  # 40 held-out trials, chance 0.5
    info = json.loads((Path(summary["run_dir"]) / "data_info.json").read_text())
    assert info["sfreq"] == 20.0  # the slow band decimated (resample auto)
