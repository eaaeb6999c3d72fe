"""The gated decoder: joint probabilities from a gate and a type decoder, stage-wise training, the gate output."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import models
from exports.torch_export import export_onnx

torch.set_num_threads(1)


def _net(**kw):
    torch.manual_seed(0)
    return models.build("gated", n_chans=6, n_times=125, n_outputs=3, sfreq=125.0,
                        gate={"name": "logvar", "n_filters": 4}, type={"name": "shallow"}, **kw).eval()


@pytest.mark.parametrize("tied", [True, False], ids=["tied", "free"])
def test_probabilities_are_gate_times_type_in_class_order(tied):
    net = _net(rest_index=1, **({} if tied else {"gate_units": 3}))  # classes e.g. [grasp, rest, open]
    x = torch.randn(5, 6, 125)
    with torch.no_grad():
        probs = torch.softmax(net(x), dim=1)
        g = net.gate_probability(x)
        units = torch.log_softmax(net.gate(x), dim=1)
        type_logits = net.type_decoder(x) + (units[:, 1:] if tied else 0)  # tied: the gate's units add to the type's
        q = torch.softmax(type_logits, dim=1)
    assert net.gate.n_outputs == (3 if tied else 4)
    torch.testing.assert_close(g, 1 - units[:, 0].exp())
    torch.testing.assert_close(probs[:, 1], 1 - g)
    torch.testing.assert_close(probs[:, 0], g * q[:, 0])
    torch.testing.assert_close(probs[:, 2], g * q[:, 1])
    torch.testing.assert_close(probs.sum(1), torch.ones(5))


def test_rest_windows_train_only_the_gate():
    """The joint negative log-likelihood splits into the gate's and the type decoder's own losses."""
    net = _net().train()
    x = torch.randn(8, 6, 125)
    loss = torch.nn.functional.cross_entropy(net(x), torch.zeros(8, dtype=torch.long))  # all rest (index 0)
    loss.backward()
    # zero analytically (the joint probabilities sum to one whatever the type decoder says); rounding only
    assert all(p.grad is None or p.grad.abs().max() < 1e-6 for p in net.type_decoder.parameters())
    assert any(p.grad is not None and p.grad.abs().max() > 1e-3 for p in net.gate.parameters())
    net.zero_grad()
    torch.nn.functional.cross_entropy(net(x), torch.full((8,), 2)).backward()  # movement windows train both
    assert any(p.grad is not None and p.grad.abs().max() > 1e-3 for p in net.type_decoder.parameters())


def test_one_movement_class_is_the_gate_alone():
    net = models.build("gated", n_chans=4, n_times=125, n_outputs=2, sfreq=125.0).eval()
    assert net.type_decoder is None and models.hyperparameters(net)["type"] is None
    x = torch.randn(3, 4, 125)
    with torch.no_grad():
        torch.testing.assert_close(torch.softmax(net(x), 1)[:, 1], net.gate_probability(x))


@pytest.mark.parametrize("params, message", [
    ({"gate": {"name": "nope"}}, r"Unknown model 'nope'"),
    ({"gate": 3}, r"'gate' \(3\) must be a registered decoder"),
    ({"type": {"name": "gated"}}, r"'type.name' \('gated'\): a member of a gated decoder cannot itself be gated"),
    ({"type": {"name": "eegnet", "n_outputs": 4}}, r"'type' sets \['n_outputs'\]"),
    ({"type": {"name": "eegnet", "bogus": 1}}, r"Model 'eegnet' has no parameter\(s\) \['bogus'\]"),
    ({"rest_index": 3}, r"'rest_index' \(3\) must be an output position in 0..2"),
    ({"gate_threshold": 1.2}, r"'gate_threshold' \(1.2\) must be in \[0, 1\)"),
    ({"gate_threshold": 0.95, "gate_hysteresis": 0.1}, r"could never open"),
    ({"gate_dwell_s": -1}, r"'gate_dwell_s' \(-1\) must be >= 0"),
    ({"gate_units": 0}, r"'gate_units' \(0\) must be a positive integer"),
])
def test_bad_configuration_is_named(params, message):
    with pytest.raises((ValueError, TypeError), match=message):
        models.build("gated", n_chans=4, n_times=125, n_outputs=3, sfreq=125.0, **params)


def test_onnx_has_the_gate_output(tmp_path):
    net = _net(rest_index=2)
    path = export_onnx(net, 6, 125, tmp_path / "gated.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["logits", "probabilities", "gate"]
    x = np.random.default_rng(0).standard_normal((4, 6, 125)).astype(np.float32)
    logits, probs, gate = session.run(None, {"signals": x})
    with torch.no_grad():
        ref_logits = net(torch.from_numpy(x)).numpy()
        ref_gate = net.gate_probability(torch.from_numpy(x)).numpy()
    assert gate.shape == (4,)
    np.testing.assert_allclose(logits, ref_logits, atol=1e-4)
    np.testing.assert_allclose(gate, ref_gate, atol=1e-5)
    np.testing.assert_allclose(probs[:, 2], 1 - gate, atol=1e-5)


def test_stage_errors_are_found_before_any_data_are_read():
    with pytest.raises(TypeError, match=r"'type': Model 'eegnet' has no parameter\(s\) \['bogus'\]"):
        models.check_params("gated", {"type": {"name": "eegnet", "bogus": 1}})
    with pytest.raises(ValueError, match=r"Unknown model 'nope'"):
        models.check_params("gated", {"gate": "nope"})
    models.check_params("gated", {"gate": "shallow", "type": {"name": "logvar", "n_filters": 4}})


def test_the_shipped_gated_config_is_valid():
    """configs/gated_eegmmidb.yaml loads, names a buildable gated decoder, and resolves its named band."""
    from pathlib import Path

    from pipeline.record.config import load_config
    from pipeline.train import check_config

    cfg, _ = load_config(Path(__file__).resolve().parents[2] / "configs" / "gated_eegmmidb.yaml")
    check_config(cfg)
    assert cfg.model.name == "gated" and cfg.data.bandpass == [8.0, 30.0]
    assert list(cfg.data.events.values())[cfg.model.params["rest_index"]] == "rest"
    net = models.build("gated", n_chans=64, n_times=160, n_outputs=3, sfreq=80.0, **cfg.model.params)
    assert net.gate_threshold == 0.7
