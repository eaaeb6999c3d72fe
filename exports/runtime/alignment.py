"""Euclidean alignment on the rig: which matrix a session uses, estimated online, saved and reloaded.

A model trained with alignment holds one matrix per training subject. A session uses one of them
(``--subject``), one estimated from its own first seconds (``--align-seconds``, decisions withheld
meanwhile, the same estimator as training: :func:`datasets.dsp.alignment_matrix` over whole windows), or
one saved by an earlier session (``--alignment FILE``, written with ``--save-alignment FILE``).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datasets import atomic
from datasets.dsp import Normalizer, alignment_matrix


@dataclass
class AlignmentPlan:
    matrix: np.ndarray | None  # None: none needed, or still to be estimated
    source: str
    estimate_samples: int = 0  # > 0: estimate from this many settled samples (model rate) at the start


def choose_alignment(meta: dict[str, Any], subject: str | None, align_seconds: float | None,
                     path: Path | None) -> AlignmentPlan:
    known = meta["normalization"].get("alignment") or {}
    chosen = [f for f, v in (("--subject", subject), ("--align-seconds", align_seconds), ("--alignment", path)) if v]
    if not known:
        if chosen:
            raise ValueError(f"{chosen[0]} applies to models trained with Euclidean alignment; this one was not.")
        return AlignmentPlan(None, "none (the model does not use alignment)")
    if len(chosen) > 1:
        raise ValueError(f"Choose one of {chosen}: they all set the session's alignment.")
    if subject is not None:
        if subject not in known:
            raise ValueError(f"'--subject' ({subject!r}) is not a training subject of the model; known: {sorted(known)}. "
                             "For a new subject use --align-seconds N (or --alignment FILE from an earlier session).")
        return AlignmentPlan(np.asarray(known[subject], dtype=np.float32), f"training subject {subject}")
    if path is not None:
        return AlignmentPlan(load_alignment(path, meta), f"file {path}")
    if align_seconds is not None:
        n_times, sfreq = meta["window"]["n_times"], meta["sfreq"]
        samples = int(round(align_seconds * sfreq))
        if samples < n_times:
            raise ValueError(f"'--align-seconds' ({align_seconds:g}) must cover at least one window "
                             f"({n_times / sfreq:g} s); a minute is typical.")
        return AlignmentPlan(None, f"estimated from the session's first {align_seconds:g} s", samples)
    if len(known) == 1:
        (only, matrix), = known.items()
        return AlignmentPlan(np.asarray(matrix, dtype=np.float32), f"training subject {only} (the only one)")
    raise ValueError(f"The model uses Euclidean alignment fitted per subject ({sorted(known)}): choose --subject S "
                     "for one of them, or --align-seconds N to estimate a new subject's from the first N seconds.")


def session_normalizer(normalization: dict[str, Any], matrix: np.ndarray | None) -> Normalizer:
    """The model's normalisation (its metadata's ``normalization``) with the session's alignment matrix, or none
    when the model does not align."""
    if matrix is None:
        return Normalizer(dict(normalization, alignment=None), None)
    return Normalizer(dict(normalization, alignment={"session": matrix}), "session")


def estimate_alignment(data: np.ndarray, n_times: int) -> np.ndarray:
    """Alignment matrix from continuous preprocessed data ``[n_chans, n]``, over whole non-overlapping windows."""
    n_windows = data.shape[1] // n_times
    windows = data[:, : n_windows * n_times].reshape(data.shape[0], n_windows, n_times).transpose(1, 0, 2)
    return alignment_matrix(windows)


def save_alignment(path: Path, matrix: np.ndarray, meta: dict[str, Any], seconds: float) -> None:
    doc = {"matrix": np.asarray(matrix).tolist(), "ch_names": meta["channels"]["names"],
           "model_run_id": meta["run"].get("run_id"), "seconds": seconds,
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    atomic.write_text(path, json.dumps(doc))


def load_alignment(path: Path, meta: dict[str, Any]) -> np.ndarray:
    if not path.is_file():
        raise FileNotFoundError(f"Alignment file not found: {path}")
    try:
        doc = json.loads(path.read_text())
        matrix = np.asarray(doc["matrix"], dtype=np.float32)
        names = doc["ch_names"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as err:
        raise ValueError(f"{path} is not an alignment file written by --save-alignment ({err}).") from None
    if names != meta["channels"]["names"] or matrix.shape != (len(names), len(names)):
        raise ValueError(f"{path} was estimated for other channels than the model's ({len(names)} vs "
                         f"{len(meta['channels']['names'])}).")
    return matrix
