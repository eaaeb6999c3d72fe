"""A gated decoder's run exports to one ONNX file: both stages, the gate output, its thresholds in the metadata."""

import copy
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from exports.metadata import MetadataError, validate_metadata

import yaml


@pytest.fixture(scope="module")
def gated_export(tmp_path_factory, recordings):
    from exports.onnx import export_run
    from pipeline.record.config import load_config
    from pipeline.train import run_training

    folder = tmp_path_factory.mktemp("gated")
    params = {"gate": {"name": "logvar", "n_filters": 4}, "type": {"name": "logvar", "n_filters": 4},
              "gate_threshold": 0.6, "gate_hysteresis": 0.05, "gate_dwell_s": 0.3, "type_threshold": 0.55}
    config = {
        "data": {"files": [str(f) for f in recordings], "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
                 "tmin": 0.5, "tmax": 1.5, "bandpass": [8.0, 30.0], "resample": 125.0,
                 "split": {"method": "holdout", "by": "run"}, "batch_size": 16, "cache_dir": str(folder / "cache")},
        "model": {"name": "gated", "params": params},
        "trainer": {"max_epochs": 1, "early_stopping_patience": None, "enable_progress_bar": False},
        "tracking": {"mode": "disabled"}, "runs_dir": str(folder / "runs"),
    }
    (folder / "train.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    cfg, config_dir = load_config(folder / "train.yaml")
    summary = run_training(cfg, config_dir, progress=False)
    return export_run(Path(summary["run_dir"]), out=folder / "gated.onnx")


@pytest.mark.slow
def test_gated_export_carries_the_gate(gated_export):
    meta = gated_export.metadata
    assert meta["io"]["outputs"] == ["logits", "probabilities", "gate"]
    assert meta["gate"] == {"output": "gate", "rest_class": "rest", "threshold": 0.6, "hysteresis": 0.05,
                            "dwell_s": 0.3, "type_threshold": 0.55}
    assert meta["model"]["hyperparameters"]["gate"]["name"] == "logvar"
    assert gated_export.parity["passed"] and gated_export.parity["max_abs_diff"] < 1e-4
    session = ort.InferenceSession(str(gated_export.path), providers=["CPUExecutionProvider"])
    n_chans, n_times = meta["io"]["input_shape"][1:]
    x = np.random.default_rng(0).standard_normal((3, n_chans, n_times)).astype(np.float32)
    probs, gate = session.run(["probabilities", "gate"], {"signals": x})
    rest = meta["classes"].index("rest")
    np.testing.assert_allclose(probs[:, rest], 1 - gate, atol=1e-5)


def test_gate_metadata_is_checked(exported):
    meta = copy.deepcopy(exported.metadata)  # a flat decoder's document, given a gate
    meta["io"]["outputs"] = ["logits", "probabilities", "gate"]
    meta["gate"] = {"output": "gate", "rest_class": "rest", "threshold": 0.5, "hysteresis": 0.1, "dwell_s": 0.2}
    assert validate_metadata(meta)["gate"]["rest_class"] == "rest"
    broken = copy.deepcopy(meta)
    broken["io"]["outputs"] = ["logits", "probabilities"]
    with pytest.raises(MetadataError, match=r"'gate' and the output 'gate' in 'io.outputs' go together"):
        validate_metadata(broken)
    broken = copy.deepcopy(meta)
    broken["gate"]["rest_class"] = "idle"
    with pytest.raises(MetadataError, match=r"'gate.rest_class' \('idle'\) is not one of the classes"):
        validate_metadata(broken)
    broken = copy.deepcopy(meta)
    broken["gate"]["threshold"] = 1.5
    with pytest.raises(MetadataError, match=r"'gate.threshold' \(1.5\) must be in \[0, 1\)"):
        validate_metadata(broken)
    flat = copy.deepcopy(meta)
    del flat["gate"]
    flat["io"]["outputs"] = ["logits", "probabilities"]
    validate_metadata(flat)  # a flat decoder's document has no gate section
