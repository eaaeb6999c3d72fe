"""Named bands: the slow-field preset (causal low-pass below 5 Hz, decimated) beside mu/beta; ``resample: auto``."""

import numpy as np
import pytest

from datasets.config import DataConfig
from datasets.dsp import BAND_PRESETS, CausalPreprocessor, auto_rate, make_spec
from datasets.typed import ConfigError, from_mapping


def data(**kw):
    return from_mapping(DataConfig, {"files": ["x.fif"], "events": {"a": "a", "b": "b"}, **kw}, "data")


def test_presets_resolve_to_bands_and_the_slow_one_decimates():
    slow = data(bandpass="slow")
    assert slow.bandpass == [None, 5.0] and slow.resample == "auto"
    assert data(bandpass="slow", resample=40.0).resample == 40.0  # an explicit rate wins
    mu = data(bandpass="mu_beta")
    assert mu.bandpass == [8.0, 30.0] and mu.resample is None
    assert data(bandpass=[1.0, 40.0]).bandpass == [1.0, 40.0]


def test_bad_presets_are_named():
    with pytest.raises(ConfigError, match=r"'bandpass' \('delta'\) must be \[low, high\] in Hz, a preset \(mu_beta, slow\) or auto"):
        data(bandpass="delta")
    with pytest.raises(ConfigError, match=r"'resample' \(auto\) needs a 'bandpass' high edge"):
        data(bandpass=[8.0, None], resample="auto")


@pytest.mark.parametrize("sfreq, decim", [(160.0, 8), (250.0, 12), (1000.0, 50), (15.0, 1)])
def test_auto_rate_keeps_four_times_the_high_edge(sfreq, decim):
    rate = auto_rate(sfreq, BAND_PRESETS["slow"])
    assert rate == sfreq / decim and rate >= min(sfreq, 20.0)
    spec = make_spec(sfreq, ["C3", "C4"], bandpass=BAND_PRESETS["slow"], resample="auto")
    assert spec.decim == decim


def test_the_slow_preset_keeps_slow_fields_and_removes_rhythms():
    sfreq = 160.0
    t = np.arange(int(20 * sfreq)) / sfreq
    spec = make_spec(sfreq, ["C3"], bandpass=BAND_PRESETS["slow"], resample="auto")
    assert spec.sfreq_out == 20.0

    def gain(freq):
        wave = np.sin(2 * np.pi * freq * t)
        return CausalPreprocessor(spec).process(wave[None].astype(np.float32))[0, 40:].std() / wave.std()

    assert 0.9 < gain(1.0) < 1.1  # slow fields pass
    assert gain(10.0) < 0.1  # mu: order-4 Butterworth at twice its 5 Hz edge (-22 dB), no aliasing beyond it
    assert gain(20.0) < 0.01  # beta
