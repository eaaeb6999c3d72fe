"""The LightningModule: loss options, per-stage metrics equal to scikit-learn's, optimisers, NaN guard."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
import pytorch_lightning as pl
import torch
from sklearn.metrics import accuracy_score, balanced_accuracy_score, cohen_kappa_score, confusion_matrix, f1_score
from torch.utils.data import DataLoader, TensorDataset

import models
from pipeline.metrics import confusion, from_confusion, scores, wilson_interval
from pipeline.task import DecoderTask


def _task(**kw) -> DecoderTask:
    torch.manual_seed(0)
    net = models.build("shallow", n_chans=4, n_times=125, n_outputs=3, sfreq=125.0, n_filters=4)
    return DecoderTask(net, 3, **kw)


def test_net_is_composed_and_hparams_saved():
    task = _task(lr=0.01, label_smoothing=0.1)
    assert isinstance(task.net, torch.nn.Module)
    assert all(k.startswith(("net.", "confusion.", "loss_fn.")) for k in task.state_dict())
    assert any(k.startswith("net.") for k in task.state_dict())
    assert task.hparams.lr == 0.01 and "net" not in task.hparams


def test_metrics_match_sklearn_on_a_tiny_batch():
    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2, 1])
    p = np.array([0, 0, 1, 2, 1, 1, 2, 0, 2, 1])
    got = scores(y, p)
    assert got["accuracy"] == pytest.approx(accuracy_score(y, p))
    assert got["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, p))
    assert got["kappa"] == pytest.approx(cohen_kappa_score(y, p), abs=1e-6)
    assert got["f1_macro"] == pytest.approx(f1_score(y, p, average="macro"))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(0, 3)), min_size=1, max_size=40))
def test_metrics_equal_sklearn_on_any_labels(pairs):
    """Absent classes, a class only predicted, one class only: the one definition is scikit-learn's."""
    import warnings

    y, p = np.array(pairs).T
    got = from_confusion(confusion(y, p, 4), digits=None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn warns on the undefined cases it then defines
        want = {"accuracy": accuracy_score(y, p), "balanced_accuracy": balanced_accuracy_score(y, p),
                "kappa": cohen_kappa_score(y, p), "f1_macro": f1_score(y, p, average="macro")}
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-9, nan_ok=True), key


@pytest.mark.parametrize("k,n", [(0, 1), (1, 1), (0, 9), (5, 9), (7, 9), (9, 9), (13, 16), (40, 100)])
def test_wilson_interval_equals_scipys(k, n):
    from scipy.stats import binomtest

    reference = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(k, n) == pytest.approx((reference.low, reference.high), abs=1e-7)
    assert wilson_interval(0, 0) is None


def test_test_stage_logs_metrics_and_confusion():
    task = _task()
    gen = torch.Generator().manual_seed(1)
    x, y = torch.randn(20, 4, 125, generator=gen), torch.arange(20) % 3
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False)
    out = trainer.test(task, dataloaders=DataLoader(TensorDataset(x, y), batch_size=8), verbose=False)[0]
    with torch.no_grad():
        preds = task.net.eval()(x).argmax(1)
    assert out["test/balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, preds), abs=1e-6)
    assert out["test/accuracy"] == pytest.approx(accuracy_score(y, preds), abs=1e-6)
    assert set(out) >= {"test/loss", "test/kappa", "test/f1_macro"}
    np.testing.assert_array_equal(task.test_confusion.numpy(), confusion_matrix(y, preds, labels=[0, 1, 2]))


def test_class_weights_and_label_smoothing_change_the_loss():
    x, y = torch.randn(6, 4, 125), torch.tensor([0, 0, 0, 0, 1, 2])
    losses = []
    for kw in ({}, {"class_weights": [1.0, 5.0, 5.0]}, {"label_smoothing": 0.2}):
        task = _task(**kw).eval()
        with torch.no_grad():
            losses.append(float(task.loss_fn(task(x), y)))
    assert len({round(v, 6) for v in losses}) == 3
    assert _task(class_weights=[1.0, 5.0, 5.0]).loss_fn.weight.tolist() == [1.0, 5.0, 5.0]


@pytest.mark.parametrize("scheduler", ["cosine", "plateau", "step", "none"])
def test_optimisers(scheduler):
    conf = _task(scheduler=scheduler, lr=0.002, weight_decay=0.05).configure_optimizers()
    opt = conf if scheduler == "none" else conf["optimizer"]
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["lr"] == 0.002 and opt.param_groups[0]["weight_decay"] == 0.05
    if scheduler == "plateau":
        assert conf["lr_scheduler"]["monitor"] == "val/balanced_accuracy"


def test_nan_loss_names_epoch_and_batch():
    task = _task()
    x, y = torch.randn(24, 4, 125), torch.arange(24) % 3
    x[17] = float("nan")  # in the third batch of 8
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    with pytest.raises(RuntimeError, match=r"epoch 0, train batch 2"):
        trainer.fit(task, train_dataloaders=DataLoader(TensorDataset(x, y), batch_size=8))
