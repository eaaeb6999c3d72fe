"""Evaluate a trained run on other recordings (a later session, another day) with the run's own
preprocessing and normalisation: calibrate on day one, test on day two."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np


def load_network(run_dir: Path, checkpoint: str | Path = "best"):
    """The run's plain decoder with the chosen checkpoint's weights (``weights_only`` loading)."""
    import torch

    import models

    run_dir = Path(run_dir)
    summary_path = run_dir / "summary.json"
    if not summary_path.is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished run: it has no summary.json.")
    summary = json.loads(summary_path.read_text())
    if summary.get("model") == "ensemble":  # one module averaging its members' probabilities
        from .ensemble import load_ensemble

        return load_ensemble(run_dir)
    info = json.loads((run_dir / "data_info.json").read_text())
    if checkpoint in ("best", "last"):
        path = run_dir / (summary["best_checkpoint"] if checkpoint == "best" and summary.get("best_checkpoint")
                          else "checkpoints/last.ckpt")
    else:
        path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path} (run {run_dir.name} has: "
                                f"{sorted(p.name for p in (run_dir / 'checkpoints').glob('*.ckpt')) or 'none'}).")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or corrupt file: name it
        raise ValueError(f"Cannot load checkpoint {path} safely (weights only): {type(err).__name__}: {err}") from None
    state = {k[len("net."):]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
    if not state:
        raise ValueError(f"Checkpoint {path} holds no decoder weights (no 'net.*' keys in its state_dict).")
    net = models.build(summary["model"], n_chans=len(info["ch_names"]), n_times=info["n_times"],
                       n_outputs=len(info["classes"]), sfreq=info["sfreq"], **summary.get("model_params", {}))
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                  if state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"Checkpoint {path} was trained for a different architecture or shape than {summary['model']!r} with "
            f"{len(info['ch_names'])} channels x {info['n_times']} samples: missing keys {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {sorted(mismatched)[:5]}."
        )
    net.load_state_dict(state)
    return net.eval(), summary, info, path


def evaluate_run(run_dir: str | Path, data_config: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Metrics of a run's best checkpoint on the recordings named by ``data_config``."""
    import torch

    from datasets.datamodule import EpochsDataModule
    from datasets.typed import apply_overrides, from_mapping, load_yaml, to_mapping
    from datasets.config import DataConfig

    from .baseline import scores
    from .train import resume_config

    run_dir = Path(run_dir)
    net, summary, info, _ = load_network(run_dir)
    config_run = Path(summary["members"][0]) if summary.get("model") == "ensemble" else run_dir
    run_cfg, _, _ = resume_config(config_run) if (config_run / "checkpoints" / "last.ckpt").is_file() else (None, None, None)
    new_raw = load_yaml(data_config)
    new_raw = apply_overrides(new_raw, overrides)
    new_data = new_raw.get("data", new_raw)
    # The run's own preprocessing, window and picks; only which recordings (and their event names) change.
    base = to_mapping(run_cfg.data) if run_cfg is not None else {}
    merged = {**base, **{k: v for k, v in new_data.items() if k in ("files", "bids", "events", "stim_channel",
                                                                     "group_pattern", "cache_dir", "rename", "montage")}}
    cfg = from_mapping(DataConfig, merged, "data")
    if set(cfg.class_names) != set(info["classes"]):
        raise ValueError(f"The new recordings' classes {cfg.class_names} differ from the run's {info['classes']} "
                         "(the 'events' mapping must produce the same class names).")
    to_run_order = np.array([info["classes"].index(c) for c in cfg.class_names])  # the config may list them in another order
    dm = EpochsDataModule(cfg, Path(data_config).resolve().parent, normalization=info["normalization"], eval_only=True)
    dm.prepare_data()
    dm.setup("test")
    if dm.ch_names != info["ch_names"]:
        missing = [c for c in info["ch_names"] if c not in dm.ch_names]
        raise ValueError(f"The new recordings' channels differ from the run's: missing {missing}, "
                         f"extra {[c for c in dm.ch_names if c not in info['ch_names']]}.")
    if abs(dm.sfreq - info["sfreq"]) > 1e-6:
        raise ValueError(f"The new recordings give {dm.sfreq} Hz after preprocessing; the run was trained at {info['sfreq']} Hz.")
    X, y = dm.arrays("test")
    y = to_run_order[y]
    with torch.no_grad():
        preds = np.concatenate([net(torch.from_numpy(X[i : i + 256])).argmax(1).numpy() for i in range(0, len(X), 256)])
    result = scores(y, preds)
    result.update(n_epochs=int(len(y)), per_class={c: int((y == i).sum()) for i, c in enumerate(info["classes"])},
                  files=list(dm.data_info()["files"]),
                  run_id=summary["run_id"])
    return result
