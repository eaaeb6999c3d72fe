"""``trainer.compile``: the decoder under torch.compile where it compiles, eager with the reason where it does not."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from pipeline.record.config import load_config
from pipeline.train import run_training

# EEGNet: BatchNorm statistics a stray forward pass would move (their re-estimation before each validation off)
SETTINGS = ["trainer.max_epochs=2", "model.name=eegnet", "model.params={}", "trainer.recalibrate_batchnorm=false"]


@pytest.fixture(scope="module")
def compiler_works():
    """torch.compile on this CPU at all (a C++ compiler, headers): otherwise the real-compile tests skip, saying
    why, and the fallback test above covers the run."""
    if not (shutil.which("c++") or shutil.which("g++")):
        pytest.skip("torch.compile on CPU needs a C++ compiler")
    try:
        torch.compile(lambda x: x * 2 + 1)(torch.ones(3))
    except Exception as err:  # noqa: BLE001
        pytest.skip(f"torch.compile does not work on this machine: {type(err).__name__}: {err}"[:200])


def _weights(summary):
    return torch.load(Path(summary["run_dir"]) / "checkpoints/last.ckpt", map_location="cpu", weights_only=False)["state_dict"]


def test_a_compiler_failure_leaves_the_run_eager_and_its_network_untouched(write_config, monkeypatch, capsys):
    """torch.compile failing on the trial batch (after its forward pass ran): the run trains eagerly, says why,
    and is bit-identical to a run that never asked to compile."""
    cfg, config_dir = load_config(write_config(), SETTINGS)
    eager = run_training(cfg, config_dir, progress=False)

    def failing_compile(forward):
        def run(x):
            forward(x)  # moves the BatchNorm statistics, as a real first call would
            raise RuntimeError("InductorError: no working C++ compiler found\nmore detail")
        return run

    monkeypatch.setattr(torch, "compile", failing_compile)
    cfg, config_dir = load_config(write_config(), [*SETTINGS, "trainer.compile=true"])
    fallback = run_training(cfg, config_dir, progress=False)
    assert eager["compile"] is None
    assert fallback["compile"] == "RuntimeError: InductorError: no working C++ compiler found"
    assert "trainer.compile: torch.compile failed here (RuntimeError: InductorError" in capsys.readouterr().out
    a, b = _weights(eager), _weights(fallback)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert fallback["test"] == eager["test"]


def test_compile_is_a_boolean(write_config):
    with pytest.raises(ValueError, match="compile"):
        load_config(write_config(), ["trainer.compile=sometimes"])


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_compiled_run_trains_and_exports_as_an_eager_one(write_config, tmp_path, compiler_works):
    """Compiled for real on this CPU: the run says so, learns as the eager run does (the compiler's fused
    kernels round differently, so not bit for bit), and its checkpoint and ONNX file are a plain decoder's."""
    from exports.onnx import export_run

    settings = [*SETTINGS, "trainer.max_epochs=8"]
    cfg, config_dir = load_config(write_config(), settings)
    eager = run_training(cfg, config_dir, progress=False)
    cfg, config_dir = load_config(write_config(), [*settings, "trainer.compile=true"])
    compiled = run_training(cfg, config_dir, progress=False)
    assert compiled["compile"] == "compiled"
    a, b = _weights(eager), _weights(compiled)
    assert a.keys() == b.keys()  # no "_orig_mod." in the saved names
    assert any(not torch.equal(a[k], b[k]) for k in a)  # compiled indeed: its kernels round differently
    exported = export_run(Path(compiled["run_dir"]), out=tmp_path / "compiled.onnx")
    assert exported.path.is_file() and exported.parity["max_abs_diff"] < 1e-4


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_the_compiled_forward_computes_what_the_eager_network_does(compiler_works):
    """Against the network itself: the same outputs in evaluation mode, the same outputs and gradients in
    training mode (float32 rounding apart; no dropout, whose masks the compiler draws its own way), and the
    trial left the network's state as it was."""
    import models
    from pipeline.compiling import compiled_forward

    torch.manual_seed(0)
    net = models.build("eegnet", n_chans=8, n_times=125, n_outputs=3, sfreq=125.0, dropout=0.0)
    x = torch.randn(16, 8, 125)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    forward, reason = compiled_forward(net, x)
    assert reason is None and forward is not None
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    net.eval()
    with torch.no_grad():
        assert torch.allclose(forward(x), net(x), atol=1e-5)
    net.train()
    outputs, grads = [], []
    for run in (forward, net):
        net.zero_grad()
        out = run(x)
        out.square().sum().backward()
        outputs.append(out.detach())
        grads.append([p.grad.clone() for p in net.parameters()])
    assert torch.allclose(*outputs, atol=1e-5)
    assert all(torch.allclose(g, h, rtol=1e-4, atol=1e-4) for g, h in zip(*grads))
