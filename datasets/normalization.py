"""Normalisation fitted on the training split only; applied by :func:`datasets.dsp.apply_normalization`.

The statistics are a JSON-able mapping (the format ``apply_normalization`` reads), kept by the
DataModule and written into the exported model, so the rig applies exactly the same transform.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from scipy import linalg

from .dsp import apply_normalization


def alignment_matrix(X: np.ndarray) -> np.ndarray:
    """Euclidean alignment (He & Wu 2020, doi:10.1109/TBME.2019.2913914): R^-1/2 of the mean covariance."""
    covs = np.einsum("nct,ndt->ncd", X, X) / X.shape[2]
    mean = covs.mean(axis=0)
    mean += 1e-10 * np.trace(mean) / len(mean) * np.eye(len(mean))
    return np.real(linalg.fractional_matrix_power(mean, -0.5)).astype(np.float32)


def fit_normalization(
    X: np.ndarray, subjects: np.ndarray, train_idx: np.ndarray, kind: str, euclidean_alignment: bool
) -> dict[str, Any]:
    """Statistics from the training epochs; alignment matrices for every subject.

    Euclidean alignment is unsupervised (it needs no labels), so each subject's matrix comes from that
    subject's own epochs, as on a rig where the first minutes of a session calibrate it.
    """
    norm: dict[str, Any] = {"kind": kind, "alignment": None}
    if euclidean_alignment:
        norm["alignment"] = {
            str(s): alignment_matrix(np.asarray(X[subjects == s], dtype=np.float64)).tolist() for s in np.unique(subjects)
        }
    if kind == "standardize":
        n_chans = X.shape[1]
        total, total_sq, count = np.zeros(n_chans), np.zeros(n_chans), 0
        for start in range(0, len(train_idx), 256):  # chunked: X may be memory-mapped and large
            idx = train_idx[start : start + 256]
            chunk = apply_by_subject(np.asarray(X[np.sort(idx)]), subjects[np.sort(idx)], {"kind": "none", "alignment": norm["alignment"]})
            total += chunk.sum(axis=(0, 2), dtype=np.float64)
            total_sq += (chunk.astype(np.float64) ** 2).sum(axis=(0, 2))
            count += chunk.shape[0] * chunk.shape[2]
        mean = total / count
        std = np.sqrt(np.maximum(total_sq / count - mean**2, 0))
        std[std == 0] = 1.0
        norm["mean"], norm["std"] = mean.tolist(), std.tolist()
    return norm


def apply_by_subject(X: np.ndarray, subjects: np.ndarray, norm: dict[str, Any]) -> np.ndarray:
    """Apply ``norm`` to epochs of several subjects (each with its own alignment matrix)."""
    if not norm.get("alignment"):
        return apply_normalization(X, norm)
    out = np.empty(X.shape, dtype=np.float32)
    for s in np.unique(subjects):
        sel = subjects == s
        out[sel] = apply_normalization(X[sel], norm, subject=str(s))
    return out
