"""LSL recordings (XDF) read through pyxdf into MNE, on files written by an independent writer (tests/datasets/xdf_spec.py).

The files put every stream on its own clock (an offset of hundreds of seconds, a different one per stream, as
LabRecorder measures them) and jitter the amplifier's time stamps, so the checks fail without pyxdf's clock
synchronisation or its dejitter."""

from __future__ import annotations

from pathlib import Path

import mne
import numpy as np
import pytest
import yaml

from datasets.config import DataConfig, XdfConfig
from datasets.reading import list_recordings, read_raw
from datasets.typed import ConfigError
from datasets.xdf import read_xdf

from xdf_spec import SpecStream, write_spec_xdf

SFREQ = 250.0
CHANNELS = ["C3", "Cz", "C4", "FC1", "FC2", "CP1", "CP2", "Pz"]
SIGNAL_OFFSET, MARKER_OFFSET = 1000.25, -3.7  # recorder clock = stream clock + offset
JITTER = 0.006  # s: the amplifier's stamps scatter by up to this (1.5 samples); the first one by all of it
T0 = 5000.0  # recorder time of the first sample


def signal_stream(sid: int, name: str, data_volts: np.ndarray, stype: str = "EEG", names=CHANNELS,
                  units: list[str] | None = None, seed: int = 0) -> SpecStream:
    """``data_volts`` [n_chans, n] as a stream in microvolts (or ``units``), stamped on its own jittered clock."""
    units = units or ["microvolts"] * len(names)
    scale = np.array([{"microvolts": 1e6, "millivolts": 1e3, "volts": 1.0}[u] for u in units])
    s = SpecStream(sid, name, stype, SFREQ, "float32", len(names),
                   [{"label": c, "type": "EEG", "unit": u} for c, u in zip(names, units)])
    n = data_volts.shape[1]
    jitter = np.random.default_rng(seed).uniform(-JITTER, JITTER, n)
    jitter[0] = JITTER  # the first stamp late: read without dejitter, every onset would be off by 1.5 samples
    stamps = T0 + np.arange(n) / SFREQ + jitter - SIGNAL_OFFSET
    s.samples = list(zip(stamps, (data_volts * scale[:, None]).T))
    s.offsets = [(t, SIGNAL_OFFSET) for t in np.arange(stamps[0], stamps[-1], 5.0)]
    return s


def marker_stream(sid: int, name: str, times: np.ndarray, labels: list[str]) -> SpecStream:
    """Markers at recorder ``times`` (s), stamped on the marker stream's own clock."""
    s = SpecStream(sid, name, "Markers", 0.0, "string", 1)
    s.samples = [(t - MARKER_OFFSET, [label]) for t, label in zip(times, labels)]
    s.offsets = [(t, MARKER_OFFSET) for t in np.arange(T0 - MARKER_OFFSET, T0 + 60 - MARKER_OFFSET, 5.0)]
    return s


def glove_stream(sid: int) -> SpecStream:
    """A regularly sampled stream that is not a signal (a data glove): never chosen by default."""
    s = SpecStream(sid, "Glove", "MoCap", 60.0, "float32", 5)
    s.samples = [(T0 + k / 60.0 - 12.0, np.full(5, k, np.float32)) for k in range(120)]
    s.offsets = [(T0, 12.0)]
    return s


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    """A 12 s, 8-channel EEG stream, a glove and 6 cue markers, each on its own clock; returns path and truth."""
    rng = np.random.default_rng(3)
    data = rng.normal(0, 20e-6, (len(CHANNELS), int(12 * SFREQ)))
    onsets = np.array([1.0, 2.5, 4.02, 6.3, 8.0, 10.5])  # s after the first sample, on the recorder's clock
    labels = ["grasp", "open", "rest", "grasp", "open", "rest"]
    path = tmp_path_factory.mktemp("xdf") / "sub-01_run-01.xdf"
    write_spec_xdf(path, [glove_stream(1), marker_stream(2, "bmi-cues", T0 + onsets, labels),
                          signal_stream(3, "SimAmp", data)])
    return path, data, onsets, labels


def test_the_signal_stream_reads_with_its_names_types_units_and_rate(recording):
    path, data, _, _ = recording
    raw = read_xdf(path)
    assert raw.info["sfreq"] == SFREQ and raw.ch_names == CHANNELS
    assert set(raw.get_channel_types()) == {"eeg"}
    assert raw.n_times == data.shape[1]
    # microvolts in the stream, volts in MNE (float32 in the file: 7 digits)
    np.testing.assert_allclose(raw.get_data(), data, rtol=1e-6, atol=1e-12)


def test_marker_onsets_land_within_one_sample_after_clock_offsets_and_dejitter(recording):
    path, _, onsets, labels = recording
    raw = read_xdf(path)
    assert list(raw.annotations.description) == labels
    # onset = marker time - first sample time, both on the recorder's clock: the two streams' offsets (1004 s
    # apart) cancel only when pyxdf applies them, the late first stamp only when it dejitters
    np.testing.assert_array_less(np.abs(raw.annotations.onset - onsets), 1.0 / SFREQ)
    assert np.abs(raw.annotations.onset - onsets).max() < 0.4 / SFREQ


def test_units_of_each_channel_are_honoured(tmp_path):
    data = np.random.default_rng(0).normal(0, 1e-5, (3, 500))
    path = tmp_path / "units.xdf"
    write_spec_xdf(path, [signal_stream(1, "Amp", data, names=["C3", "C4", "EMG1"],
                                        units=["microvolts", "millivolts", "volts"])])
    np.testing.assert_allclose(read_xdf(path).get_data(), data, rtol=1e-6, atol=1e-15)


def test_a_stream_is_chosen_by_name_or_type_and_durations_apply(tmp_path):
    data = np.random.default_rng(1).normal(0, 1e-5, (len(CHANNELS), 1000))
    path = tmp_path / "two.xdf"
    write_spec_xdf(path, [signal_stream(1, "AmpA", data), signal_stream(2, "AmpB", 2 * data),
                          marker_stream(3, "cues", np.array([T0 + 1.0]), ["grasp"])])
    np.testing.assert_allclose(read_xdf(path, XdfConfig(stream="AmpB")).get_data(), 2 * data, rtol=1e-6, atol=1e-12)
    raw = read_xdf(path, XdfConfig(stream="AmpA", markers="Markers", durations={"grasp": 1.5}))
    np.testing.assert_allclose(raw.get_data(), data, rtol=1e-6, atol=1e-12)
    assert list(raw.annotations.duration) == [1.5]


def test_two_candidate_signal_streams_are_refused_with_both_listed(tmp_path):
    data = np.zeros((len(CHANNELS), 100))
    path = tmp_path / "two.xdf"
    write_spec_xdf(path, [signal_stream(1, "AmpA", data), signal_stream(2, "AmpB", data), glove_stream(3)])
    with pytest.raises(ValueError, match="2 signal streams fit") as err:
        read_xdf(path)
    message = str(err.value)
    assert "'AmpA' (type EEG, 8 ch, 250 Hz, float32)" in message and "'AmpB'" in message and "'Glove'" in message
    assert "data.xdf.stream" in message and "\n" not in message


def test_no_signal_stream_and_unknown_names_are_refused_with_the_streams_listed(tmp_path):
    path = tmp_path / "glove.xdf"
    write_spec_xdf(path, [glove_stream(1), marker_stream(2, "cues", np.array([T0 + 0.5]), ["grasp"])])
    with pytest.raises(ValueError, match=r"no stream of type EEG/MEG/ECOG/SEEG with a nominal rate.*'Glove' \(type MoCap"):
        read_xdf(path)
    raw = read_xdf(path, XdfConfig(stream="MoCap"))  # named: any regular numeric stream will do
    assert raw.info["sfreq"] == 60.0 and raw.ch_names == [f"ch{k}" for k in range(1, 6)]
    with pytest.raises(ValueError, match=r"'data.xdf.stream' \('Amp'\) names no stream of glove.xdf.*'cues' \(type Markers"):
        read_xdf(path, XdfConfig(stream="Amp"))
    with pytest.raises(ValueError, match=r"'data.xdf.stream' \('cues'\) in glove.xdf is 'cues'.*not a regularly sampled"):
        read_xdf(path, XdfConfig(stream="cues"))
    with pytest.raises(ValueError, match=r"'data.xdf.markers' \('Glove'\) names no irregular"):
        read_xdf(path, XdfConfig(stream="Glove", markers="Glove"))


def test_bad_files_and_config_values_are_one_line_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.xdf"):
        read_xdf(tmp_path / "missing.xdf")
    broken = tmp_path / "broken.xdf"
    broken.write_bytes(b"not an xdf file")
    with pytest.raises(ValueError, match=r"Could not read XDF file .*broken.xdf"):
        read_xdf(broken)
    with pytest.raises(ConfigError, match=r"'xdf.durations'"):
        XdfConfig(durations={"grasp": -1.0})
    with pytest.raises(ConfigError, match=r"'xdf.stream'"):
        XdfConfig(stream=" ")


def test_data_files_take_xdf_through_read_raw(recording):
    path, data, onsets, _ = recording
    cfg = DataConfig(files=[path.name], events={"grasp": "grasp", "open": "open"}, xdf=XdfConfig(stream="SimAmp"))
    [rec] = list_recordings(cfg, path.parent)
    assert (rec.subject, rec.run) == ("01", "01")
    raw = read_raw(rec.path, cfg)
    events, _ = mne.events_from_annotations(raw, verbose="error")
    assert len(events) == len(onsets)


def xdf_from_fif(fif: Path, out: Path, seed: int) -> Path:
    """A synthetic FIF recording re-recorded as XDF: its EEG as an amplifier stream, its cues as markers."""
    raw = mne.io.read_raw_fif(fif, preload=True, verbose="error").pick("eeg")
    assert raw.info["sfreq"] == SFREQ
    ann = raw.annotations
    path = out / fif.name.replace("_raw.fif", ".xdf")
    write_spec_xdf(path, [signal_stream(1, "SimAmp", raw.get_data(), names=raw.ch_names, seed=seed),
                          marker_stream(2, "bmi-cues", T0 + ann.onset - raw.first_time, list(ann.description))])
    return path


def test_a_short_training_run_reads_xdf_recordings(tmp_path):
    from datasets.synthetic import write_synthetic
    from pipeline.record.config import load_config
    from pipeline.train import run_training

    fifs = write_synthetic(tmp_path / "fif", n_subjects=1, n_runs=3, trials_per_class=4, seed=0)
    out = tmp_path / "xdf"
    out.mkdir()
    files = [xdf_from_fif(f, out, seed=k).name for k, f in enumerate(fifs)]
    config = {
        "data": {"files": files, "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
                 "xdf": {"stream": "SimAmp", "durations": {"rest": 2.0, "grasp": 2.0, "open": 2.0}},
                 "tmin": 0.5, "tmax": 1.5, "picks": {"names": CHANNELS}, "bandpass": [8.0, 30.0], "resample": 125.0,
                 "split": {"method": "holdout", "by": "run", "test": ["03"]}, "batch_size": 16, "cache_dir": "cache"},
        "model": {"name": "shallow", "params": {"n_filters": 8}},
        "trainer": {"max_epochs": 1, "enable_progress_bar": False, "early_stopping_patience": None, "refit": False},
        "tracking": {"mode": "disabled"}, "seed": 0, "runs_dir": str(tmp_path / "runs"),
    }
    (out / "exp.yaml").write_text(yaml.safe_dump(config))
    cfg, config_dir = load_config(out / "exp.yaml", [])
    summary = run_training(cfg, config_dir)
    # every cue became a window (4 per class and run): the markers reached the epochs, run 03 tests
    assert summary["n_test"] == 12 and summary["n_train"] + summary["n_val"] == 24
    # one epoch learns little: what must hold is that the test run's 4 cues of each class were scored as decoded
    matrix = np.asarray(summary["test_confusion_matrix"])
    assert matrix.sum(axis=1).tolist() == [4, 4, 4]
    assert summary["test"]["accuracy"] == pytest.approx(np.trace(matrix) / 12)


def recording_file(path: Path, also_xdf: Path | None = None):
    """A calibration recorder's file (datasets.recorder) of 4 s of an 8-channel stream in microvolts, one grasp cue
    at 1.502 s; returns it flushed, with the samples in volts."""
    from mne_lsl.lsl import StreamInfo

    from datasets.recorder import RecordingFile, stream_units_to_si
    from datasets.synthetic import sensor_info

    full = sensor_info("eeg", SFREQ)
    info = mne.pick_info(full, mne.pick_channels(full["ch_names"], CHANNELS, ordered=True))
    sinfo = StreamInfo("SimAmp", "EEG", len(CHANNELS), SFREQ, "float32", "sim-src")
    sinfo.set_channel_info(info)
    sinfo.set_channel_units(["microvolts"] * len(CHANNELS))
    stream_info = sinfo.get_channel_info()
    to_si = stream_units_to_si(stream_info)
    rec = RecordingFile(path, stream_info, {"grasp": 1.0}, also_xdf=also_xdf, xdf_header=sinfo.as_xml,
                        to_si=to_si[:, None], cue_stream="bmi-cues")
    data = np.random.default_rng(5).normal(0, 2e-5, (len(CHANNELS), 1000)).astype(np.float32).astype(float)
    stamps = 700.0 + np.arange(1000) / SFREQ
    rec.append(data[:, :400], stamps[:400])
    rec.mark(700.0 + 1.502, "grasp")  # between two samples: the FIF puts it on the nearest, the XDF keeps its time
    rec.append(data[:, 400:], stamps[400:])
    rec.flush()
    return rec, data


def test_the_recorder_writes_an_xdf_that_reads_back_as_its_fif(tmp_path):
    """A calibration recording written as FIF and XDF (datasets.xdf_writer) at once: pyxdf reads the XDF, and the
    reader gives the FIF's samples, channels and cues (the marker at its own time, within one sample)."""
    rec, data = recording_file(tmp_path / "sub-01_run-01_raw.fif", also_xdf=tmp_path / "sub-01_run-01.xdf")
    fif = mne.io.read_raw_fif(rec.path, preload=True, verbose="error")
    xdf = read_raw(rec.xdf_path, DataConfig(files=["x"], events={"grasp": "grasp"},
                                            xdf=XdfConfig(durations={"grasp": 1.0})))
    assert xdf.ch_names == fif.ch_names == CHANNELS and xdf.info["sfreq"] == SFREQ
    np.testing.assert_allclose(xdf.get_data(), fif.get_data(), rtol=1e-6, atol=1e-12)
    np.testing.assert_allclose(xdf.get_data(), data, rtol=1e-6, atol=1e-12)
    assert list(xdf.annotations.description) == ["grasp"] and list(xdf.annotations.duration) == [1.0]
    assert abs(xdf.annotations.onset[0] - 1.502) < 1e-6 and abs(fif.annotations.onset[0] - 1.500) < 1e-6
    assert not list(tmp_path.glob(".*"))  # no temporary file left beside them


def test_calibrate_in_xdf_writes_a_training_config_that_reads_its_files(tmp_path):
    """bmi calibrate --format xdf: the runs are .xdf files and train.yaml names their streams and cue durations."""
    import argparse

    from datasets.config import DataConfig as Data
    from datasets.typed import from_mapping, load_yaml
    from pipeline.calibrate import Session, register, write_training_config
    from pipeline.paradigm import load_calibration

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers())
    assert parser.parse_args(["calibrate", "--stream", "lsl:A", "--out", "x", "--format", "both"]).format == "both"
    with pytest.raises(SystemExit):
        parser.parse_args(["calibrate", "--stream", "lsl:A", "--out", "x", "--format", "edf"])
    cfg = load_calibration(None)
    session = Session(tmp_path, fmt="xdf", stream="SimAmp", cues="bmi-cues")
    rec, data = recording_file(tmp_path / "sub-01_ses-01_run-01.xdf")
    assert rec.path.is_file() and not list(tmp_path.glob("*.fif"))  # XDF only
    session.files.append(rec)
    config = write_training_config(session, rec.info, cfg, ["grasp", "rest"])
    section = load_yaml(config)["data"]
    assert section["files"] == ["sub-01_ses-01_run-01.xdf"]
    assert section["xdf"] == {"stream": "SimAmp", "markers": "bmi-cues",
                              "durations": {"grasp": cfg.paradigm.cue_seconds, "rest": cfg.paradigm.cue_seconds}}
    data_cfg = from_mapping(Data, section, "data")
    [found] = list_recordings(data_cfg, tmp_path)
    raw = read_raw(found.path, data_cfg)
    np.testing.assert_allclose(raw.get_data(), data, rtol=1e-6, atol=1e-12)
    assert list(raw.annotations.description) == ["grasp"]
    # the cue's length, cut where the recording ends (as the FIF recorder cuts a cue still running)
    assert np.isclose(raw.annotations.duration[0], min(cfg.paradigm.cue_seconds, raw.times[-1] - 1.502))
