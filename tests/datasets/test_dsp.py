"""The one preprocessing definition: chunked online execution equals offline, and specs validate."""

import numpy as np
import pytest

from datasets.dsp import CausalPreprocessor, PreprocessingSpec, apply_normalization, apply_offline, make_spec


@pytest.mark.parametrize("reference", [None, "average", ["c1"]])
def test_chunked_equals_one_shot_exactly(reference):
    spec = make_spec(1000.0, ["c0", "c1", "c2"], reference=reference, bandpass=(8, 30), notch=[50], resample=250)
    rng = np.random.default_rng(0)
    data = rng.standard_normal((3, 4003))
    offline = apply_offline(spec, data)
    online, proc, i = [], CausalPreprocessor(spec), 0
    while i < data.shape[1]:
        n = int(rng.integers(0, 41))
        online.append(proc.process(data[:, i : i + n]))
        i += n
    online = np.concatenate(online, axis=1)
    assert offline.shape == (3, 1001)
    np.testing.assert_array_equal(online, offline)


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
