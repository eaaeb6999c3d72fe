"""The classical references on the same split: CSP + LDA (``mne.decoding`` and scikit-learn) and the
Riemannian tangent space + logistic regression (pyriemann).

Users always ask whether the deep decoder beats them, so every run reports both beside the deep model.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import numpy as np

from .metrics import scores


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


def tangent_space_metrics(dm) -> dict[str, Any]:
    """Shrunk (OAS) covariances -> tangent space at their Riemannian mean -> logistic regression, fitted on the
    train split; scores val and test.

    Barachant, Bonnet, Congedo & Jutten (2012), Multiclass brain-computer interface classification by
    Riemannian geometry, IEEE TBME 59(4), https://doi.org/10.1109/TBME.2011.2172210 (pyriemann's
    ``Covariances`` -> ``TangentSpace`` -> scikit-learn ``LogisticRegression``).
    """
    from pyriemann.estimation import Covariances
    from pyriemann.tangentspace import TangentSpace
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    X_train, y_train = dm.arrays("train")
    model = make_pipeline(Covariances(estimator="oas"), TangentSpace(metric="riemann"),
                          LogisticRegression(C=1.0, max_iter=1000))
    model.fit(X_train.astype(np.float64), y_train)
    out: dict[str, Any] = {"model": "TangentSpace+LR"}
    for stage in ("val", "test"):
        X, y = dm.arrays(stage)
        out[stage] = scores(y, model.predict(X.astype(np.float64)))
    return out


def all_baselines(dm) -> dict[str, Any]:
    """Both references; one that cannot be fitted (too few trials) reports its error instead of failing the run."""
    out: dict[str, Any] = {}
    for name, fn in (("csp_lda", baseline_metrics), ("tangent_space", tangent_space_metrics)):
        try:
            out[name] = fn(dm)
        except (ValueError, RuntimeError, np.linalg.LinAlgError) as err:
            out[name] = {"error": f"{type(err).__name__}: {err}"}
    return out


def refit_baselines(first_dm, refit_dm) -> dict[str, Any]:
    """With ``trainer.refit``, each reference is fitted as the kept decoder was: its test score from the training
    and validation trials together, its validation score from the training trials alone."""
    first, refitted = all_baselines(first_dm), all_baselines(refit_dm)
    out: dict[str, Any] = {}
    for name, ref in refitted.items():
        out[name] = ref if "error" in ref else {**ref, "val": first[name].get("val"),
                                                "test_fitted_on": "training + validation trials"}
    return out


def versus_baselines(test: dict[str, float], baselines: dict[str, Any], metric: str = "balanced_accuracy") -> dict[str, Any]:
    """The decoder's test ``metric`` minus each reference's (positive: the decoder beat it)."""
    out: dict[str, Any] = {}
    for name, b in baselines.items():
        ref = b.get("test", {}).get(metric)
        out[name] = round(test[metric] - ref, 6) if ref is not None and metric in test else None
    out["beat_all"] = all(v is not None and v > 0 for k, v in out.items())
    return out


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser(
        "baseline", help="CSP + LDA and tangent space + logistic regression on a config's split",
        description="Fit the two classical references on a config's training split and score them on its validation "
                    "and test splits: CSP (log-variance) + LDA, and Riemannian tangent space + logistic regression.")
    p.add_argument("config", help="experiment or data config (YAML)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    add_verbose(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from datasets.datamodule import EpochsDataModule
    from pipeline.record.config import load_config

    cfg, config_dir = load_config(args.config, args.set)
    dm = EpochsDataModule(cfg.data, config_dir, seed=cfg.seed)
    dm.prepare_data()
    dm.setup("fit")
    result = all_baselines(dm)
    if args.json:
        print(json.dumps(result))
    else:
        for name, r in result.items():
            if "error" in r:
                print(f"{name}: {r['error']}")
                continue
            for stage in ("val", "test"):
                print(f"{r['model']} {stage}: " + ", ".join(f"{k} {v:.3f}" for k, v in r[stage].items()))
    return 0
