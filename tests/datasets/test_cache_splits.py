"""The epochs cache (reuse, invalidation, atomic writes) and splits that never leak."""

import os
import time

import numpy as np
import pytest

from datasets import cache as cache_mod
from datasets.config import SplitConfig
from datasets.epochs import load_epochs
from datasets.splits import make_split

from data_helpers import data_config


def test_cache_is_reused_and_invalidated(synth_fif, tmp_path):
    cfg = data_config(synth_fif[:2], tmp_path)
    first = load_epochs(cfg, tmp_path)
    again = load_epochs(cfg, tmp_path)
    assert again.cache_path == first.cache_path and isinstance(again.X, np.memmap)
    # the split, normalisation and batch size do not change the epochs: same entry
    assert load_epochs(data_config(synth_fif[:2], tmp_path, batch_size=8), tmp_path).cache_path == first.cache_path
    # the spec does
    assert load_epochs(data_config(synth_fif[:2], tmp_path, bandpass=[6.0, 30.0]), tmp_path).cache_path != first.cache_path
    # and so does a changed file
    copy = tmp_path / synth_fif[0].name
    copy.write_bytes(synth_fif[0].read_bytes())
    cfg2 = data_config([copy], tmp_path)
    before = load_epochs(cfg2, tmp_path).cache_path
    time.sleep(0.01)
    os.utime(copy, None)
    assert load_epochs(cfg2, tmp_path).cache_path != before


def test_a_crash_mid_write_leaves_nothing_trusted(synth_fif, tmp_path, monkeypatch):
    cfg = data_config(synth_fif[:1], tmp_path)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt("killed while writing the cache")

    monkeypatch.setattr(cache_mod, "publish", crash)
    with pytest.raises(KeyboardInterrupt):
        load_epochs(cfg, tmp_path)
    assert list((tmp_path / "cache").iterdir()) == []  # no entry, no staging folder
    monkeypatch.undo()
    assert load_epochs(cfg, tmp_path).X.shape[0] == 12


def _groups(n_subjects=3, n_runs=3, per_run=6):
    subj, run, y = [], [], []
    for s in range(n_subjects):
        for r in range(n_runs):
            subj += [f"{s + 1:02d}"] * per_run
            run += [f"{r + 1:02d}"] * per_run
            y += [i % 3 for i in range(per_run)]
    n = len(y)
    return np.array(y), {"subject": np.array(subj), "session": np.array(["1"] * n), "run": np.array(run)}, np.arange(n)


@pytest.mark.parametrize("cfg", [
    SplitConfig(method="holdout", by="run"),
    SplitConfig(method="holdout", by="run", test=["3"], val=["2"]),
    SplitConfig(method="holdout", by="subject", test=["01"]),
    SplitConfig(method="kfold", by="run", n_folds=3, fold=1),
    SplitConfig(method="kfold", by="subject", n_folds=3, fold=2),
    SplitConfig(method="loso", fold=0),
], ids=["holdout-last-run", "holdout-val-run", "holdout-subject", "kfold-run", "kfold-subject", "loso"])
def test_every_split_is_disjoint_by_group_and_trial(cfg):
    y, groups, trial = _groups()
    split = make_split(cfg, y, groups, trial)
    by = "subject" if cfg.method == "loso" else cfg.by
    test_groups = set(groups[by][split.test])
    assert not test_groups & set(groups[by][split.train]) and not test_groups & set(groups[by][split.val])
    if cfg.val:
        assert not set(groups[by][split.val]) & set(groups[by][split.train])
    assert not (set(trial[split.train]) & set(trial[split.val]) or set(trial[split.train]) & set(trial[split.test]))
    assert len(split.train) + len(split.val) + len(split.test) == len(y)


def test_split_errors_name_the_problem():
    y, groups, trial = _groups()
    with pytest.raises(ValueError, match=r"'split' names run '9'.*present: \['01', '02', '03'\]"):
        make_split(SplitConfig(test=["9"]), y, groups, trial)
    with pytest.raises(ValueError, match="needs at least 5 distinct runs"):
        make_split(SplitConfig(method="kfold", by="run", n_folds=5), y, groups, trial)
    one_class = np.where(groups["run"] == "03", 0, y)
    with pytest.raises(ValueError, match="test split has one class only"):
        make_split(SplitConfig(), one_class, groups, trial)
    with pytest.raises(ValueError, match="Too few epochs per class in the train split"):
        make_split(SplitConfig(min_per_class=100), y, groups, trial)
