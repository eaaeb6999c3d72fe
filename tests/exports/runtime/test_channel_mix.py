"""The decoder's leading channel mix run on arrival (exports/runtime/channel_mix.py): which exported graphs have
one, the split graph against the whole one in onnxruntime, and the guard that refuses a split that disagrees."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from exports.runtime import model as runtime_model
from exports.runtime.channel_mix import ChannelMix, split_channel_mix
from exports.runtime.model import DecoderSession
from exports.runtime.server import ServeConfig, Server
from exports.torch_export import export_onnx

#: the registered decoders whose export graph begins with a channel mix (every other one runs whole)
MIXED_FIRST = {"eegnet", "tcn", "logvar", "gru", "lstm", "gated"}


def export_random(name: str, n_chans: int, n_times: int, sfreq: float, path):
    torch.manual_seed(0)
    net = models.build(name, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=sfreq).eval()
    if name == "gated":  # both stages' outputs and the gate matter: move them off their initial values
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p))
    return export_onnx(net, n_chans, n_times, path)


def sessions(path):
    """The same file as the rig runs it (split where it can be) and whole; metadata read from the file."""
    return DecoderSession(path, warmup=1), DecoderSession(path, warmup=1, split_mix=False)


def no_metadata(monkeypatch, n_chans: int, n_times: int, gated: bool = False):
    """These files carry no run metadata; DecoderSession reads only the shape and whether there is a gate."""
    meta = {"classes": ["rest", "grasp", "open"], "io": {"input_shape": [1, n_chans, n_times]},
            "gate": {} if gated else None}
    monkeypatch.setattr(runtime_model, "parse_metadata_props", lambda props, source: meta)


@pytest.mark.parametrize("name", sorted(models.available()))
def test_every_decoder_that_begins_with_a_channel_mix_decides_the_same_with_it_run_on_arrival(name, tmp_path, monkeypatch):
    n_chans, n_times, sfreq = 64, 160, 160.0
    try:
        path = export_random(name, n_chans, n_times, sfreq, tmp_path / f"{name}.onnx")
    except ValueError as err:  # a decoder that cannot take this shape at all (none of the registered ones today)
        pytest.skip(str(err))
    no_metadata(monkeypatch, n_chans, n_times, gated=name == "gated")
    split, whole = sessions(path)
    assert (split.mix is not None) == (name in MIXED_FIRST)
    assert whole.mix is None and whole.window.shape == (n_chans, n_times)
    if split.mix is not None:
        assert split.window.shape == (len(split.mix.matrix), n_times) and len(split.mix.matrix) < n_chans
    rng = np.random.default_rng(1)
    for _ in range(5):
        x = (rng.standard_normal((n_chans, n_times)) * rng.uniform(0.5, 3)).astype(np.float32)
        np.copyto(whole.window, x)
        expected = whole.predict().copy()
        np.copyto(split.window, split.input_rows(x))  # as the server fills it: rows of each sample on arrival
        np.testing.assert_allclose(split.predict(), expected, atol=2e-6)
        np.testing.assert_allclose(split.predict(x), expected, atol=2e-6)  # a whole window given, mixed here
        if name == "gated":
            assert split.gate == pytest.approx(whole.gate, abs=2e-6)


def test_the_mix_is_the_first_layers_weights_applied_per_sample(tmp_path):
    """Against the module itself: EEGNet's spatial-first graph mixes the channels by its folded spatial filters,
    so the mixed rows times the rest of the network give the module's own output."""
    import onnx

    path = export_random("eegnet", 32, 128, 128.0, tmp_path / "eegnet.onnx")
    mix = split_channel_mix(onnx.load(str(path)))
    assert mix is not None and mix.matrix.shape == (16, 32) and mix.bias is None and mix.inputs[0].four_d
    x = np.random.default_rng(2).standard_normal((32, 128)).astype(np.float32)
    rows = mix(x)
    np.testing.assert_allclose(rows, mix.matrix.astype(np.float64) @ x, rtol=1e-5, atol=1e-5)
    # linear and per sample: mixing a chunk at a time gives the same rows as mixing the window
    np.testing.assert_allclose(np.concatenate([mix(x[:, a:a + 10]) for a in range(0, 128, 10)], axis=1), rows, atol=1e-6)


def wrong_split(model):
    """The mix of a different network: the tail would be fed the wrong rows."""
    mix = split_channel_mix(model)
    return ChannelMix(mix.matrix[::-1].copy(), mix.bias, mix.inputs, mix.tail)


def test_a_split_that_disagrees_with_the_whole_graph_is_not_used(tmp_path, monkeypatch):
    n_chans, n_times = 64, 160
    path = export_random("logvar", n_chans, n_times, 160.0, tmp_path / "logvar.onnx")
    no_metadata(monkeypatch, n_chans, n_times)
    monkeypatch.setattr(runtime_model, "split_channel_mix", wrong_split)
    guarded, whole = sessions(path)
    assert guarded.mix is None and guarded.window.shape == (n_chans, n_times)
    assert "differed from the whole graph's by" in guarded.split_refused and whole.split_refused is None
    x = np.random.default_rng(3).standard_normal((n_chans, n_times)).astype(np.float32)
    np.testing.assert_array_equal(guarded.predict(x), whole.predict(x))


def test_the_mix_folded_with_the_normaliser_mixes_raw_samples_as_the_two_in_turn(tmp_path):
    """The server mixes filtered samples once per chunk: the mix folded with the session's alignment and
    standardisation must equal the normaliser then the mix (float64 reference)."""
    import onnx

    from datasets.dsp import Normalizer

    n_chans = 32
    mix = split_channel_mix(onnx.load(str(export_random("gru", n_chans, 128, 128.0, tmp_path / "gru.onnx"))))
    assert mix.bias is not None  # the GRU's spatial layer has one: it must survive the fold
    rng = np.random.default_rng(4)
    rotation = np.linalg.qr(rng.standard_normal((n_chans, n_chans)))[0]
    norm = {"kind": "standardize", "mean": rng.normal(0, 1e-5, n_chans).tolist(),
            "std": rng.uniform(5e-6, 2e-5, n_chans).tolist(), "alignment": {"s": rotation.tolist()}}
    x = rng.normal(0, 1e-5, (n_chans, 40)).astype(np.float32)  # volts, as the filtered stream is
    for normalizer in (Normalizer(norm, "s"), Normalizer(dict(norm, alignment=None)), Normalizer(None)):
        a = np.eye(n_chans) if normalizer.matrix is None else normalizer.matrix.astype(np.float64)
        z = a @ x.astype(np.float64)
        if normalizer.mean is not None:
            z = (z - normalizer.mean) / normalizer.std
        expected = mix.matrix.astype(np.float64) @ z + mix.bias
        np.testing.assert_allclose(mix.after(normalizer)(x), expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_the_server_tells_the_operator_when_a_split_was_refused(exported, recording_array, tmp_path, monkeypatch):
    data, ch_names, sfreq, _ = recording_array
    npz = tmp_path / "rec.npz"
    np.savez(npz, data=data[:, : int(2 * sfreq)], ch_names=np.array(ch_names), sfreq=sfreq)
    monkeypatch.setattr(runtime_model, "split_channel_mix", wrong_split)
    server = Server(exported.path, f"replay:{npz}", ["udp://127.0.0.1:9"], ServeConfig(status=False))
    try:
        assert server.decoder.mix is None
        assert [n for n in server.notices if "channel mix runs inside the graph" in n], server.notices
    finally:
        server._shutdown()
