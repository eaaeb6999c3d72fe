"""`bmi export`: a verified, self-describing ONNX bundle, and every bad input refused clearly."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from exports.metadata import METADATA_KEY, MetadataError
from exports.onnx import export_run, read_model_metadata
from pipeline.record.run import load_network


def test_export_embeds_complete_metadata(exported, trained_run):
    meta = read_model_metadata(exported.path)
    info = json.loads((trained_run / "data_info.json").read_text())
    summary = json.loads((trained_run / "summary.json").read_text())
    assert meta["classes"] == info["classes"] == ["rest", "grasp", "open"]
    assert meta["channels"]["names"] == info["ch_names"] and len(meta["channels"]["types"]) == 64
    assert meta["sfreq"] == 125.0 and meta["window"]["n_times"] == 125 and meta["window"]["seconds"] == 1.0
    assert meta["preprocessing"]["causal"] is True and meta["preprocessing"]["decim"] == 2
    assert len(meta["preprocessing"]["sos"]) == 4  # order-4 band-pass = 4 sections
    assert len(meta["normalization"]["mean"]) == 64
    assert meta["run"]["run_id"] == summary["run_id"] and meta["run"]["data_hash"] == summary["data_hash"]
    assert meta["run"]["config"]["model"]["name"] == "eegnet"
    assert meta["model"]["hyperparameters"]["name"] == "eegnet"
    onnx.checker.check_model(str(exported.path))


def test_onnxruntime_matches_torch_and_report_is_written(exported, trained_run):
    parity = json.loads(exported.path.with_suffix(".parity.json").read_text())
    assert parity["passed"] and parity["max_abs_diff"] < 1e-4 and "validation windows" in parity["windows"]
    net, *_ = load_network(trained_run)
    x = np.random.default_rng(0).standard_normal((5, 64, 125)).astype(np.float32)
    session = ort.InferenceSession(str(exported.path))
    logits, probs = session.run(None, {"signals": x})
    with torch.no_grad():
        ref = net(torch.from_numpy(x)).numpy()
    assert np.abs(logits - ref).max() < 1e-4
    np.testing.assert_allclose(probs.sum(1), 1, rtol=1e-5)


def test_parity_tolerance_follows_the_logits_scale(tmp_path):
    """float32 rounding grows with the values: logits in the hundreds (a decoder started from LDA) are held to
    1e-4 of their scale, and a file holding another decoder fails however large the logits."""
    import models
    from exports.onnx import check_parity
    from exports.torch_export import export_onnx

    def big(seed):
        torch.manual_seed(seed)
        net = models.build("logvar", n_chans=8, n_times=100, n_outputs=2, sfreq=100.0).eval()
        with torch.no_grad():
            net.classifier.weight.mul_(1000.0)
        return net

    net = big(0)
    path = export_onnx(net, 8, 100, tmp_path / "big.onnx")
    X = np.random.default_rng(0).standard_normal((64, 8, 100)).astype(np.float32)
    parity = check_parity(net, path, X)
    with torch.no_grad():
        scale = float(net(torch.from_numpy(X)).abs().max())
    assert scale > 10 and parity["tolerance"] == pytest.approx(1e-4 * scale) and parity["passed"], parity
    assert not check_parity(big(1), path, X)["passed"]


def test_failed_parity_leaves_no_file(trained_run, tmp_path, monkeypatch):
    import exports.onnx as onnx_mod

    real = onnx_mod.check_parity

    def broken(net, path, X):
        return real(net, path, X + 1.0) | {"passed": False}

    monkeypatch.setattr(onnx_mod, "check_parity", broken)
    with pytest.raises(RuntimeError, match="parity failed"):
        export_run(trained_run, out=tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


def test_zero_phase_run_is_refused(trained_run, tmp_path):
    run = tmp_path / "zero"
    shutil.copytree(trained_run, run)
    info = json.loads((run / "data_info.json").read_text())
    info["preprocessing"]["causal"] = False
    (run / "data_info.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match="zero-phase"):
        export_run(run, out=tmp_path / "m.onnx")


def test_run_without_checkpoint(trained_run, tmp_path):
    run = tmp_path / "nockpt"
    shutil.copytree(trained_run, run)
    shutil.rmtree(run / "checkpoints")
    with pytest.raises(FileNotFoundError, match="Checkpoint not found"):
        export_run(run, out=tmp_path / "m.onnx")
    with pytest.raises(FileNotFoundError, match="summary.json is missing"):
        export_run(tmp_path, out=tmp_path / "m.onnx")


def test_checkpoint_from_another_architecture(trained_run, tmp_path):
    run = tmp_path / "other"
    shutil.copytree(trained_run, run)
    summary = json.loads((run / "summary.json").read_text())
    summary["model"] = "shallow"
    (run / "summary.json").write_text(json.dumps(summary))
    with pytest.raises(ValueError, match="different architecture or shape"):
        export_run(run, out=tmp_path / "m.onnx")


def test_checkpoint_with_pickled_objects_is_refused(trained_run, tmp_path):
    run = tmp_path / "pickled"
    shutil.copytree(trained_run, run)
    ckpt = torch.load(run / "checkpoints" / "best.ckpt", weights_only=True)
    ckpt["payload"] = shutil.rmtree  # an arbitrary object: must never be unpickled
    torch.save(ckpt, run / "checkpoints" / "best.ckpt")
    with pytest.raises(ValueError, match="safely"):
        export_run(run, out=tmp_path / "m.onnx")


def test_corrupted_and_foreign_onnx_files(exported, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(exported.path.read_bytes()[:500])
    with pytest.raises(ValueError, match="not a valid ONNX model"):
        read_model_metadata(truncated)
    foreign = tmp_path / "foreign.onnx"
    model = onnx.load(str(exported.path))
    del model.metadata_props[:]
    onnx.save(model, str(foreign))
    with pytest.raises(MetadataError, match=f"no '{METADATA_KEY}' metadata"):
        read_model_metadata(foreign)
    with pytest.raises(FileNotFoundError):
        read_model_metadata(tmp_path / "missing.onnx")


def test_bmi_inspect_json_and_text(exported, tmp_path):
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "inspect", str(exported.path), "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["classes"] == ["rest", "grasp", "open"]
    text = subprocess.run([sys.executable, "-m", "pipeline.cli", "inspect", str(exported.path)],
                          capture_output=True, text=True, timeout=60).stdout
    assert "eegnet" in text and "causal" in text and "rest, grasp, open" in text
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    err = subprocess.run([sys.executable, "-m", "pipeline.cli", "inspect", str(bad)], capture_output=True, text=True, timeout=60)
    assert err.returncode == 1 and "not a valid ONNX model" in err.stderr


def test_quantize_reports_accuracy_change(trained_run, exported, tmp_path):
    result = export_run(trained_run, out=tmp_path / "q.onnx", quantize=True, max_accuracy_drop=1.0)
    q = result.parity["quantization"]
    assert q["metric"] == "accuracy" and q["drop"] == pytest.approx(q["before"] - q["after"])
    # both accuracies recomputed here with onnxruntime on the run's labelled validation windows (the windows the
    # export checks on): the float model's (the session's export of the same run) and the int8 file's
    from exports.onnx import _parity_windows

    info = json.loads((trained_run / "data_info.json").read_text())
    X, y, source = _parity_windows(trained_run, info, len(info["ch_names"]), int(info["n_times"]))
    assert y is not None and "validation windows" in source

    def accuracy(path):
        probs = ort.InferenceSession(str(path)).run(["probabilities"], {"signals": X})[0]
        return float((probs.argmax(axis=1) == y).mean())

    assert q["before"] == pytest.approx(accuracy(exported.path), abs=1e-9)
    assert q["after"] == pytest.approx(accuracy(tmp_path / "q.onnx"), abs=1e-9)
    assert {n.op_type for n in onnx.load(str(tmp_path / "q.onnx")).graph.node} & {"DynamicQuantizeLinear",
                                                                                  "MatMulInteger", "ConvInteger"}
    with pytest.raises(ValueError, match="int8 quantisation drops"):
        export_run(trained_run, out=tmp_path / "q2.onnx", quantize=True, max_accuracy_drop=-1.0)
    assert not (tmp_path / "q2.onnx").exists()


def test_export_attaches_the_onnx_file_to_the_offline_wandb_run(trained_run, tmp_path, monkeypatch):
    from pipeline.record.config import load_config
    from pipeline.train import run_training
    from wandb_records import complete_records

    monkeypatch.setenv("WANDB_MODE", "offline")
    # the session's run again (its config holds absolute paths), tracked this time
    cfg, config_dir = load_config(trained_run / "config.yaml", ["tracking.mode=offline", f"runs_dir={tmp_path}"])
    run_dir = Path(run_training(cfg, config_dir, progress=False)["run_dir"])
    before = set((run_dir / "wandb").glob("offline-run-*"))
    export_run(run_dir, out=tmp_path / "decoder.onnx")
    (resumed,) = set((run_dir / "wandb").glob("offline-run-*")) - before  # `wandb sync` joins it to the run
    records = complete_records(next(resumed.glob("*.wandb")))
    assert next(r.run for r in records if r.WhichOneof("record_type") == "run").run_id == run_dir.name
    (artifact,) = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    assert artifact.type == "model" and [m.path for m in artifact.manifest.contents] == ["decoder.onnx"]
    assert json.loads(artifact.metadata) == {"format": "onnx"}


@pytest.mark.parametrize("verbose", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_bmi_export_quantize_is_quiet_unless_verbose(trained_run, tmp_path, verbose):
    """onnxruntime's quantiser lists every tensor it skips on the root logger: filtered by default, shown with
    --verbose; the command's own summary is the last thing printed."""
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "export", str(trained_run), "--quantize",
                          "--max-accuracy-drop", "1", "--out", str(tmp_path / "a.onnx"), *(["--verbose"] if verbose else [])],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == f"report: {tmp_path / 'a.parity.json'}"
    assert ("WARNING:root:" in out.stderr) == verbose and (out.stderr == "") != verbose
