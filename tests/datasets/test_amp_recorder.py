"""`bmi amp` as a real process on loopback LSL, recorded by datasets.recorder into a FIF file read back with MNE."""

from __future__ import annotations

import re
import subprocess
import sys
import time

import mne
import numpy as np
import pytest

from datasets.lsl_quiet import quiet_liblsl

quiet_liblsl()

from mne_lsl.lsl import StreamInfo, StreamInlet, StreamOutlet, local_clock, resolve_streams  # noqa: E402

from datasets.recorder import Recorder  # noqa: E402
from datasets.synthetic import CUE_SECONDS, sensor_info, session_head  # noqa: E402
from datasets.synthetic_stream import SyntheticStream  # noqa: E402

SFREQ = 250.0
LATE_CUE = re.compile(r"(\w+) at sample (\d+) \((\d+) samples? late\)")  # bmi amp's report of a late cue


def start_amp(name: str, cues: str, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "amp", "--synthetic", "--name", name, "--cues",
                             f"lsl:{cues}", "--no-status", *extra], stderr=subprocess.PIPE, text=True)


def stop(proc: subprocess.Popen) -> str:
    proc.terminate()
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
    return err


@pytest.fixture
def names():
    stamp = time.monotonic_ns()
    return f"TestAmp-{stamp}", f"test-cues-{stamp}"


def test_the_amplifier_describes_its_channels_and_streams_in_real_time(names):
    name, cues = names
    amp = start_amp(name, cues, "--subject", "2")
    try:
        found = resolve_streams(timeout=15, name=name)
        assert len(found) == 1
        inlet = StreamInlet(found[0])
        inlet.open_stream(timeout=5)
        sinfo = inlet.get_sinfo(timeout=5)
        info = sinfo.get_channel_info()  # mne-lsl: the description -> mne.Info
        expected = sensor_info("eeg", SFREQ)
        assert info["ch_names"] == expected["ch_names"] and set(info.get_channel_types()) == {"eeg"}
        assert sinfo.get_channel_units() == ["microvolts"] * 64 and {ch["unit_mul"] for ch in info["chs"]} == {-6}
        np.testing.assert_allclose([ch["loc"][:3] for ch in info["chs"]], [ch["loc"][:3] for ch in expected["chs"]],
                                   atol=1e-6)
        inlet.flush()  # what was buffered while the description was read
        start, n, chunks = time.monotonic(), 0, []
        while time.monotonic() - start < 3.0:
            data, stamps = inlet.pull_chunk(timeout=0.1)
            if len(stamps):
                chunks.append(np.array(stamps))
                n += len(stamps)
        stamps = np.concatenate(chunks)
        assert abs(n - 3.0 * SFREQ) < 0.15 * SFREQ  # real time: 3 s of samples in 3 s
        np.testing.assert_allclose(np.diff(stamps), 1 / SFREQ, atol=1e-6)  # acquisition times, not arrival times
        assert local_clock() - stamps[-1] < 0.25  # fresh: a few 20 ms chunks at most, even on a loaded machine
        assert 3.0 < np.abs(data).std() < 60.0  # microvolts, not volts
    finally:
        stop(amp)


def test_a_recording_holds_every_sample_and_each_cue_where_the_amplifier_put_it(names, tmp_path):
    """The FIF file equals the simulation regenerated offline with the cues at the recorded annotations (to the
    sample, within float32 precision): nothing dropped or duplicated, markers on their samples, units in volts."""
    name, cues = names
    outlet = StreamOutlet(StreamInfo(cues, "Markers", 1, 0.0, "string", f"{cues}-src"))
    amp = start_amp(name, cues, "--snr", "2")
    recorder = None
    try:
        recorder = Recorder(name, cues, durations={"grasp": CUE_SECONDS, "open": CUE_SECONDS}, flush_seconds=1.0,
                            resolve_timeout=15)
        assert recorder.markers.wait_for_stream(10)
        time.sleep(2.0)  # the amplifier subscribes to the cue stream too
        rec = recorder.start_file(tmp_path / "sub-01_ses-01_run-01_raw.fif")
        time.sleep(1.0)
        for label in ("grasp", "open", "rest", "grasp"):
            outlet.push_sample([label], local_clock())
            time.sleep(1.6)
        recorder.stop_file()
    finally:
        if recorder is not None:
            recorder.close()
        err = stop(amp)
    raw = mne.io.read_raw_fif(tmp_path / "sub-01_ses-01_run-01_raw.fif", preload=True, verbose="error")
    assert list(raw.annotations.description) == ["grasp", "open", "rest", "grasp"], err
    np.testing.assert_allclose(raw.annotations.duration[:3], [CUE_SECONDS, CUE_SECONDS, 0.0], atol=1e-5)  # rest: none given
    recorded = raw.get_data()
    assert rec.stats.count >= 5 and rec.stats.interval_max < 2.0  # rewritten about every second

    head = session_head(sensor_info("eeg", SFREQ), 0, 0, 0)

    # a marker that reached the amplifier after its onset had been streamed (a loaded machine) starts its pattern
    # part-way: the amplifier reports how many samples it had streamed past the onset, and the simulation applies it there too
    late = {(label, int(onset)): int(onset) + int(behind) for label, onset, behind in LATE_CUE.findall(err)}

    def simulate(n, cue_list):
        stream = SyntheticStream(SFREQ, head, 2.0, seed=[0, 1, 1, 99])  # the amplifier's seed for subject 1, session 1
        parts, done = [], 0
        for label, sample, applied in sorted(cue_list, key=lambda cue: cue[2]):
            parts.append(stream.generate(applied - done))
            done = max(done, applied)
            stream.cue(label, sample)
        parts.append(stream.generate(n - done))
        return np.concatenate(parts, axis=1)

    def cue_at(label, sample):
        return label, sample, late.get((label, sample), 0)

    quiet = simulate(int(60 * SFREQ), [])
    first = int(np.argmin(np.linalg.norm(quiet - recorded[:, :1], axis=0)))  # where the file starts in the stream
    n = recorded.shape[1]
    base = simulate(first + n, [])[:, first:]
    assert np.abs(recorded[:, : int(SFREQ)] - base[:, : int(SFREQ)]).max() < 1e-6 * np.abs(base).max()
    # each cue within one sample of where the amplifier started it (both from the marker's timestamp, the
    # recorder's dejittered): cue patterns overlap, so choose every cue's offset given the others', twice round
    cued = [(label, first + int(round(onset * SFREQ))) for onset, label in zip(raw.annotations.onset, raw.annotations.description)]
    effects = [{d: simulate(first + n, [cue_at(label, sample + d)])[:, first:] - base for d in (-1, 0, 1)}
               for label, sample in cued]
    choice = [0] * len(cued)
    for _ in range(2):
        for i, options in enumerate(effects):
            others = sum(effects[j][choice[j]] for j in range(len(cued)) if j != i)
            choice[i] = min(options, key=lambda d: np.abs(recorded - base - others - options[d]).max())
    expected = base + sum(effects[j][choice[j]] for j in range(len(cued)))
    scale = np.abs(expected).max()
    assert np.abs(recorded - expected).max() < 1e-6 * scale, err
    assert 1e-6 < recorded.std() < 1e-4  # volts, as MNE keeps EEG


def test_the_amplifier_reports_a_cue_whose_onset_it_had_already_streamed(names):
    """A marker stamped before samples already sent cannot start its pattern on time: the amplifier says which cue
    and how late (the recording test above relies on that report); a rest cue has no pattern to be late."""
    name, cues = names
    outlet = StreamOutlet(StreamInfo(cues, "Markers", 1, 0.0, "string", f"{cues}-src"))
    amp = start_amp(name, cues)
    try:
        assert resolve_streams(timeout=15, name=name)
        time.sleep(3.0)  # the amplifier subscribes to the cue stream
        outlet.push_sample(["grasp"], local_clock() - 0.4)
        outlet.push_sample(["rest"], local_clock() - 0.4)
        time.sleep(1.0)
    finally:
        err = stop(amp)
    late = LATE_CUE.findall(err)
    assert [label for label, *_ in late] == ["grasp"], err
    # 100 samples, less the chunk (20 ms) not yet streamed, plus the marker's delivery (well under a second)
    assert 0.4 * SFREQ - 6 <= int(late[0][2]) < 1.4 * SFREQ, err


def test_the_recorder_refuses_a_missing_stream():
    with pytest.raises(RuntimeError, match="No LSL signal stream named 'NoSuchAmp"):
        Recorder(f"NoSuchAmp-{time.monotonic_ns()}", None, resolve_timeout=0.5)


def test_amp_arguments_are_checked():
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "amp", "--name", "X"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 1 and "needs --synthetic" in out.stderr
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "amp", "--synthetic", "--session", "0"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "'--session' (0) must be at least 1" in out.stderr
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "amp", "--synthetic", "--cues", "bmi-cues"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and "'--cues' ('bmi-cues') must be lsl:NAME" in out.stderr


def test_a_restarted_cue_source_delivers_each_marker_once(names):
    """A console restarted with the same source id: liblsl recovers the old inlet onto it while the listener opens
    a new one; each marker must still count once (twice would double a cue's pattern in the amplifier)."""
    from datasets.lsl_markers import MarkerListener

    _, cues = names
    first = StreamOutlet(StreamInfo(cues, "Markers", 1, 0.0, "string", f"{cues}-console"))
    listener = MarkerListener(cues)
    try:
        assert listener.wait_for_stream(10)
        time.sleep(0.5)
        first.push_sample(["grasp"], local_clock())
        time.sleep(0.5)
        del first
        time.sleep(1.0)
        second = StreamOutlet(StreamInfo(cues, "Markers", 1, 0.0, "string", f"{cues}-console"))
        deadline = time.monotonic() + 10
        while listener.n_streams < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(3.0)  # time for liblsl to recover the first inlet onto the second outlet
        for label in ("open", "rest"):
            second.push_sample([label], local_clock())
            time.sleep(0.3)
        time.sleep(1.0)
        assert [label for _, label in listener.drain()] == ["grasp", "open", "rest"]
    finally:
        listener.close()
