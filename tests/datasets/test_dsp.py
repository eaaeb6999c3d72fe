"""The one preprocessing definition: chunked online execution equals offline, and specs validate."""

import numpy as np
import pytest

from datasets.dsp import CausalPreprocessor, PreprocessingSpec, apply_normalization, apply_offline, make_spec


def process_in_chunks(spec, data, rng, longest):
    online, proc, i = [], CausalPreprocessor(spec), 0
    while i < data.shape[1]:
        n = int(rng.integers(0, longest + 1))
        online.append(proc.process(data[:, i : i + n]))
        i += n
    return np.concatenate(online, axis=1)


@pytest.mark.parametrize("reference", [None, "average", ["c1"]])
def test_chunked_equals_one_shot_to_rounding(reference):
    """Chunks of 0-100 samples take both paths (matrix product up to BLOCK_MAX, sosfilt above it)."""
    spec = make_spec(1000.0, ["c0", "c1", "c2"], reference=reference, bandpass=(8, 30), notch=[50], resample=250)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 4003))
    offline = apply_offline(spec, data)
    online = process_in_chunks(spec, data, rng, 2 * CausalPreprocessor.BLOCK_MAX)
    assert offline.shape == (3, 1001)
    np.testing.assert_allclose(online, offline, rtol=0, atol=1e-12)


@pytest.mark.parametrize("band, sfreq", [((0.1, 5.0), 1000.0), ((0.5, 40.0), 5000.0)])
def test_a_large_dc_offset_costs_no_precision_online(band, sfreq):
    """A 20 mV electrode offset on 10 uV EEG, slow-field filters at 1 kHz (poles next to 1): the streamed
    output stays within 1e-7 of the signal's size of the offline one (float32 resolution). Filtering the
    offset itself through the matrix product would err by 2e-6 of the signal."""
    spec = make_spec(sfreq, ["a", "b"], bandpass=band, notch=[50])
    rng = np.random.default_rng(3)
    data = rng.standard_normal((2, 30_000)) * 10e-6 + np.array([[20e-3], [-5e-3]])
    offline = apply_offline(spec, data)
    online = process_in_chunks(spec, data, rng, 40)
    scale = offline[:, 10_000:].std(axis=1, keepdims=True)
    assert (np.abs(online - offline) < 1e-7 * scale).all()


def test_filter_passes_band_and_rejects_outside():
    sfreq = 250.0
    spec = make_spec(sfreq, ["a"], bandpass=(8, 30))
    t = np.arange(int(10 * sfreq)) / sfreq
    inband = apply_offline(spec, np.sin(2 * np.pi * 12 * t)[None])[0, 1000:]
    outband = apply_offline(spec, np.sin(2 * np.pi * 60 * t)[None])[0, 1000:]
    assert 0.9 < inband.std() * np.sqrt(2) < 1.1
    assert outband.std() < 0.02


def test_spec_roundtrip_and_version_check():
    spec = make_spec(500.0, ["a", "b"], bandpass=(1, 40), resample=100)
    again = PreprocessingSpec.from_dict(spec.to_dict())
    assert again == spec and again.sfreq_out == 100.0
    bad = spec.to_dict() | {"version": 99}
    with pytest.raises(ValueError, match="version 99"):
        PreprocessingSpec.from_dict(bad)


def test_invalid_parameters_are_named():
    with pytest.raises(ValueError, match=r"'resample' \(300 Hz\) must divide"):
        make_spec(1000.0, ["a"], bandpass=(8, 30), resample=300)
    with pytest.raises(ValueError, match="anti-alias"):
        make_spec(1000.0, ["a"], bandpass=(8, None), resample=250)
    with pytest.raises(ValueError, match=r"low edge \(30"):
        make_spec(250.0, ["a"], bandpass=(30, 8))
    with pytest.raises(ValueError, match="not among the picked channels"):
        make_spec(250.0, ["a"], reference=["Cz"])


def test_zero_phase_is_offline_only():
    spec = make_spec(250.0, ["a"], bandpass=(8, 30), causal=False)
    assert apply_offline(spec, np.ones((1, 500))).shape == (1, 500)
    with pytest.raises(ValueError, match="offline analysis only"):
        CausalPreprocessor(spec)


def test_normalization_standardize_and_alignment():
    x = np.random.default_rng(1).standard_normal((4, 2, 10)).astype(np.float32)
    norm = {"kind": "standardize", "mean": [1.0, -1.0], "std": [2.0, 4.0], "alignment": None}
    out = apply_normalization(x, norm)
    np.testing.assert_allclose(out[:, 0], (x[:, 0] - 1) / 2, rtol=1e-6)
    aligned = {"kind": "none", "alignment": {"s1": [[0.0, 1.0], [1.0, 0.0]]}}
    np.testing.assert_allclose(apply_normalization(x, aligned), x[:, ::-1], rtol=1e-6)
    with pytest.raises(ValueError, match="No alignment matrix for subject 's2'"):
        apply_normalization(x, aligned, subject="s2")


@pytest.mark.parametrize("decim_to", [None, 250])
def test_chunked_preprocessor_equals_whole_recording_scipy_reference(decim_to):
    """Independent reference: one ``scipy.signal.sosfilt`` over the whole recording, started at the steady
    state of its first sample, then every ``decim``-th sample; against the preprocessor fed odd chunks."""
    from scipy import signal

    sfreq = 1000.0
    spec = make_spec(sfreq, ["a", "b"], bandpass=(8, 30), notch=[50], resample=decim_to)
    rng = np.random.default_rng(5)
    data = rng.standard_normal((2, 5000)) + np.array([[0.02], [-0.01]])  # with DC offsets
    sos = np.asarray(spec.sos).reshape(-1, 6)
    zi = signal.sosfilt_zi(sos)[:, None, :] * data[None, :, :1]
    reference = signal.sosfilt(sos, data, axis=1, zi=zi)[0][:, :: spec.decim]
    proc, out, i = CausalPreprocessor(spec), [], 0
    while i < data.shape[1]:
        n = int(rng.integers(1, 97))
        out.append(proc.process(data[:, i : i + n]))
        i += n
    np.testing.assert_allclose(np.concatenate(out, axis=1), reference, rtol=0, atol=1e-12)


def test_butterworth_design_equals_mne_create_filter():
    import mne

    for sfreq, band in [(160.0, (8.0, 30.0)), (1000.0, (0.5, 5.0)), (250.0, (None, 40.0)), (250.0, (1.0, None))]:
        spec = make_spec(sfreq, ["a"], bandpass=band, order=4)
        low, high = band
        mne_sos = mne.filter.create_filter(None, sfreq, low, high, method="iir",
                                           iir_params=dict(ftype="butter", order=4, output="sos"), verbose="error")["sos"]
        # same frequency response (section order and gain split may differ between two SOS factorisations)
        from scipy import signal

        _, ours = signal.sosfreqz(np.asarray(spec.sos), worN=2048, fs=sfreq)
        _, theirs = signal.sosfreqz(mne_sos, worN=2048, fs=sfreq)
        np.testing.assert_allclose(np.abs(ours), np.abs(theirs), atol=1e-9)


def test_a_20_mV_dc_offset_leaves_no_start_up_transient():
    sfreq = 250.0
    spec = make_spec(sfreq, [f"c{i}" for i in range(4)], bandpass=(8, 30))
    eeg = np.random.default_rng(2).standard_normal((4, 2500)) * 10e-6  # 10 uV EEG
    clean = apply_offline(spec, eeg)
    offset = apply_offline(spec, eeg + 20e-3)  # +20 mV on every channel, from the first sample on
    assert np.abs(offset - clean).max() < 1e-3 * clean.std()  # zero state would start ~2000x the EEG


def test_settling_time_bounds_the_start_up_error():
    """Started at many points of a white-noise recording, the output's RMS error against a filter running
    since long before is 1 % of the signal at the spec's settling time (the design target), far more before."""
    sfreq = 160.0
    for band in [(8.0, 30.0), (1.0, 40.0)]:
        spec = make_spec(sfreq, ["a"], bandpass=band)
        settle = spec.settle_samples
        assert 0.2 * sfreq < settle < 3 * sfreq
        x = np.random.default_rng(3).standard_normal((1, 82 * settle))
        long_run = apply_offline(spec, x)
        errors = np.array([apply_offline(spec, x[:, start : start + settle + 1])[0] - long_run[0, start : start + settle + 1]
                           for start in range(settle, 81 * settle, settle)])
        rms = np.sqrt((errors**2).mean(axis=0)) / long_run.std()
        assert rms[settle] < 0.015 and rms[settle // 4] > 0.1
    assert spec.to_dict()["settle_seconds"] == settle / sfreq
    assert make_spec(sfreq, ["a"], bandpass=None).settle_samples == 0
