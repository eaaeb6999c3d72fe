"""The four classification metrics, computed in one place from a confusion matrix.

Training (per epoch, from the task's DDP-synchronised confusion matrix), evaluation, the classical references
and the demo all call :func:`from_confusion` (or :func:`scores` on labels), so a number in ``summary.json``,
``bmi evaluate`` and the demo report means the same thing everywhere. Definitions (scikit-learn's):

- ``accuracy``: correct / all.
- ``balanced_accuracy``: the mean recall over the classes that occur in the true labels.
- ``kappa``: Cohen's kappa, (p_o - p_e) / (1 - p_e); undefined (NaN) when p_e = 1.
- ``f1_macro``: the mean F1 over the classes that occur in the true or the predicted labels (0 where a class
  has no true positive).

Light: numpy only.
"""

from __future__ import annotations

import numpy as np

#: every stage and report uses these, in this order
METRICS = ("accuracy", "balanced_accuracy", "kappa", "f1_macro")


def confusion(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> np.ndarray:
    """``[true, predicted]`` counts; ``n_classes`` defaults to the largest label + 1."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64).ravel(), np.asarray(y_pred, dtype=np.int64).ravel()
    if len(y_true) != len(y_pred):
        raise ValueError(f"'y_true' ({len(y_true)} labels) and 'y_pred' ({len(y_pred)}) must have the same length.")
    n = n_classes if n_classes is not None else int(max(y_true.max(initial=-1), y_pred.max(initial=-1)) + 1)
    return np.bincount(y_true * n + y_pred, minlength=n * n).reshape(n, n)


def from_confusion(matrix: np.ndarray, digits: int | None = 6) -> dict[str, float]:
    """The four metrics of a ``[true, predicted]`` count matrix (NaN for every metric when it is empty)."""
    c = np.asarray(matrix, dtype=np.float64)
    total = c.sum()
    if total == 0:
        return {m: float("nan") for m in METRICS}
    tp, true, pred = np.diag(c), c.sum(1), c.sum(0)
    occurs = true > 0
    p_o = tp.sum() / total
    p_e = float((true * pred).sum() / total**2)
    present = (true + pred) > 0
    f1 = np.divide(2 * tp, true + pred, out=np.zeros_like(tp), where=(true + pred) > 0)
    values = {
        "accuracy": p_o,
        "balanced_accuracy": float((tp[occurs] / true[occurs]).mean()),
        "kappa": (p_o - p_e) / (1 - p_e) if p_e < 1 else float("nan"),
        "f1_macro": float(f1[present].mean()),
    }
    return {k: round(float(v), digits) if digits is not None else float(v) for k, v in values.items()}


def scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int | None = None) -> dict[str, float]:
    """The four metrics of class labels against predictions (rounded to 6 digits, as runs record them)."""
    return from_confusion(confusion(y_true, y_pred, n_classes))


def wilson_interval(k: int, n: int, z: float = 1.959964) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``k`` of ``n`` (95 % with the default ``z``), or None when
    ``n`` is 0: how far a rate measured on a few trials may be from the one behind it."""
    if n <= 0:
        return None
    p, z2 = k / n, z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * np.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))
