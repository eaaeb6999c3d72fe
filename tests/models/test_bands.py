"""Bands stacked as channels (models/bands.py), alone and as the two branches of a gated decoder."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import models
from exports.torch_export import export_onnx

torch.set_num_threads(1)


def test_each_band_keeps_its_frequencies_and_the_channels_stack_band_major():
    sfreq, n_times = 125.0, 500
    net = models.build("bands", n_chans=2, n_times=n_times, n_outputs=3, sfreq=sfreq, bands=[[None, 5.0], [8.0, 30.0]])
    t = np.arange(n_times) / sfreq
    x = torch.tensor(np.stack([np.sin(2 * np.pi * 2.0 * t), np.sin(2 * np.pi * 15.0 * t)]), dtype=torch.float32)[None]
    with torch.no_grad():
        out = net.stack(x)[0].numpy()
    assert out.shape == (4, n_times - net.n_taps + 1) and net.n_taps == 63
    assert net.decoder.n_chans == 4 and net.decoder.n_times == n_times - 62
    rms = np.sqrt((out ** 2).mean(1)) / np.sqrt(0.5)  # gain of each (band, channel)
    slow_ch0, slow_ch1, mu_ch0, mu_ch1 = rms
    assert slow_ch0 > 0.9 and mu_ch1 > 0.9  # 2 Hz passes the slow band, 15 Hz the mu/beta band
    assert slow_ch1 < 0.02 and mu_ch0 < 0.02  # and neither passes the other


def test_the_filters_see_only_the_window():
    """Output sample j is computed from input samples j .. j + n_taps - 1: changing a later sample changes
    nothing before it (causal, no padding)."""
    net = models.build("bands", n_chans=3, n_times=200, n_outputs=2, sfreq=100.0).eval()
    x = torch.randn(1, 3, 200)
    y = x.clone()
    y[..., 150] += 10.0
    with torch.no_grad():
        a, b = net.stack(x), net.stack(y)
    first_touched = 150 - net.n_taps + 1
    assert torch.equal(a[..., :first_touched], b[..., :first_touched])
    assert not torch.equal(a[..., first_touched], b[..., first_touched])


@pytest.mark.parametrize("params, message", [
    ({"bands": [[5.0, 1.0]]}, r"'bands\[0\]' low edge \(5.0 Hz\) must be below the high edge"),
    ({"bands": [[None, None]]}, r"'bands\[0\]' \(\[None, None\]\) must be \[low, high\]"),
    ({"bands": [[1.0, 90.0]]}, r"'bands\[0\]' high edge \(90.0 Hz\) must lie between 0 and Nyquist \(62.5 Hz\)"),
    ({"fir_seconds": 3.0}, r"'fir_seconds' \(3.0\) gives 375 taps .* must be longer"),
    ({"decoder": {"name": "gated"}}, r"'decoder.name' \('gated'\) must be a single-stage decoder"),
])
def test_bad_bands_are_named(params, message):
    with pytest.raises(ValueError, match=message):
        models.build("bands", n_chans=4, n_times=250, n_outputs=2, sfreq=125.0, **params)


def test_a_gated_decoder_with_a_slow_gate_and_a_mu_beta_type_branch(tmp_path):
    """The reference scheme as two branches of one model: the gate reads slow fields, the type decoder mu/beta,
    both from one broadband input, exported as one ONNX file with the gate output."""
    torch.manual_seed(0)
    net = models.build("gated", n_chans=6, n_times=250, n_outputs=3, sfreq=125.0,
                       gate={"name": "bands", "bands": [[None, 5.0]], "decoder": {"name": "shallow"}},
                       type={"name": "bands", "bands": [[8.0, 30.0]]}).eval()
    assert net.gate.decoder.n_chans == 6 and net.gate.bands == [[None, 5.0]]
    assert models.hyperparameters(net)["gate"]["decoder"]["name"] == "shallow"
    path = export_onnx(net, 6, 250, tmp_path / "two_branch.onnx")
    x = np.random.default_rng(0).standard_normal((3, 6, 250)).astype(np.float32)
    logits, gate = ort.InferenceSession(str(path)).run(["logits", "gate"], {"signals": x})
    with torch.no_grad():
        np.testing.assert_allclose(logits, net(torch.from_numpy(x)).numpy(), atol=1e-4)
        np.testing.assert_allclose(gate, net.gate_probability(torch.from_numpy(x)).numpy(), atol=1e-5)
    assert models.default_setting("bands", {"decoder": {"name": "eegnet"}}, "default_lr", None) == 1e-3
    with pytest.raises(TypeError, match=r"'decoder': Model 'eegnet' has no parameter\(s\) \['bogus'\]"):
        models.check_params("bands", {"decoder": {"name": "eegnet", "bogus": 1}})
