"""Train / validation / test splits that never leak: whole groups (run, session, subject) and whole trials."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .config import SplitConfig


@dataclass
class Split:
    train: np.ndarray  # epoch indices
    val: np.ndarray
    test: np.ndarray
    test_groups: list[str]
    val_groups: list[str]


def _same(a: str, b: str) -> bool:
    """Group values match as strings or as numbers ("3" == "03")."""
    if a == b:
        return True
    try:
        return int(a) == int(b)
    except ValueError:
        return False


def _select(values: np.ndarray, wanted: list[str], key: str) -> np.ndarray:
    present = sorted(set(values.tolist()))
    mask = np.zeros(len(values), dtype=bool)
    for w in wanted:
        hits = [v for v in present if _same(v, str(w))]
        if not hits:
            raise ValueError(f"'split' names {key} {w!r}, which the data do not have; {key}s present: {present}.")
        mask |= np.isin(values, hits)
    return mask


def _stratified_trials(idx: np.ndarray, y: np.ndarray, trial: np.ndarray, fraction: float, seed: int):
    """Split ``idx`` by whole trials, ``fraction`` of each class's trials to the second part."""
    rng = np.random.default_rng(seed)
    first, second = [], []
    for cls in np.unique(y[idx]):
        trials = np.unique(trial[idx][y[idx] == cls])
        rng.shuffle(trials)
        n_val = max(1, int(round(fraction * len(trials)))) if len(trials) > 1 else 0
        second.extend(trials[:n_val])
        first.extend(trials[n_val:])
    in_second = np.isin(trial[idx], second)
    return idx[~in_second], idx[in_second]


def n_splits(cfg: SplitConfig, groups: dict[str, np.ndarray]) -> int:
    """How many folds the configured method has (1 for holdout)."""
    if cfg.method == "holdout":
        return 1
    if cfg.method == "loso":
        return len(np.unique(groups["subject"]))
    return cfg.n_folds


def make_split(cfg: SplitConfig, y: np.ndarray, groups: dict[str, np.ndarray], trial: np.ndarray, seed: int = 0) -> Split:
    """Indices of train / val / test epochs for the configured method and fold."""
    by = "subject" if cfg.method == "loso" else cfg.by
    values = groups[by]
    unique = sorted(set(values.tolist()), key=lambda v: (len(v), v))
    if cfg.method == "holdout":
        test_groups = [str(v) for v in cfg.test] or [unique[-1]]
        test_mask = _select(values, test_groups, by)
    else:
        folds = n_splits(cfg, groups)
        if len(unique) < folds or len(unique) < 2:
            raise ValueError(
                f"'split' method {cfg.method!r} needs at least {max(folds, 2)} distinct {by}s, the data have {len(unique)}: {unique}."
            )
        if cfg.fold >= folds:
            raise ValueError(f"'split.fold' ({cfg.fold}) must be below the number of folds ({folds}).")
        test_groups = [v for i, v in enumerate(unique) if i % folds == cfg.fold]
        test_mask = np.isin(values, test_groups)
    rest = np.flatnonzero(~test_mask)
    if cfg.val:
        val_mask = _select(values, [str(v) for v in cfg.val], by) & ~test_mask
        val_groups = [str(v) for v in cfg.val]
        train, val = np.flatnonzero(~test_mask & ~val_mask), np.flatnonzero(val_mask)
    else:
        train, val = _stratified_trials(rest, y, trial, cfg.val_fraction, seed)
        val_groups = []
    split = Split(train=train, val=val, test=np.flatnonzero(test_mask), test_groups=test_groups, val_groups=val_groups)
    check_split(split, y, trial, cfg.min_per_class, n_classes=int(y.max()) + 1 if len(y) else 0)
    return split


def check_split(split: Split, y: np.ndarray, trial: np.ndarray, min_per_class: int, n_classes: int) -> None:
    """Refuse splits that leak trials or lack classes, naming the split and the counts."""
    for a, b in (("train", "val"), ("train", "test"), ("val", "test")):
        shared = np.intersect1d(trial[getattr(split, a)], trial[getattr(split, b)])
        if shared.size:
            raise RuntimeError(f"Split leak: {shared.size} trial(s) are in both {a} and {b}.")
    for name, need in (("train", min_per_class), ("val", 1), ("test", 1)):
        idx = getattr(split, name)
        counts = np.bincount(y[idx], minlength=n_classes)
        if len(idx) == 0:
            raise ValueError(f"The {name} split is empty; check 'split' (method, by, test, val).")
        present = int((counts > 0).sum())
        if present < 2:
            raise ValueError(f"The {name} split has one class only (counts per class: {counts.tolist()}); a decoder needs at least two.")
        if counts.min() < need:
            raise ValueError(
                f"Too few epochs per class in the {name} split: {counts.tolist()} (need at least {need} each); "
                "use more recordings, another 'split', or lower 'split.min_per_class'."
            )
