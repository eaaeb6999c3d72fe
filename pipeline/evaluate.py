"""Evaluate a trained run on other recordings (a later session, another day) with the run's own
preprocessing and normalisation: calibrate on day one, test on day two."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np


def evaluate_run(run_dir: str | Path, data_config: str | Path, overrides: list[str] | None = None) -> dict[str, Any]:
    """Metrics of a run's best checkpoint on the recordings named by ``data_config``."""
    import torch

    from datasets.datamodule import EpochsDataModule
    from datasets.typed import apply_overrides, from_mapping, load_yaml, to_mapping
    from datasets.config import DataConfig

    from .metrics import scores
    from .record.run import config_run, load_network, read_config

    run_dir = Path(run_dir)
    net, summary, info, _ = load_network(run_dir)
    run_cfg, _ = read_config(config_run(run_dir))
    new_raw = load_yaml(data_config)
    new_raw = apply_overrides(new_raw, overrides)
    new_data = new_raw.get("data", new_raw)
    # The run's own preprocessing, window and picks; only which recordings (and their event names) change.
    base = to_mapping(run_cfg.data)
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
