"""EpochsDataModule: I/O in prepare_data, leakage-free splits in setup, train-only normalisation, fast batches."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from datasets.datamodule import EpochsDataModule, TensorBatches

from data_helpers import data_config, write_config


@pytest.fixture
def dm(synth_fif, tmp_path):
    module = EpochsDataModule(data_config(synth_fif, tmp_path, batch_size=8), tmp_path, seed=3)
    module.prepare_data()
    module.setup("fit")
    return module


def test_init_reads_nothing(synth_fif, tmp_path):
    EpochsDataModule(data_config(synth_fif, tmp_path), tmp_path)
    assert not (tmp_path / "cache").exists()


def test_loaders_give_whole_batches_and_shuffle_reproducibly(dm, synth_fif, tmp_path):
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (8, 64, 125) and x.dtype == torch.float32 and y.dtype == torch.int64
    total = sum(len(b[1]) for b in dm.train_dataloader())
    assert total == dm.split_summary["train"]["n_epochs"] == len(dm.arrays("train")[1])
    other = EpochsDataModule(data_config(synth_fif, tmp_path, batch_size=8), tmp_path, seed=3)
    other.prepare_data()
    other.setup("fit")
    assert torch.equal(next(iter(other.train_dataloader()))[1], y)
    assert dm.split_summary["test"]["groups"]["run"] == ["03"]


def test_release_windows_train_and_validate_but_the_test_scores_the_cues_alone(synth_fif, tmp_path):
    """`data.release` adds windows of letting go to every run; the test split keeps only the cues' own windows, so
    a run trained with them is scored on the same windows as one trained without."""
    def module(**release):
        m = EpochsDataModule(data_config(synth_fif, tmp_path, normalize="none", **release), tmp_path, seed=3)
        m.prepare_data()
        m.setup("fit")
        return m

    plain, released = module(), module(release={"after_s": 0.75})
    for a, b in zip(plain.arrays("test"), released.arrays("test")):
        np.testing.assert_array_equal(a, b)
    assert released.split_summary["test_release_left_out"] == 2 * 8  # run 03 of two subjects, 8 movement cues each
    assert "test_release_left_out" not in plain.split_summary
    n_train = {m: m.split_summary["train"]["n_epochs"] + m.split_summary["val"]["n_epochs"] for m in (plain, released)}
    assert n_train[released] - n_train[plain] == 4 * 8  # runs 01 and 02 of two subjects


def test_normalisation_is_fitted_on_train_only(dm):
    X_train, _ = dm.arrays("train")
    np.testing.assert_allclose(X_train.mean(axis=(0, 2)), 0, atol=1e-4)
    np.testing.assert_allclose(X_train.std(axis=(0, 2)), 1, atol=1e-3)
    X_test, _ = dm.arrays("test")
    assert np.abs(X_test.mean(axis=(0, 2))).max() > 1e-3  # test data did not shape the statistics
    norm = dm.normalization
    assert norm["kind"] == "standardize" and len(norm["mean"]) == 64 and json.dumps(norm)


def test_euclidean_alignment_whitens_each_subject(synth_fif, tmp_path):
    module = EpochsDataModule(data_config(synth_fif, tmp_path, euclidean_alignment=True, normalize="none"), tmp_path)
    module.prepare_data()
    module.setup("fit")
    assert sorted(module.normalization["alignment"]) == ["01", "02"]
    X, _ = module.arrays("train")
    cov = np.einsum("nct,ndt->cd", X, X) / (X.shape[0] * X.shape[2])
    assert np.abs(np.diag(cov) - 1).max() < 0.5


def test_euclidean_alignment_never_sees_test_epochs(synth_fif, tmp_path):
    """Holdout by run: each subject's matrix comes from its training epochs only. Leave-one-subject-out: the
    held-out subject is aligned on its first epochs (unlabelled calibration), which are then never scored."""
    from datasets.dsp import alignment_matrix
    from datasets.splits import make_split

    cfg = data_config(synth_fif, tmp_path, euclidean_alignment=True, normalize="none")
    module = EpochsDataModule(cfg, tmp_path)
    module.prepare_data()
    module.setup("fit")
    ep = module.epochs
    subjects = ep.groups["subject"]
    split = make_split(cfg.split, ep.y, ep.groups, ep.trial, seed=module.seed)
    for s in ("01", "02"):
        train_s = split.train[subjects[split.train] == s]
        got = np.asarray(module.normalization["alignment"][s])
        np.testing.assert_allclose(got, alignment_matrix(ep.X[np.sort(train_s)]), atol=1e-6)
        leaky = alignment_matrix(ep.X[subjects == s])  # what fitting on validation and test epochs too gives
        assert np.abs(got - leaky).max() > 1e-3 * np.abs(got).max()

    loso = EpochsDataModule(data_config(synth_fif, tmp_path, euclidean_alignment=True, normalize="none",
                                        alignment_calibration=5, split={"method": "loso", "fold": 1}), tmp_path)
    loso.prepare_data()
    loso.setup("fit")
    held_out = loso.split_summary["test"]["groups"]["subject"]
    assert loso.split_summary["alignment_calibration"] == {held_out[0]: 5}
    first5 = np.flatnonzero(subjects == held_out[0])[:5]
    np.testing.assert_allclose(loso.normalization["alignment"][held_out[0]], alignment_matrix(ep.X[first5]), atol=1e-6)
    n_subject = int((subjects == held_out[0]).sum())
    assert loso.split_summary["test"]["n_epochs"] == n_subject - 5  # the calibration epochs are not scored


def test_cropped_training(synth_fif, tmp_path):
    module = EpochsDataModule(data_config(synth_fif, tmp_path, crop={"seconds": 0.6, "crops_per_epoch": 3}),
                              tmp_path, seed=0)
    module.prepare_data()
    module.setup("fit")
    assert module.n_times == 75
    batches = list(module.train_dataloader())
    assert all(x.shape[-1] == 75 for x, _ in batches)
    # every training window three times per epoch, at different offsets
    X_train, y_train = module.arrays("train")
    y_seen = torch.cat([y for _, y in batches])
    assert len(y_seen) == 3 * len(y_train)
    assert torch.bincount(y_seen).tolist() == (3 * np.bincount(y_train)).tolist()
    # the same window drawn eight times is cut at several offsets
    crops, _ = TensorBatches(torch.from_numpy(X_train), torch.from_numpy(y_train), crop=75)[torch.zeros(8, dtype=torch.long)]
    assert len({tuple(c[0, :5].tolist()) for c in crops}) > 1
    X_val, _ = module.arrays("val")
    assert X_val.shape[-1] == 75 and module.window_tmin == pytest.approx(1.5 - 0.6)


def test_bmi_data_summary_json_and_synth(synth_fif, tmp_path):
    config = write_config(tmp_path / "cfg.yaml", synth_fif)
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "data", "summary", str(config), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["n_epochs"] == 72 and info["classes"] == {"rest": 24, "grasp": 24, "open": 24}
    assert info["groups"]["subject"] == {"01": 36, "02": 36} and info["n_chans"] == 64
    assert info["n_times"] == 125 and info["sfreq"] == 125.0 and len(info["ch_names"]) == 64
    synth = subprocess.run([sys.executable, "-m", "pipeline.cli", "data", "synth", str(tmp_path / "new"),
                            "--subjects", "1", "--runs", "1", "--trials", "2", "--format", "edf"],
                           capture_output=True, text=True, timeout=120)
    assert synth.returncode == 0, synth.stderr
    assert (tmp_path / "new" / "sub-01_ses-01_run-01.edf").is_file() and (tmp_path / "new" / "config.yaml").is_file()
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "data", "summary", str(config), "--set", "data.tmaxx=3"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Did you mean 'tmax'" in bad.stderr


def test_shuffle_order_depends_only_on_seed_and_epoch():
    """A resumed run (Lightning calls set_epoch) shuffles exactly as the uninterrupted one did."""
    from datasets.datamodule import BatchIndexSampler

    uninterrupted = BatchIndexSampler(20, 5, shuffle=True, seed=0)
    orders = [torch.cat(list(uninterrupted)) for _ in range(4)]
    resumed = BatchIndexSampler(20, 5, shuffle=True, seed=0)
    resumed.set_epoch(3)
    assert torch.equal(torch.cat(list(resumed)), orders[3])
    assert not torch.equal(orders[0], orders[1])


def test_a_mapped_event_that_never_occurs_is_warned_about_and_refused(synth_fif, tmp_path):
    """{rest: rest, grasp: grasp, squeeze: grasp, fly: open}: 'squeeze' and 'fly' are in no file, so class 'open'
    has no trials. The summary says so (and still prints); the data module refuses before any split."""
    from dataclasses import replace

    config = write_config(tmp_path / "cfg.yaml", synth_fif,
                          events={"rest": "rest", "grasp": "grasp", "squeeze": "grasp", "fly": "open"})
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "data", "summary", str(config), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert info["missing_events"] == ["squeeze", "fly"] and info["classes"]["open"] == 0
    assert info["event_counts"] == {"rest": 24, "grasp": 24, "open": 24}
    assert "warning: 'data.events' maps squeeze (-> grasp), fly (-> open), which never occur" in out.stderr
    cfg = data_config(synth_fif, tmp_path, events={"rest": "rest", "grasp": "grasp", "fly": "open"})
    module = EpochsDataModule(cfg, tmp_path)
    with pytest.raises(ValueError, match=r"maps fly \(-> open\), which never occurs in the 6 file\(s\); they hold: "
                                         r"grasp \(24\), open \(24\), rest \(24\)"):
        module.setup("fit")
    EpochsDataModule(replace(cfg, events={"rest": "rest", "grasp": "grasp", "open": "open"}), tmp_path).setup("fit")
