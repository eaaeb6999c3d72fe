"""The classical reference on the same split: CSP + LDA (``mne.decoding`` and scikit-learn).

Users always ask whether the deep decoder beats it, so every run reports it beside the deep model.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np


def scores(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, f1_score

    return {
        "accuracy": round(float(accuracy_score(y_true, y_pred)), 6),
        "balanced_accuracy": round(float(balanced_accuracy_score(y_true, y_pred)), 6),
        "kappa": round(float(cohen_kappa_score(y_true, y_pred)), 6),
        "f1_macro": round(float(f1_score(y_true, y_pred, average="macro")), 6),
    }


def baseline_metrics(dm, n_components: int = 4) -> dict[str, Any]:
    """Fit CSP (log-variance features, Ledoit-Wolf covariances) + LDA on the train split; score val and test."""
    import mne
    from mne.decoding import CSP
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.pipeline import make_pipeline

    X_train, y_train = dm.arrays("train")
    n_components = min(n_components, X_train.shape[1])
    model = make_pipeline(CSP(n_components=n_components, reg="ledoit_wolf", log=True), LinearDiscriminantAnalysis())
    with mne.utils.use_log_level("error"):
        model.fit(X_train.astype(np.float64), y_train)
        out: dict[str, Any] = {"model": f"CSP({n_components})+LDA"}
        for stage in ("val", "test"):
            X, y = dm.arrays(stage)
            out[stage] = scores(y, model.predict(X.astype(np.float64)))
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("baseline", help="CSP + LDA reference on a config's split")
    p.add_argument("config", help="experiment or data config (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from datasets.datamodule import EpochsDataModule
    from pipeline.config import load_config

    cfg, config_dir = load_config(args.config, args.set)
    dm = EpochsDataModule(cfg.data, config_dir, seed=cfg.seed)
    dm.prepare_data()
    dm.setup("fit")
    result = baseline_metrics(dm)
    if args.json:
        print(json.dumps(result))
    else:
        for stage in ("val", "test"):
            print(f"{result['model']} {stage}: " + ", ".join(f"{k} {v:.3f}" for k, v in result[stage].items()))
    return 0
