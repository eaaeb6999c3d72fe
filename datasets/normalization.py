"""Normalisation fitted on the training split only; applied by :func:`datasets.dsp.apply_normalization`.

The statistics are a JSON-able mapping (the format ``apply_normalization`` reads), kept by the
DataModule and written into the exported model, so the rig applies exactly the same transform. The
mapping also records each channel's RMS amplitude before normalisation (``rms``, recording units), which
the rig compares with a live stream's to catch a unit or gain error before any decision.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .dsp import alignment_matrix, apply_normalization


def fit_normalization(
    X: np.ndarray,
    subjects: np.ndarray,
    train_idx: np.ndarray,
    kind: str,
    euclidean_alignment: bool,
    calibration: dict[str, np.ndarray] | None = None,
) -> dict[str, Any]:
    """Statistics from the training epochs.

    Euclidean alignment is unsupervised (it needs no labels) but is still fitted on training epochs only:
    each training subject's matrix comes from its own training epochs, and a subject with no training
    epochs gets its matrix from ``calibration`` (its unlabelled calibration epochs, which the caller keeps
    out of validation and test), as on a rig where the first minute of a session calibrates it.
    """
    norm: dict[str, Any] = {"kind": kind, "alignment": None}
    if euclidean_alignment:
        sources = {str(s): train_idx[subjects[train_idx] == s] for s in np.unique(subjects[train_idx])}
        sources.update({str(s): np.asarray(idx) for s, idx in (calibration or {}).items()})
        norm["alignment"] = {s: alignment_matrix(X[np.sort(idx)]).tolist() for s, idx in sources.items()}
    n_chans = X.shape[1]
    raw_sq = np.zeros(n_chans)
    total, total_sq, count = np.zeros(n_chans), np.zeros(n_chans), 0
    for start in range(0, len(train_idx), 256):  # chunked: X may be memory-mapped and large
        idx = np.sort(train_idx[start : start + 256])
        epochs = np.asarray(X[idx], dtype=np.float64)
        raw_sq += (epochs**2).sum(axis=(0, 2))
        aligned = apply_by_subject(epochs, subjects[idx], {"kind": "none", "alignment": norm["alignment"]})
        total += aligned.sum(axis=(0, 2), dtype=np.float64)
        total_sq += (aligned.astype(np.float64) ** 2).sum(axis=(0, 2))
        count += aligned.shape[0] * aligned.shape[2]
    norm["rms"] = np.sqrt(raw_sq / max(count, 1)).tolist()
    if kind == "standardize":
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0))
        std[std == 0] = 1.0
        norm["mean"], norm["std"] = mean.tolist(), std.tolist()
    return norm


def take_calibration(
    subjects: np.ndarray, known: set[str], parts: dict[str, np.ndarray], n_epochs: int
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The first ``n_epochs`` epochs (in recording order) of every subject not in ``known``, taken out of
    ``parts`` (name -> epoch indices): they calibrate that subject's alignment and are never scored."""
    calibration: dict[str, np.ndarray] = {}
    candidates = np.sort(np.concatenate([idx for idx in parts.values()])) if parts else np.zeros(0, dtype=np.int64)
    for s in np.unique(subjects[candidates]):
        if str(s) in known:
            continue
        calibration[str(s)] = candidates[subjects[candidates] == s][:n_epochs]
    taken = np.concatenate(list(calibration.values())) if calibration else np.zeros(0, dtype=np.int64)
    return calibration, {name: idx[~np.isin(idx, taken)] for name, idx in parts.items()}


def apply_by_subject(X: np.ndarray, subjects: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """Apply ``norm`` to epochs of several subjects (each with its own alignment matrix)."""
    if not norm.get("alignment"):
        return apply_normalization(X, norm)
    out = np.empty(X.shape, dtype=np.float32)
    for s in np.unique(subjects):
        sel = subjects == s
        out[sel] = apply_normalization(X[sel], norm, subject=str(s))
    return out
