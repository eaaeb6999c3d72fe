"""Export a run's best decoder to a self-describing, verified ONNX file.

``export_run`` loads the checkpoint with ``weights_only`` (never unpickling arbitrary objects), exports
the plain ``nn.Module``, embeds the metadata document (:mod:`exports.metadata`), checks the graph with
``onnx.checker`` and verifies parity with onnxruntime on the run's own validation windows. Only a model
that passed is moved into place; otherwise no file is left.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets import atomic
from datasets.data_info import DataInfo
from pipeline.record.run import CONFIG, DATA_INFO, SUMMARY, config_run, data_seed, load_network, read_config, read_data_info

from .metadata import METADATA_KEY, SCHEMA, SCHEMA_VERSION, MetadataError, parse_metadata_props, validate_metadata
from .units import si_unit

PARITY_ATOL = 1e-4  # of the logits' scale: a decoder started from LDA can give logits in the hundreds


@dataclass
class ExportResult:
    """What :func:`export_run` wrote: the ONNX file's ``path``, the ``metadata`` embedded in it and the
    ``parity`` report (also written next to it as ``.parity.json``)."""

    path: Path
    metadata: dict[str, Any]
    parity: dict[str, Any]


def read_model_metadata(path: str | Path) -> dict[str, Any]:
    """Our metadata document from an ONNX file; clear errors for missing, corrupt or foreign files."""
    import onnx

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as err:  # protobuf decode errors for truncated / corrupt files
        raise ValueError(f"{path} is not a valid ONNX model (corrupted or truncated?): {type(err).__name__}: {err}") from None
    return parse_metadata_props({p.key: p.value for p in model.metadata_props}, str(path))


def build_metadata(summary: dict, info: dict, config: dict, net, n_params: int) -> dict[str, Any]:
    """The metadata document of a run's decoder: its data description (``data_info.json``, typed as
    :class:`datasets.data_info.DataInfo`) carried into the runtime's sections, plus the model and the run."""
    import models

    data = DataInfo.from_dict(info, "data_info.json")
    n_chans, n_times = len(data.ch_names), data.n_times
    hp = {k: v for k, v in models.hyperparameters(net).items() if k not in ("n_chans", "n_times", "n_outputs")}
    meta = {
        "schema": SCHEMA,
        "schema_version": SCHEMA_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "model": {"name": summary["model"], "hyperparameters": hp, "n_params": n_params},
        "io": {"input": "signals", "input_shape": ["batch", n_chans, n_times], "outputs": ["logits", "probabilities"],
               "dtype": "float32"},
        "classes": list(data.classes),
        "channels": {"names": list(data.ch_names), "types": list(data.ch_types),
                     "units": [si_unit(t) for t in data.ch_types], "rename": config.get("data", {}).get("rename"),
                     "positions": data.ch_pos},
        "sfreq": data.sfreq,
        "window": {"n_times": n_times, "seconds": data.seconds, "tmin": data.tmin, "tmax": data.tmax},
        "preprocessing": info["preprocessing"],
        "normalization": info["normalization"],
        "source": data.to_dict()["source"],  # recordings, or cut trials and where their filters started
        "run": {"run_id": summary["run_id"], "metrics": {"val": summary.get("val"), "test": summary.get("test")},
                "data_hash": summary.get("data_hash"), "code_version": summary.get("code_version"), "config": config},
    }
    if getattr(net, "has_gate", False):  # a gated decoder (models.gated): its gate and the server's thresholds
        meta["io"]["outputs"] = ["logits", "probabilities", "gate"]
        meta["gate"] = gate_metadata(net, list(data.classes))
    return validate_metadata(meta, "export")


def gate_metadata(net, classes: list[str]) -> dict[str, Any]:
    """The metadata's ``gate`` section for a gated decoder trained on ``classes``."""
    return {"output": "gate", "rest_class": classes[net.rest_index], "threshold": net.gate_threshold,
            "hysteresis": net.gate_hysteresis, "dwell_s": net.gate_dwell_s, "type_threshold": net.type_threshold}


def embed_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Write our (validated) metadata document into the ONNX file at ``path``, replacing any, and check it."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    entry = model.metadata_props.add()
    entry.key, entry.value = METADATA_KEY, json.dumps(validate_metadata(metadata, str(path)))
    model.producer_name = "bmi-decoder"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def _parity_windows(run_dir: Path, info: dict, n_chans: int, n_times: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """The run's own validation windows (its split, normalised as in training), or synthetic ones if the data
    are gone. An ensemble's are its first member's (the members share that split through ``data_seed``)."""
    try:
        from datasets.datamodule import EpochsDataModule

        cfg, config_dir = read_config(config_run(run_dir))
        dm = EpochsDataModule(cfg.data, config_dir, seed=data_seed(cfg), normalization=info["normalization"])
        dm.prepare_data()
        dm.setup("fit")
        X, y = dm.arrays("val")
        if len(X):
            return X[:256].astype(np.float32), y[:256], f"{min(len(X), 256)} validation windows of the run"
    except (FileNotFoundError, ValueError) as err:
        reason = str(err)
    else:
        reason = "empty validation split"
    rng = np.random.default_rng(0)
    return rng.standard_normal((64, n_chans, n_times)).astype(np.float32), None, f"64 synthetic windows ({reason})"


def check_parity(net, onnx_path: Path, X: np.ndarray) -> dict[str, Any]:
    """Compare the ONNX file's outputs (onnxruntime, CPU) with the PyTorch network's on the windows ``X``.

    The logits (and a gated decoder's gate probability) must agree within ``PARITY_ATOL`` times the largest
    absolute logit, or ``PARITY_ATOL`` when that is below 1 (float32 rounding grows with the values), and every
    window's predicted class must be the same.

    Parameters
    ----------
    net : torch.nn.Module
        The trained network, in eval mode.
    onnx_path : Path
        The exported file.
    X : numpy.ndarray
        Windows ``[n, n_chans, n_times]`` float32, normalised as in training; run in batches of 64.

    Returns
    -------
    dict
        ``n_windows``, ``max_abs_diff``, ``tolerance``, ``same_predictions`` and ``passed``.
    """
    import onnxruntime as ort
    import torch

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits_ort = np.concatenate([session.run(["logits"], {"signals": X[i : i + 64]})[0] for i in range(0, len(X), 64)])
    with torch.no_grad():
        logits_pt = np.concatenate([net(torch.from_numpy(X[i : i + 64])).numpy() for i in range(0, len(X), 64)])
    diff = float(np.abs(logits_ort - logits_pt).max())
    if getattr(net, "has_gate", False):  # the gate output the server thresholds must agree too
        gate_ort = np.concatenate([session.run(["gate"], {"signals": X[i : i + 64]})[0] for i in range(0, len(X), 64)])
        with torch.no_grad():
            gate_pt = np.concatenate([net.gate_probability(torch.from_numpy(X[i : i + 64])).numpy()
                                      for i in range(0, len(X), 64)])
        diff = max(diff, float(np.abs(gate_ort - gate_pt).max()))
    same = bool((logits_ort.argmax(1) == logits_pt.argmax(1)).all())
    tolerance = PARITY_ATOL * max(1.0, float(np.abs(logits_pt).max()))  # float32 rounding grows with the values
    return {"n_windows": int(len(X)), "max_abs_diff": diff, "tolerance": tolerance,
            "same_predictions": same, "passed": diff < tolerance and same}


def export_run(
    run_dir: str | Path,
    *,
    checkpoint: str = "best",
    out: str | Path | None = None,
    opset: int = 17,
    quantize: bool = False,
    max_accuracy_drop: float = 0.02,
) -> ExportResult:
    """Export ``run_dir``'s decoder to ONNX with metadata and verified parity; returns where it went."""
    from .torch_export import export_onnx

    run_dir = Path(run_dir)
    for name in (SUMMARY, DATA_INFO, CONFIG):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(f"{run_dir} is not a finished run directory: {name} is missing.")
    info = read_data_info(run_dir)
    if not info["preprocessing"].get("causal", True):
        raise ValueError(
            f"Run {run_dir.name} was trained with zero-phase (offline-only) filtering, which needs future samples; "
            "the real-time runtime cannot reproduce it. Retrain with 'data.phase: causal' to deploy."
        )
    net, summary, info, ckpt_path = load_network(run_dir, checkpoint)
    import yaml

    config = yaml.safe_load((run_dir / CONFIG).read_text())
    n_chans, n_times = len(info["ch_names"]), int(info["n_times"])
    out = Path(out) if out else run_dir / "model.onnx"
    # built, checked and verified under a temporary name: only a model that passed parity reaches ``out``
    with atomic.atomic_path(out, ".onnx") as tmp:
        export_onnx(net, n_chans, n_times, tmp, opset=opset)
        metadata = build_metadata(summary, info, config, net, int(sum(p.numel() for p in net.parameters())))
        metadata["run"]["checkpoint"] = str(ckpt_path.relative_to(run_dir)) if ckpt_path.is_relative_to(run_dir) else str(ckpt_path)
        embed_metadata(tmp, metadata)
        X, y, source = _parity_windows(run_dir, info, n_chans, n_times)
        parity = check_parity(net, tmp, X) | {"windows": source, "checkpoint": metadata["run"]["checkpoint"]}
        if not parity["passed"]:
            raise RuntimeError(
                f"ONNX parity failed: max |logit difference| {parity['max_abs_diff']:.3g} (limit {parity['tolerance']:.3g}: "
                f"{PARITY_ATOL:g} x the largest |logit|, at least {PARITY_ATOL:g}), "
                f"same predictions: {parity['same_predictions']}. No model was written."
            )
        if quantize:
            from .quantize import quantize_checked

            parity["quantization"] = quantize_checked(tmp, X, y, max_accuracy_drop)
    atomic.write_json(out.with_suffix(".parity.json"), parity)
    _log_artifact(run_dir, out, summary)
    return ExportResult(out, metadata, parity)


def _log_artifact(run_dir: Path, path: Path, summary: dict) -> None:
    """Attach the ONNX file to the run's W&B run (offline runs keep it for ``wandb sync``)."""
    mode = summary.get("tracking", {}).get("mode", "disabled")
    if mode in (None, "disabled"):
        return
    import wandb

    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(id=summary["run_id"], resume="allow", mode=mode, dir=str(run_dir),
                     project=summary["tracking"].get("project"), entity=summary["tracking"].get("entity"),
                     reinit="finish_previous")
    artifact = wandb.Artifact(f"decoder-{summary['run_id']}", type="model", metadata={"format": "onnx"})
    artifact.add_file(str(path))
    run.log_artifact(artifact)
    run.finish()


__all__ = ["ExportResult", "MetadataError", "export_run", "read_model_metadata", "check_parity", "build_metadata",
           "embed_metadata"]
