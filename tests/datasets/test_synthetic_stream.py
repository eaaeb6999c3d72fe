"""The live simulation (bmi amp's signals) shares the file writer's head and class patterns, and runs causally."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import signal

from datasets.synthetic import CUE_SECONDS, cue_effect, sensor_info, session_head, write_synthetic
from datasets.synthetic_stream import SyntheticStream

SFREQ = 250.0


@pytest.fixture(scope="module")
def head():
    return session_head(sensor_info("eeg", SFREQ), seed=0, subject=0, session=0)


def _band(x: np.ndarray, low: float, high: float) -> np.ndarray:
    return signal.sosfilt(signal.butter(4, [low, high], "bandpass", fs=SFREQ, output="sos"), x, axis=-1)


def _cued(head, labels, snr=1.0, seed=1):
    """A stream with one cue every 6 s; returns the data and the onsets per label."""
    stream = SyntheticStream(SFREQ, head, snr, seed=seed)
    onsets: dict[str, list[int]] = {}
    period = int(6 * SFREQ)
    for i, label in enumerate(labels):
        onset = int(SFREQ) + i * period
        stream.cue(label, onset)
        onsets.setdefault(label, []).append(onset)
    return stream.generate(int(SFREQ) + len(labels) * period), onsets


def test_cues_desynchronise_the_contralateral_mu_rhythm(head):
    """grasp lowers mu power over the left sensorimotor cortex (C3), open over the right (C4), rest neither."""
    names = sensor_info("eeg", SFREQ)["ch_names"]
    data, onsets = _cued(head, ["grasp", "open", "rest"] * 8)
    power = _band(data, 8, 13) ** 2
    c3, c4 = names.index("C3"), names.index("C4")

    def ratio(label):  # C3 / C4 mu power 0.5-2.5 s after the cue
        win = [(o + int(0.5 * SFREQ), o + int(2.5 * SFREQ)) for o in onsets[label]]
        return np.mean([power[c3, a:b].mean() for a, b in win]) / np.mean([power[c4, a:b].mean() for a, b in win])

    rest = ratio("rest")
    assert ratio("grasp") < 0.75 * rest  # the left hemisphere desynchronised
    assert ratio("open") > 1.33 * rest  # the right one


def test_a_cue_adds_exactly_the_shared_pattern(head):
    """The same noise with and without a grasp cue differs only over the cue, on the left source's topography, by
    the shared pattern: the potential plus the rhythm's lowered share."""
    quiet, cued = SyntheticStream(SFREQ, head, seed=5), SyntheticStream(SFREQ, head, seed=5)
    onset = 100
    assert cued.cue("grasp", onset) and not cued.cue("rest", onset)  # rest has no pattern
    diff = cued.generate(1500) - quiet.generate(1500)
    n = int(CUE_SECONDS * SFREQ)
    assert np.all(diff[:, :onset] == 0) and np.all(diff[:, onset + n :] == 0)  # nothing outside the cue
    u, s, _ = np.linalg.svd(diff, full_matrices=False)
    left = head.sources["left"] * head.channel_gain
    assert s[1] < 1e-9 * s[0]  # one topography ...
    assert abs(np.corrcoef(u[:, 0], left)[0, 1]) > 0.9999  # ... the left motor source's
    course = diff.T @ left / (left @ left) / (head.gain * head.scale)  # the pattern's time course, simulated units
    effect = cue_effect("grasp", SFREQ, 1.0)
    # the rhythm term averages out over the cue: what is left is the movement-related potential
    assert abs(course[onset : onset + n].mean() - effect.mrp.mean()) < 0.1 * abs(effect.mrp.mean())


def test_the_stream_does_not_depend_on_its_chunks(head):
    a, b = SyntheticStream(SFREQ, head, seed=3), SyntheticStream(SFREQ, head, seed=3)
    a.cue("open", 130)
    b.cue("open", 130)
    whole = a.generate(1000)
    pieces = np.concatenate([b.generate(n) for n in (7, 93, 250, 1, 649)], axis=1)
    np.testing.assert_allclose(pieces, whole, rtol=0, atol=1e-12 * np.abs(whole).max())


def test_a_late_cue_stays_time_locked_to_its_onset(head):
    """A marker that arrives after its onset sample starts the pattern part-way, not from its beginning."""
    on_time, late, quiet = (SyntheticStream(SFREQ, head, seed=4) for _ in range(3))
    on_time.cue("grasp", 100)
    first = [s.generate(150) for s in (on_time, late, quiet)]
    late.cue("grasp", 100)  # 50 samples too late
    rest = [s.generate(500) for s in (on_time, late, quiet)]
    np.testing.assert_allclose(rest[1], rest[0], rtol=0, atol=1e-20)
    assert np.array_equal(first[1], first[2])  # before it arrived, nothing had changed


def test_decoding_band_power_matches_the_files(head, tmp_path):
    """The stream's background is scaled so a stream is as hard to decode as a file at the same snr."""
    path = write_synthetic(tmp_path, n_subjects=1, n_runs=1, trials_per_class=8, seed=0)[0]
    import mne

    recorded = mne.io.read_raw_fif(path, preload=True, verbose="error").get_data()
    streamed = SyntheticStream(SFREQ, head, seed=2).generate(recorded.shape[1])
    rms = [np.sqrt(np.mean(_band(x, 8, 30)[:, 500:] ** 2)) for x in (recorded, streamed)]
    assert abs(rms[1] / rms[0] - 1) < 0.1, rms


def test_bad_arguments_are_named(head):
    with pytest.raises(ValueError, match="'sfreq' \\(80"):
        SyntheticStream(80.0, head)
    with pytest.raises(ValueError, match="'snr' \\(-1"):
        SyntheticStream(SFREQ, head, snr=-1)


def test_session_shift_moves_the_sources_between_sessions():
    info = sensor_info("eeg", SFREQ)
    day1, day2 = session_head(info, 0, 0, 0, 1.0), session_head(info, 0, 0, 1, 1.0)
    unshifted = session_head(info, 0, 0, 1, 0.0)
    assert not np.allclose(day1.sources["left"], day2.sources["left"])
    assert np.all(unshifted.channel_gain == 1.0)
    # without a shift a subject's sources are the same every session (only gains and noise differ)
    assert np.array_equal(session_head(info, 0, 0, 0).sources["left"], unshifted.sources["left"])
