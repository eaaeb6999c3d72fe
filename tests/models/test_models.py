"""Every registered decoder: forward shape, backward, determinism, ONNX export + onnxruntime parity."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

import models
from exports.torch_export import export_onnx

torch.set_num_threads(1)

# Listed explicitly: test_registry_is_fully_tested fails when a registered model is missing here.
MODEL_NAMES = ["cnn_lstm", "deep", "eegnet", "gru", "logvar", "lstm", "shallow", "tcn"]
# (n_chans, n_times, sfreq): an EEG-like and an MEG-like shape, 2 s so DeepConvNet fits too.
SHAPES = [(8, 250, 125.0), (12, 1000, 500.0)]


def test_registry_is_fully_tested():
    assert sorted(MODEL_NAMES) == models.available()


@pytest.fixture(params=MODEL_NAMES)
def name(request):
    return request.param


@pytest.mark.parametrize("shape", SHAPES, ids=["eeg", "meg"])
def test_forward_backward_deterministic(name, shape):
    n_chans, n_times, sfreq = shape
    torch.manual_seed(0)
    net = models.build(name, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=sfreq)
    x = torch.randn(4, n_chans, n_times)
    out = net(x)
    assert out.shape == (4, 3)
    out.logsumexp(1).sum().backward()
    grads = [p.grad for p in net.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(g.abs().sum() > 0 for g in grads)
    net.eval()
    with torch.no_grad():
        assert torch.equal(net(x), net(x))


@pytest.mark.parametrize("shape", SHAPES, ids=["eeg", "meg"])
def test_onnx_export_matches_torch(name, shape, tmp_path):
    n_chans, n_times, sfreq = shape
    torch.manual_seed(1)
    net = models.build(name, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=sfreq).eval()
    path = export_onnx(net, n_chans, n_times, tmp_path / f"{name}.onnx")
    assert [p.name for p in tmp_path.iterdir()] == [f"{name}.onnx"]  # no temp file left
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):
        x = np.random.default_rng(batch).standard_normal((batch, n_chans, n_times)).astype(np.float32)
        logits, probs = session.run(["logits", "probabilities"], {"signals": x})
        with torch.no_grad():
            ref = net(torch.from_numpy(x)).numpy()
        assert np.abs(logits - ref).max() < 1e-4
        assert (logits.argmax(1) == ref.argmax(1)).all()
        np.testing.assert_allclose(probs.sum(1), 1.0, rtol=1e-5)


def test_hyperparameters_are_recorded(name):
    net = models.build(name, n_chans=4, n_times=250, n_outputs=2, sfreq=125.0)
    hp = models.hyperparameters(net)
    assert hp["name"] == name and hp["n_chans"] == 4 and hp["n_times"] == 250


def test_window_too_short_states_the_minimum():
    with pytest.raises(ValueError, match=r"'n_times' \(100\) is too short for DeepConvNet.*minimum is \d+ samples"):
        models.build("deep", n_chans=4, n_times=100, n_outputs=2, sfreq=250.0)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match=r"Unknown model 'eegnt'.*eegnet.*Did you mean 'eegnet'"):
        models.build("eegnt", n_chans=4, n_times=250, n_outputs=2)
    with pytest.raises(ValueError, match=r"'n_outputs' \(1\) must be at least 2"):
        models.build("eegnet", n_chans=4, n_times=250, n_outputs=1)
    with pytest.raises(TypeError, match=r"'n_chans' must be an integer"):
        models.build("eegnet", n_chans=4.5, n_times=250, n_outputs=2)
    with pytest.raises(TypeError, match=r"no parameter\(s\) \['depth'\]"):
        models.build("eegnet", n_chans=4, n_times=250, n_outputs=2, depth=3)
    with pytest.raises(ValueError, match=r"'sfreq' \(-1\)"):
        models.build("eegnet", n_chans=4, n_times=250, n_outputs=2, sfreq=-1)


def test_logvar_filter_bank_and_whitening_export(tmp_path):
    """The log-variance network's filter-bank and segment options, and the whitening fitted to data, go through
    ONNX unchanged; the whitening makes the training windows' mean covariance the identity."""
    torch.manual_seed(2)
    net = models.build("logvar", n_chans=6, n_times=200, n_outputs=2, sfreq=100.0, n_bands=3, n_segments=2)
    mixing = torch.randn(6, 6)
    X = torch.einsum("dc,bct->bdt", mixing, torch.randn(40, 6, 200))
    net.fit_data(X)
    Z = torch.einsum("dc,bct->bdt", net.whitening, X - X.mean(-1, keepdim=True))
    cov = torch.einsum("nct,ndt->cd", Z, Z) / (Z.shape[0] * Z.shape[2])
    assert torch.allclose(cov, torch.eye(6), atol=1e-3)
    assert net.features(X[:2]).shape == (2, 3 * 16 * 2)
    net.eval()
    path = export_onnx(net, 6, 200, tmp_path / "logvar.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = X[:5].numpy().astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(session.run(["logits"], {"signals": x})[0] - ref).max() < 1e-4
    with pytest.raises(ValueError, match=r"'n_filters' \(0\) must be a positive integer"):
        models.build("logvar", n_chans=6, n_times=200, n_outputs=2, n_filters=0)
