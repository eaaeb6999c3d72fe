"""MOABB as a data source (``data.moabb``): MOABB's FakeDataset (no download) through the project's own epoching."""

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("moabb")

from datasets.config import DataConfig  # noqa: E402
from datasets.epochs import load_epochs  # noqa: E402
from datasets.typed import from_mapping  # noqa: E402

#: 2 subjects x 2 sessions x 2 runs of 30 s, 12 alternating cues per run, 3 channels at 128 Hz
FAKE = {"dataset": "FakeDataset", "options": {"n_subjects": 2, "n_sessions": 2, "n_runs": 2, "duration": 30,
                                               "n_events": 12, "seed": 3, "event_list": ["left_hand", "right_hand"]}}


def config(tmp_path, **moabb):
    return from_mapping(DataConfig, {"moabb": {**FAKE, **moabb}, "events": {"left_hand": "left", "right_hand": "right"},
                                     "tmin": 0.0, "tmax": 1.0, "cache_dir": str(tmp_path / "cache")}, "data")


@pytest.fixture(scope="module")
def fake_epochs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("moabb")
    return tmp, load_epochs(config(tmp), tmp)


def test_the_fake_dataset_is_what_the_test_assumes():
    from moabb.datasets.fake import FakeDataset

    ds = FakeDataset(**FAKE["options"])
    assert (ds.paradigm, ds.n_sessions, ds.n_runs, list(ds.event_id)) == ("imagery", 2, 2, ["left_hand", "right_hand"])
    assert ds.subject_list == [1, 2]


def test_every_run_becomes_epochs_with_its_groups_and_labels(fake_epochs):
    from moabb.datasets.fake import FakeDataset

    _, ep = fake_epochs
    # 8 runs; the first cue of a run lies before the causal filters settle and is dropped, as the server would
    assert len(ep.files) == 8 and len(ep.y) == 8 * 11
    assert ep.ch_names == ["C3", "Cz", "C4"] and ep.sfreq == 128.0 and ep.X.shape[1:] == (3, 128)
    for level, values in (("subject", {"1", "2"}), ("session", {"0", "1"}), ("run", {"0", "1"})):
        assert set(ep.groups[level]) == values
    # each run holds 11 epochs of one subject/session/run, and the labels follow MOABB's events in order
    raw = FakeDataset(**FAKE["options"]).get_data([1])[1]["0"]["0"]
    codes = raw.get_data(picks=[raw.ch_names.index("stim")])[0]
    cue_codes = codes[codes > 0][1:]  # the dropped first cue
    first_run = ep.file_index == 0
    assert list(ep.y[first_run]) == [int(c) - 1 for c in cue_codes]  # left_hand=1 -> class 0, right_hand=2 -> 1
    assert set(zip(ep.groups["subject"][first_run], ep.groups["session"][first_run], ep.groups["run"][first_run])) == {("1", "0", "0")}


def test_the_epochs_hold_the_runs_signal_at_the_cues(fake_epochs):
    """The project's causal filter on MOABB's raw run, cut at MOABB's event samples, is what the epochs hold."""
    from moabb.datasets.fake import FakeDataset

    from datasets.dsp import CausalPreprocessor

    _, ep = fake_epochs
    raw = FakeDataset(**FAKE["options"]).get_data([2])[2]["1"]["1"]  # the last run: subject 2, session 1, run 1
    stim = raw.get_data(picks=[raw.ch_names.index("stim")])[0]
    onsets = np.flatnonzero(stim)[1:]
    filtered = CausalPreprocessor(ep.spec).process(raw.get_data(picks=["C3", "Cz", "C4"]))
    expected = np.stack([filtered[:, s : s + 128] for s in onsets])
    np.testing.assert_allclose(ep.X[ep.file_index == 7], expected, rtol=1e-4, atol=1e-9)


def test_a_second_read_uses_the_cache_and_other_data_do_not(fake_epochs):
    tmp, ep = fake_epochs
    again = load_epochs(config(tmp), tmp)
    assert again.cache_path == ep.cache_path
    other = load_epochs(config(tmp, options={**FAKE["options"], "seed": 4}), tmp)
    assert other.cache_path != ep.cache_path


def test_subjects_sessions_and_runs_select(tmp_path):
    ep = load_epochs(config(tmp_path, subjects=[2], sessions=["1"], runs=["0"]), tmp_path)
    assert len(ep.files) == 1 and set(ep.groups["subject"]) == {"2"} and set(ep.groups["session"]) == {"1"}


@pytest.mark.parametrize("moabb, message", [
    ({"dataset": "BNCI2014001"}, "close names: BNCI2014_001"),
    ({"subjects": [7]}, "does not have"),
    ({"sessions": ["9"]}, "match none of subject 1's sessions"),
    ({"options": {"n_subject": 2}}, "do not fit FakeDataset"),
    ({"module": "no_such_lab_datasets"}, "'moabb.module' ('no_such_lab_datasets') cannot be imported"),
])
def test_bad_input_is_one_line_naming_what_is_allowed(tmp_path, moabb, message):
    with pytest.raises((ValueError, TypeError)) as info:
        load_epochs(config(tmp_path, **moabb), tmp_path)
    assert message in str(info.value) and "\n" not in str(info.value)
    assert not (tmp_path / "cache").exists()


def files_under(path: Path) -> list[Path]:
    return [p for p in path.rglob("*") if p.is_file()] if path.exists() else []


def bnci_without_data(tmp_path: Path, monkeypatch, home: Path) -> DataConfig:
    """BNCI2014_001 subject 1 with MOABB's data folder at ``tmp_path/mne_data`` and HOME at ``home``."""
    home.mkdir(exist_ok=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne_data"))
    return from_mapping(DataConfig, {"moabb": {"dataset": "BNCI2014_001", "subjects": [1]},
                                     "events": {"left_hand": "left"}, "cache_dir": str(tmp_path / "cache")}, "data")


def test_a_dataset_not_downloaded_is_refused_before_any_download(tmp_path, monkeypatch):
    """No data folder at all: refused at once, saying where MOABB looks and how to download; nothing written."""
    cfg = bnci_without_data(tmp_path, monkeypatch, home=tmp_path / "home")
    with pytest.raises(FileNotFoundError, match=r"BNCI2014_001 is not downloaded: .*mne_data does not exist.*download"):
        load_epochs(cfg, tmp_path)
    assert files_under(tmp_path) == []


def test_a_data_folder_without_the_dataset_is_refused_with_the_network_blocked(tmp_path, monkeypatch):
    """The folder exists but lacks the files: MOABB's own lookup runs with the network blocked and fails."""
    (tmp_path / "mne_data").mkdir()
    cfg = bnci_without_data(tmp_path, monkeypatch, home=tmp_path)
    with pytest.raises(FileNotFoundError, match=r"subject 1 is not downloaded under .*mne_data"):
        load_epochs(cfg, tmp_path)
    assert files_under(tmp_path) == []
    import socket

    assert socket.socket.connect.__name__ == "connect"  # the block is lifted afterwards
