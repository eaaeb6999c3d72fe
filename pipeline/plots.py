"""Plots a run writes: learning curves and the confusion matrix (PNG, headless)."""

from __future__ import annotations

import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def learning_curves(metrics_csv: Path, out: Path) -> Path:
    """Plot a run's loss and balanced accuracy per epoch, training and validation side by side.

    Parameters
    ----------
    metrics_csv : Path
        The run's ``metrics.csv`` (one row per epoch, columns ``train/loss``, ``val/balanced_accuracy`` ...).
    out : Path
        The PNG to write.

    Returns
    -------
    Path
        ``out``.
    """
    rows = list(csv.DictReader(metrics_csv.open()))
    epochs = [int(r["epoch"]) for r in rows]
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 3.8))
    for key, ax in (("loss", ax_loss), ("balanced_accuracy", ax_acc)):
        for stage in ("train", "val"):
            values = [float(r[f"{stage}/{key}"]) if r.get(f"{stage}/{key}") else np.nan for r in rows]
            ax.plot(epochs, values, marker="o", ms=3, label=stage)
        ax.set_xlabel("epoch")
        ax.set_ylabel(key.replace("_", " "))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle("Learning curves")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def confusion_matrix(matrix: np.ndarray, classes: list[str], out: Path, title: str = "Test confusion matrix") -> Path:
    """Plot a confusion matrix with its counts.

    Parameters
    ----------
    matrix : array of shape (n_classes, n_classes)
        Counts: rows the true class, columns the predicted one.
    classes : list of str
        The class names, in the matrix's order.
    out : Path
        The PNG to write.
    title : str
        The figure's title.

    Returns
    -------
    Path
        ``out``.
    """
    matrix = np.asarray(matrix)
    fig, ax = plt.subplots(figsize=(1.2 * len(classes) + 2.5, 1.2 * len(classes) + 2))
    ax.imshow(matrix, cmap="Blues")
    for i in range(len(classes)):
        for j in range(len(classes)):
            ax.text(j, i, int(matrix[i, j]), ha="center", va="center",
                    color="white" if matrix[i, j] > matrix.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(classes)), classes)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
