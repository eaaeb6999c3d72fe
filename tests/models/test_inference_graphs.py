"""The equivalent graphs decoders export for speed (``inference_module``) compute the trained function, and
DeepConvNet's pooling adapts to short windows without changing the paper's layout where it fits."""

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

import models
from exports.torch_export import export_onnx
from models.deep import later_pools
from models.fused import DirectSpaceTime, SpaceFirst, fold_space_time

torch.set_num_threads(1)

FOLDED = ["shallow", "deep", "cnn_lstm"]
#: many channels and a 0.5 s window (as MEG after decimation), and one at the raw rate
SHORT_SHAPES = [(40, 125, 250.0), (24, 250, 500.0)]


def _trained_like(net: nn.Module) -> nn.Module:
    """Give every BatchNorm statistics and affine weights away from their initial values (which would hide a
    folding mistake in the scale or shift)."""
    gen = torch.Generator().manual_seed(3)
    for m in net.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
    return net.eval()


@pytest.mark.parametrize("mode", ["direct", "space_first"])
@pytest.mark.parametrize("groups", [1, 4])
def test_folded_front_end_equals_the_layers(mode, groups):
    torch.manual_seed(0)
    F, G, C, k, T = 8, 8, 12, 7, 40
    temporal = nn.Conv2d(1, F, (1, k))
    spatial = nn.Conv2d(F, G, (C, 1), groups=groups, bias=False)
    bn = _trained_like(nn.BatchNorm2d(G))
    folded = fold_space_time(temporal, spatial, bn, T, mode)
    assert isinstance(folded, DirectSpaceTime if mode == "direct" else SpaceFirst)
    x = torch.randn(3, C, T)
    with torch.no_grad():
        ref = bn(spatial(temporal(x.unsqueeze(1))))
        out = folded(x)
    assert out.shape == ref.shape
    assert (out - ref).abs().max() < 1e-4 * ref.abs().max()


def test_fold_refuses_what_it_cannot_fold():
    with pytest.raises(ValueError, match="temporal convolution"):
        fold_space_time(nn.Conv2d(1, 4, (1, 5), padding=(0, 2)), nn.Conv2d(4, 4, (3, 1), bias=False), None, 20)
    with pytest.raises(ValueError, match="'mode' \\('fast'\\)"):
        fold_space_time(nn.Conv2d(1, 4, (1, 5)), nn.Conv2d(4, 4, (3, 1), bias=False), None, 20, "fast")


@pytest.mark.parametrize("shape", SHORT_SHAPES, ids=["250Hz", "500Hz"])
@pytest.mark.parametrize("name", FOLDED)
def test_exported_graph_matches_the_trained_module(name, shape, tmp_path):
    """The folded graph, in eager PyTorch and in onnxruntime, gives the trained module's logits."""
    n_chans, n_times, sfreq = shape
    torch.manual_seed(1)
    net = _trained_like(models.build(name, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=sfreq))
    fast = net.inference_module().eval()
    assert fast is not net
    x = np.random.default_rng(0).standard_normal((5, n_chans, n_times)).astype(np.float32)
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
        eager = fast(torch.from_numpy(x)).numpy()
    assert np.abs(eager - ref).max() < 1e-4
    path = export_onnx(net, n_chans, n_times, tmp_path / f"{name}.onnx")
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"signals": x})[0]
    assert np.abs(logits - ref).max() < 1e-4
    assert (logits.argmax(1) == ref.argmax(1)).all()


@pytest.mark.parametrize("name", FOLDED)
def test_samples_the_output_never_sees_are_not_needed(name):
    """The exported graph skips the newest samples no pooling window reaches: the trained module ignores them too."""
    torch.manual_seed(2)
    net = _trained_like(models.build(name, n_chans=6, n_times=137, n_outputs=3, sfreq=250.0))
    used = net.inference_module().used
    assert used <= 137
    x = torch.randn(2, 6, 137)
    y = x.clone()
    y[:, :, used:] = 100.0
    with torch.no_grad():
        assert torch.equal(net(x), net(y))
        if used > 0:
            z = x.clone()
            z[:, :, used - 1] += 1.0
            assert not torch.equal(net(x), net(z))


def test_deep_convnet_takes_short_windows():
    """A 0.5 s MEG window (1 kHz, or decimated) builds, trains and keeps the kernels; only later pooling adapts."""
    for sfreq in (1000.0, 250.0, 125.0):
        net = models.build("deep", n_chans=10, n_times=int(0.5 * sfreq), n_outputs=3, sfreq=sfreq)
        assert net.later_pools == [1, 1, 3]
        out = net(torch.randn(2, 10, int(0.5 * sfreq)))
        out.sum().backward()
        assert out.shape == (2, 3)


def test_deep_convnet_keeps_the_paper_layout_where_it_fits():
    net = models.build("deep", n_chans=4, n_times=500, n_outputs=2, sfreq=250.0)  # 2 s
    assert net.later_pools == [3, 3, 3]
    pools = [m for m in net.body if isinstance(m, nn.MaxPool2d)]
    assert [p.kernel_size for p in pools] == [(1, 3)] * 4 and not any(isinstance(m, nn.Identity) for m in net.body)


@pytest.mark.parametrize("kernel", [2, 5, 10])
def test_later_pools_fit_and_are_the_papers_where_that_fits(kernel):
    for length in range(1, 400):
        pools = later_pools(length, kernel, 3)
        n = length
        for p in pools:
            n = (n - kernel + 1) // p
        if pools == [3, 3, 3]:
            continue  # the paper's layout (refused later by the shape check if it does not fit)
        assert n >= 1 and set(pools) <= {1, 3}
        alternative = [3] * 3
        n_alt = length
        for p in alternative:
            n_alt = (n_alt - kernel + 1) // p if n_alt - kernel + 1 > 0 else 0
        assert n_alt < 1  # adapts only where the paper's layout does not fit


@pytest.mark.parametrize("name, params", [("logvar", {}), ("logvar", {"n_bands": 3, "n_segments": 2}),
                                          ("amplitude", {"log_variance": True})],
                         ids=["logvar", "logvar_filter_bank", "amplitude"])
def test_whitening_folded_into_the_spatial_filters_keeps_the_function(name, params, tmp_path):
    """With a whitening fitted to correlated data (an identity one would hide a folding mistake), the exported
    graph mixes the channels once (n_filters x n_chans) and gives the trained module's logits."""
    n_chans, n_times = 30, 125
    torch.manual_seed(4)
    net = models.build(name, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=250.0, **params)
    X = torch.einsum("dc,bct->bdt", torch.randn(n_chans, n_chans), torch.randn(60, n_chans, n_times)) + 2.0
    net.fit_data(X)
    assert not torch.allclose(net.whitening, torch.eye(n_chans))
    net.eval()
    fast = net.inference_module()
    assert torch.equal(fast.whitening, torch.eye(n_chans)) and not torch.equal(net.whitening, torch.eye(n_chans))
    x = X[:5].numpy()
    with torch.no_grad():
        ref = net(X[:5]).numpy()
        assert np.abs(fast(X[:5]).numpy() - ref).max() < 1e-4
    path = export_onnx(net, n_chans, n_times, tmp_path / f"{name}.onnx")
    logits = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(["logits"], {"signals": x})[0]
    assert np.abs(logits - ref).max() < 1e-4
