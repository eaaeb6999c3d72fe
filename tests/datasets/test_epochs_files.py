"""Cut trials (MNE Epochs files, epoched EEGLAB sets) through ``data.files``: classes, metadata and groups, the
filter transient at each trial's start, ``data.preprocessed``, bad input, and a model trained on them that exports.

The trials are real files written by MNE: the project's synthetic recordings cut with ``mne.Epochs`` and saved
with ``Epochs.save`` (and exported to EEGLAB by eeglabio, an independent writer), or ``mne.EpochsArray``.
"""

from __future__ import annotations

import json
from pathlib import Path

import mne
import numpy as np
import pandas as pd
import pytest
from data_helpers import data_config

from datasets.epochs import load_epochs
from datasets.epochs_files import is_epochs_file
from datasets.splits import make_split

TRIAL_TMIN, TRIAL_TMAX = -1.0, 2.0  # the trials' own time axis around each cue
CLASSES = {"rest": "rest", "grasp": "grasp", "open": "open"}


def _cut(raw_path: Path, out: Path, **metadata) -> Path:
    raw = mne.io.read_raw_fif(raw_path, preload=True, verbose="error")
    events, event_id = mne.events_from_annotations(raw, verbose="error")
    epochs = mne.Epochs(raw, events, event_id, tmin=TRIAL_TMIN, tmax=TRIAL_TMAX, baseline=None, preload=True,
                        verbose="error")
    if metadata:
        epochs.metadata = pd.DataFrame({k: [v] * len(epochs) for k, v in metadata.items()})
    epochs.save(out, overwrite=True, verbose="error")
    return out


@pytest.fixture(scope="module")
def recordings(tmp_path_factory):
    """Three continuous runs of one subject (250 Hz), 4 trials per class each."""
    from datasets.synthetic import write_synthetic

    return write_synthetic(tmp_path_factory.mktemp("cont"), n_subjects=1, n_runs=3, trials_per_class=4, seed=5)


@pytest.fixture(scope="module")
def cut(recordings, tmp_path_factory):
    """The runs cut into trials: named like the runs (sub-01_ses-01_run-0N-epo.fif)."""
    out = tmp_path_factory.mktemp("cut")
    return [_cut(p, out / p.name.replace("_raw.fif", "-epo.fif")) for p in recordings]


@pytest.fixture(scope="module")
def anonymous(recordings, tmp_path_factory):
    """The same trials in files whose names carry no groups; the first two hold subject/run in their metadata."""
    out = tmp_path_factory.mktemp("anon")
    return [_cut(recordings[0], out / "a-epo.fif", subject="7", run=11),
            _cut(recordings[1], out / "b-epo.fif", subject="7", run=12),
            _cut(recordings[2], out / "c-epo.fif")]


def _entries(cache: Path) -> list[Path]:
    return sorted(cache.glob("*")) if cache.is_dir() else []


def test_epochs_files_are_recognised(cut, recordings, tmp_path):
    assert all(is_epochs_file(p) for p in cut)
    assert not any(is_epochs_file(p) for p in recordings)
    data = mne.read_epochs(cut[0], verbose="error")
    mne.export.export_epochs(tmp_path / "trials.set", data, fmt="eeglab", verbose="error")
    assert is_epochs_file(tmp_path / "trials.set")
    raw = mne.io.read_raw_fif(recordings[0], verbose="error").crop(0, 5)
    mne.export.export_raw(tmp_path / "continuous.set", raw, fmt="eeglab", verbose="error")
    assert not is_epochs_file(tmp_path / "continuous.set")


def test_classes_come_from_event_id_through_events(cut, tmp_path):
    ep = load_epochs(data_config(cut, tmp_path, events={"grasp": "grasp", "open": "open"}))
    truth = mne.read_epochs(cut[0], verbose="error")
    names = {code: name for name, code in truth.event_id.items()}
    first = [names[c] for c in truth.events[:, 2] if names[c] != "rest"]
    n_first = int(np.sum(ep.file_index == 0))
    assert [ep.classes[i] for i in ep.y[:n_first]] == first  # trial order and class of every trial
    assert np.bincount(ep.y).tolist() == [12, 12]  # 4 per class per run, rest left out
    assert ep.event_counts == {"grasp": 12, "open": 12, "rest": 12}
    assert ep.X.shape == (24, len(ep.ch_names), 125) and ep.sfreq == 125.0
    assert [t["event"] for t in ep.trial_info[:n_first]] == first
    assert ep.source["kind"] == "cut_trials" and ep.source["filter_start"] == "trial_start"


def test_groups_from_file_names_and_split_keeps_runs_apart(cut, tmp_path):
    ep = load_epochs(data_config(cut, tmp_path))
    assert sorted(set(ep.groups["run"])) == ["01", "02", "03"] and set(ep.groups["subject"]) == {"01"}
    cfg = data_config(cut, tmp_path, split={"method": "holdout", "by": "run", "test": ["03"]})
    split = make_split(cfg.split, ep.y, ep.groups, ep.trial)
    assert set(ep.groups["run"][split.test]) == {"03"} and "03" not in set(ep.groups["run"][split.train])
    assert len(split.test) == 12 and len(np.unique(ep.trial)) == len(ep.y)  # every trial its own


def test_groups_from_metadata_else_blocks_of_consecutive_trials(anonymous, tmp_path):
    with pytest.warns(UserWarning, match=r"c-epo.fif: neither its file name nor its trials' metadata name a run.*5 blocks"):
        ep = load_epochs(data_config(anonymous, tmp_path))
    runs, files = ep.groups["run"], ep.file_index
    assert set(runs[files == 0]) == {"11"} and set(runs[files == 1]) == {"12"}
    assert set(ep.groups["subject"][files < 2]) == {"7"} and set(ep.groups["subject"][files == 2]) == {"c"}
    blocks = runs[files == 2]
    assert list(dict.fromkeys(blocks)) == [f"c-b{k}" for k in range(1, 6)]  # in the file's trial order
    assert all(np.diff([int(b[-1]) for b in blocks]) >= 0)
    rows = [t for t, f in zip(ep.trial_info, files) if f == 0]
    assert rows[0]["run"] == 11 and rows[0]["subject"] == "7" and rows[0]["file"] == 0  # metadata kept


def test_filters_start_at_each_trial_and_agree_with_the_recording_once_settled(cut, recordings, tmp_path):
    """Past the settling time the cut trials' windows are the continuous recording's (to its 1 % residual); the
    window is the same stretch of signal, filtered from the trial's start instead of the recording's."""
    settle = load_epochs(data_config(cut, tmp_path, resample=None, tmin=0.0, tmax=1.0)).source["settle_seconds"]
    assert 0.2 < settle < 0.6
    tmin = round((TRIAL_TMIN + settle + 0.01) * 250) / 250  # on the sample grid: both round alike
    a = np.asarray(load_epochs(data_config(cut, tmp_path, resample=None, tmin=tmin, tmax=tmin + 1)).X)
    b = np.asarray(load_epochs(data_config(recordings, tmp_path, resample=None, tmin=tmin, tmax=tmin + 1)).X)
    first = slice(0, 10)  # the first 40 ms, where the start-up error is largest
    err = np.sqrt(((a[..., first] - b[..., first]) ** 2).mean(axis=(1, 2)) / (b[..., first] ** 2).mean(axis=(1, 2)))
    assert err.max() < 0.02 and err.max() > 1e-5  # settled, but indeed filtered from the trial's start


def test_a_window_inside_the_filter_transient_is_refused(cut, tmp_path):
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match=r"starts inside the filter transient.*settle 0\.36\d s later .* "
                                         r"\(27%\) of the window would be filter start-up\. Move 'data.tmin' to -0.63\d s or later.*"
                                         r"'data.preprocessed: true'") as err:
        load_epochs(data_config(cut, tmp_path, tmin=-0.9, tmax=0.1))
    assert "\n" not in str(err.value) and _entries(cache) == []  # one line, nothing written


def test_preprocessed_trials_skip_the_filters(cut, tmp_path):
    ep = load_epochs(data_config(cut, tmp_path, tmin=-0.9, tmax=0.1, preprocessed=True, resample=None))
    truth = mne.read_epochs(cut[0], verbose="error").get_data(picks=ep.ch_names)
    start = int(round((-0.9 - TRIAL_TMIN) * 250))
    np.testing.assert_allclose(ep.X[: len(truth)], truth[:, :, start : start + 250], rtol=1e-6, atol=1e-12)
    assert ep.source["filter_start"] == "preprocessed" and ep.spec.sos == [] and ep.spec.settle_samples == 0
    with pytest.raises(ValueError, match=r"'resample' \(125.0\) needs the project's anti-alias filter"):
        load_epochs(data_config(cut, tmp_path, preprocessed=True))


@pytest.mark.parametrize("overrides, message", [
    ({"tmin": 1.5, "tmax": 2.5}, r"window 'data.tmin'=1.5 s .. 'data.tmax'=2.5 s lies outside the trials of "
                                 r"sub-01_ses-01_run-01-epo.fif \(-1 .. 2 s around each event\)"),
    ({"picks": {"names": ["C3", "C4", "XX9"]}}, r"'picks.names' has channels not in the recording: \['XX9'\]"),
    ({"events": {"squeeze": "grasp", "T9": "open"}}, r"No trials in sub-01_ses-01_run-01-epo.fif match 'events'.*"
                                                      r"event_id holds: grasp \(1\), open \(2\), rest \(3\)"),
    ({"resample": 100.0}, r"run-01-epo.fif \(250 Hz\): 'resample' \(100.0 Hz\) must divide"),
    ({"bandpass": [8.0, 200.0], "resample": None}, r"\(250 Hz\): 'bandpass' high edge \(200.0 Hz\) must lie between"),
])
def test_trials_that_do_not_fit_the_config_are_refused(cut, tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message) as err:
        load_epochs(data_config(cut, tmp_path, **overrides))
    assert "\n" not in str(err.value) and _entries(tmp_path / "cache") == []


def test_files_that_disagree_are_refused(cut, recordings, tmp_path):
    other = mne.read_epochs(cut[1], verbose="error")
    fast = tmp_path / "fast-epo.fif"
    mne.EpochsArray(np.repeat(other.get_data(), 2, axis=2), mne.create_info(other.ch_names, 500.0, "eeg"),
                    events=other.events, event_id=other.event_id, tmin=TRIAL_TMIN, verbose="error").save(fast)
    fewer = tmp_path / "fewer-epo.fif"
    other.copy().drop_channels(other.ch_names[:2]).save(fewer, verbose="error")
    cases = [([cut[0], fast], r"Sampling rates differ between files: .* 250.0 Hz, fast-epo.fif has 500.0 Hz"),
             ([cut[0], fewer], r"Channels differ between sub-01_ses-01_run-01-epo.fif and fewer-epo.fif: missing"),
             ([cut[0], recordings[1]], r"'data.files' mixes cut trials \(.*-epo.fif\) and continuous recordings")]
    for files, message in cases:
        with pytest.raises(ValueError, match=message):
            load_epochs(data_config(files, tmp_path))
    with pytest.raises(ValueError, match=r"'data.preprocessed: true' applies to cut trials"):
        load_epochs(data_config(recordings, tmp_path, preprocessed=True))
    assert _entries(tmp_path / "cache") == []


def test_an_epoched_eeglab_set_reads_as_the_same_trials(cut, tmp_path):
    pytest.importorskip("eeglabio")  # the independent writer
    # EEGLAB names an epoch by every event inside it: trials without the recording's annotations, cropped to
    # 2.9 s (shorter than the 3 s between cues)
    cropped = mne.read_epochs(cut[0], verbose="error").crop(tmax=TRIAL_TMAX - 0.1)
    trials = mne.EpochsArray(cropped.get_data(), cropped.info, cropped.events, TRIAL_TMIN, cropped.event_id,
                             verbose="error")
    path, fif = tmp_path / "sub-01_ses-01_run-01.set", tmp_path / "sub-01_ses-01_run-01-epo.fif"
    mne.export.export_epochs(path, trials, fmt="eeglab", verbose="error")
    trials.save(fif, verbose="error")
    from_set = load_epochs(data_config([path], tmp_path))
    from_fif = load_epochs(data_config([fif], tmp_path))
    assert from_set.y.tolist() == from_fif.y.tolist() and from_set.groups["run"].tolist() == ["01"] * 12
    scale = np.abs(np.asarray(from_fif.X)).max()
    np.testing.assert_allclose(from_set.X, from_fif.X, atol=1e-5 * scale)  # EEGLAB keeps float32 microvolts


@pytest.mark.slow  # one epoch of training and an export: about 30 s on a shared CPU
def test_a_model_trained_on_cut_trials_exports_saying_so(cut, tmp_path):
    import yaml

    from exports.onnx import export_run, read_model_metadata
    from pipeline.record.config import load_config
    from pipeline.train import run_training

    config = {
        "data": {"files": [str(p) for p in cut], "events": CLASSES, "tmin": 0.0, "tmax": 1.0,
                 "picks": {"names": ["FC1", "FC2", "C3", "Cz", "C4", "CP1", "CP2", "Pz"]}, "resample": 125.0,
                 "split": {"method": "holdout", "by": "run", "test": ["03"]}, "batch_size": 16, "cache_dir": "cache"},
        "model": {"name": "shallow", "params": {"n_filters": 8}},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "early_stopping_patience": None, "refit": False},
        "tracking": {"mode": "disabled"}, "seed": 0, "runs_dir": str(tmp_path / "runs"),
    }
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(config))
    summary = run_training(*load_config(path), progress=False)
    info = json.loads((Path(summary["run_dir"]) / "data_info.json").read_text())
    assert info["source"]["kind"] == "cut_trials" and info["source"]["trial_tmin"] == TRIAL_TMIN
    meta = read_model_metadata(export_run(Path(summary["run_dir"]), out=tmp_path / "m.onnx").path)
    assert meta["source"]["kind"] == "cut_trials" and meta["source"]["filter_start"] == "trial_start"
    assert 0.3 < meta["source"]["settle_seconds"] < 0.4
