"""Defaults for small data: auto recipe, warnings, split description, BatchNorm re-estimation, evaluation
without padding, reject reporting, ensembles (seeds and folds) and fine-tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
import yaml
from torch import nn

from datasets.datamodule import BatchIndexSampler, auto_batch_size
from pipeline import recipe
from pipeline.record.config import load_config


def test_auto_batch_size_and_epochs_give_enough_steps():
    assert auto_batch_size(36) == 8 and auto_batch_size(200) == 25 and auto_batch_size(10_000) == 64
    # 36 training trials, batch 8 -> 5 steps per epoch -> 300 epochs (1500 steps), never 1 step per epoch
    assert recipe.choose_epochs(5, 1500) == 300 and recipe.choose_epochs(200, 1500) == 30
    assert recipe.choose_model(48)[0] == "logvar" and recipe.choose_model(5000)[0] == "eegnet"


def test_auto_recipe_says_what_it_chose_and_warns_about_few_steps(write_config, capsys):
    from pipeline.train import run_training

    path = write_config(model={"name": "auto", "params": {}}, trainer={"max_epochs": 2, "refit": "auto"},
                        data={"batch_size": "auto", "split": {"method": "holdout", "by": "run"}})
    cfg, config_dir = load_config(path)
    summary = run_training(cfg, config_dir, progress=False)
    out, err = capsys.readouterr()
    assert "model.name auto -> logvar" in out and "data.batch_size auto -> 8" in out
    assert "test runs 03:" in out and "train runs 01, 02:" in out and "validation:" in out
    assert "test balanced accuracy: logvar" in out and "CSP(4)+LDA" in out and "TangentSpace+LR" in out
    assert "no 'data.split.test' given: the last run is held out" in err
    assert "optimiser steps only (fewer than trainer.min_steps = 200)" in err
    assert summary["model"] == "logvar" and summary["optimizer_steps"] < 200
    assert any("fewer than trainer.min_steps" in w for w in summary["warnings"])
    saved = yaml.safe_load((Path(summary["run_dir"]) / "config.yaml").read_text())
    assert saved["model"]["name"] == "logvar" and saved["data"]["batch_size"] == 8  # the resolved recipe is saved
    assert set(summary["baselines"]) == {"csp_lda", "tangent_space"} and "beat_all" in summary["versus_baselines"]
    # small data: the kept decoder is trained again on the training and validation trials
    assert "trainer.refit auto -> true" in out and "refit: training again" in out
    assert summary["refit"]["n_train"] == summary["n_train"] + summary["n_val"]


def test_refit_keeps_a_decoder_trained_on_training_and_validation_trials(write_config):
    from datasets.epochs import load_epochs
    from datasets.splits import make_split
    from pipeline.train import run_training

    path = write_config(trainer={"max_epochs": 3, "refit": True})
    cfg, config_dir = load_config(path)
    summary = run_training(cfg, config_dir, progress=False)
    run_dir, refit = Path(summary["run_dir"]), summary["refit"]
    n_union = summary["n_train"] + summary["n_val"]
    assert refit["n_train"] == n_union and refit["epochs"] == 3
    assert refit["optimizer_steps"] == 3 * -(-n_union // 16) and summary["optimizer_steps"] == 3 * -(-summary["n_train"] // 16)
    # the kept checkpoint is the refit's last epoch, not the first fit's model
    best = torch.load(run_dir / "checkpoints/best.ckpt", map_location="cpu", weights_only=False)["state_dict"]
    first = torch.load(run_dir / refit["first_fit_checkpoint"], map_location="cpu", weights_only=False)["state_dict"]
    assert best.keys() == first.keys() and any(not torch.equal(best[k], first[k]) for k in best)
    # the data statistics exported with it come from the training and validation windows (computed here from the
    # split itself), and differ from the training windows' alone
    ep = load_epochs(cfg.data, config_dir)
    split = make_split(cfg.data.split, ep.y, ep.groups, ep.trial, seed=cfg.seed)
    rms = lambda idx: np.sqrt((np.asarray(ep.X[np.sort(idx)], dtype=np.float64) ** 2).mean(axis=(0, 2)))  # noqa: E731
    saved = np.array(json.loads((run_dir / "data_info.json").read_text())["normalization"]["rms"])
    np.testing.assert_allclose(saved, rms(np.concatenate([split.train, split.val])), rtol=1e-6)
    assert not np.allclose(saved, rms(split.train), rtol=1e-3)
    # the test score is the kept model with those statistics: bmi evaluate on the test run reproduces it
    from pipeline.evaluate import evaluate_run

    test_run = path.parent / "refit_test_run.yaml"
    test_run.write_text(yaml.safe_dump({"data": {"files": [p.name for p in path.parent.glob("*run-03_raw.fif")],
                                                 "events": cfg.data.events}}))
    assert evaluate_run(run_dir, test_run)["kappa"] == pytest.approx(summary["test"]["kappa"], abs=1e-5)
    assert summary["baselines"]["csp_lda"]["test_fitted_on"] == "training + validation trials"
    # an ensemble of refitted runs has no held-out validation trials left to score
    from pipeline.ensemble import build_ensemble

    other = run_training(load_config(path, ["seed=1", "data_seed=0"])[0], config_dir, progress=False)
    ensemble = build_ensemble([run_dir, other["run_dir"]], runs_dir=run_dir.parent)
    assert ensemble["val"] == {} and "refitted" in ensemble["note"] and ensemble["test"]


def test_a_first_epoch_model_is_announced(write_config, capsys):
    from pipeline.train import run_training

    # a learning rate too small to change anything: validation never improves on epoch 0
    path = write_config(trainer={"max_epochs": 3, "checkpoint": "best", "min_steps": 0}, optim={"lr": 1e-12})
    cfg, config_dir = load_config(path)
    summary = run_training(cfg, config_dir, progress=False)
    assert summary["best_epoch"] == 0
    assert any("first epoch's model" in w for w in summary["warnings"])
    assert "first epoch's model" in capsys.readouterr().err


def test_batchnorm_statistics_are_re_estimated_exactly():
    from pipeline.task import recalibrate_batchnorm

    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv1d(3, 4, 5), nn.BatchNorm1d(4), nn.Dropout(0.5))
    X = torch.randn(50, 3, 40) * 3 + 1
    net.train()
    for _ in range(3):  # stale statistics from training batches
        net(torch.randn(8, 3, 40))
    recalibrate_batchnorm(net, X, batch_size=64)  # one batch: the exact statistics of X
    with torch.no_grad():
        h = net[0](X).transpose(0, 1).reshape(4, -1)
    assert torch.allclose(net[1].running_mean, h.mean(1), atol=1e-5)
    assert torch.allclose(net[1].running_var, h.var(1), rtol=1e-3)
    assert net[1].momentum == 0.1 and net.training  # restored


@pytest.mark.parametrize("n", [7, 10])
def test_evaluation_windows_are_counted_once_across_ranks(monkeypatch, n):
    seen = []
    for rank in range(3):
        monkeypatch.setattr(BatchIndexSampler, "_shard", lambda self, r=rank: (r, 3))
        sampler = BatchIndexSampler(n, batch_size=2, shuffle=False, seed=0)
        batches = list(sampler)
        assert len(batches) == len(sampler)
        seen += torch.cat(batches).tolist() if batches else []
    assert sorted(seen) == list(range(n))  # no padding duplicates
    monkeypatch.setattr(BatchIndexSampler, "_shard", lambda self: (0, 3))
    train = BatchIndexSampler(n, batch_size=2, shuffle=True, seed=0)
    assert sum(len(b) for b in train) == -(-n // 3)  # training pads so the ranks step together


def test_reject_keeps_hard_test_epochs_and_reports_both(write_config):
    from datasets.datamodule import EpochsDataModule
    from pipeline.train import run_training

    cfg, config_dir = load_config(write_config())
    dm = EpochsDataModule(cfg.data, config_dir)
    dm.setup()
    ptp = np.ptp(np.asarray(dm.epochs.X), axis=2).max(axis=1)
    threshold = float(np.quantile(ptp, 0.8))  # about a fifth of the epochs are "artefacts"
    cfg, config_dir = load_config(write_config(data={"reject": threshold}))
    summary = run_training(cfg, config_dir, progress=False)
    n_test_all = int((dm.epochs.groups["run"] == "03").sum())
    assert summary["n_test"] == n_test_all  # nothing dropped from the test split
    rejected = json.loads((Path(summary["run_dir"]) / "data_info.json").read_text())["split_summary"]["rejected"]
    assert rejected["test"] == summary["n_test_rejected"] > 0 and rejected["train"] > 0
    assert set(summary["test_without_rejected"]) == {"accuracy", "balanced_accuracy", "kappa", "f1_macro"}
    assert summary["n_train"] + summary["n_val"] + rejected["train"] + rejected["val"] + n_test_all == len(ptp)


def _mean_member_probabilities(members, X):
    from pipeline.ensemble import predict_proba
    from pipeline.record.run import load_network

    return np.mean([predict_proba(load_network(Path(m))[0], X) for m in members], axis=0)


def test_seed_ensemble_is_one_onnx_decoder_averaging_probabilities(write_config, tmp_path):
    from exports.onnx import export_run
    from pipeline.commands import parse_seeds, train_seeds
    from pipeline.evaluate import evaluate_run

    cfg, config_dir = load_config(write_config(trainer={"max_epochs": 2}))
    summary = train_seeds(cfg, config_dir, parse_seeds("0,1,2"), progress=False)
    members = summary["members"]
    assert summary["model"] == "ensemble" and len(members) == 3
    assert set(summary["test"]) == {"accuracy", "balanced_accuracy", "kappa", "f1_macro"}
    infos = [json.loads((Path(m) / "data_info.json").read_text()) for m in members]
    assert all(i["split_summary"] == infos[0]["split_summary"] for i in infos)  # one split for every seed
    exported = export_run(summary["run_dir"], out=tmp_path / "ensemble.onnx")
    assert exported.parity["passed"] and exported.metadata["model"]["name"] == "ensemble"
    # parity ran on the members' real validation windows (their shared split), not on synthetic ones
    n_val = infos[0]["split_summary"]["val"]["n_epochs"]
    assert exported.parity["windows"] == f"{n_val} validation windows of the run" and exported.parity["n_windows"] == n_val
    X = np.random.default_rng(0).standard_normal((6, len(infos[0]["ch_names"]), infos[0]["n_times"])).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "ensemble.onnx"), providers=["CPUExecutionProvider"])
    probs = session.run(["probabilities"], {"signals": X})[0]
    np.testing.assert_allclose(probs, _mean_member_probabilities(members, X), atol=1e-5)
    day2 = write_config(name="day2.yaml", folder="day2")
    result = evaluate_run(summary["run_dir"], day2)
    assert result["n_epochs"] > 0 and result["run_id"] == summary["run_id"]
    with pytest.raises(ValueError, match=r"'--seeds' \('3'\) must name at least 2 distinct seeds"):
        parse_seeds("3")


def test_fold_ensemble_adapts_each_members_normalisation(write_config):
    from datasets.datamodule import EpochsDataModule
    from pipeline.cv import run_cv
    from pipeline.record.run import load_network

    cfg, config_dir = load_config(write_config(trainer={"max_epochs": 1},
                                               data={"split": {"method": "kfold", "by": "run", "n_folds": 3}}))
    result = run_cv(cfg, config_dir, progress=False, ensemble=True)
    net, summary, info, _ = load_network(Path(result["ensemble"]))
    assert "no shared held-out set" in summary["note"]
    folds = [Path(f["run_dir"]) for f in result["folds"]]
    adapters = [a for a in net.adapters if not isinstance(a, nn.Identity)]
    assert len(adapters) == 2  # folds 1 and 2 standardise with their own training statistics
    # the ensemble on windows normalised as fold 0 == the mean of each fold on its own normalisation
    raw = EpochsDataModule(cfg.data, config_dir, normalization={"kind": "none", "alignment": None})
    raw.setup()
    X = np.asarray(raw.epochs.X[:5], dtype=np.float32)

    def normalise(norm):
        return ((X - np.asarray(norm["mean"])[:, None]) / np.asarray(norm["std"])[:, None]).astype(np.float32)

    expected = []
    for fold in folds:
        member, _, member_info, _ = load_network(fold)
        with torch.no_grad():
            expected.append(torch.softmax(member(torch.from_numpy(normalise(member_info["normalization"]))), 1).numpy())
    with torch.no_grad():
        got = torch.softmax(net(torch.from_numpy(normalise(info["normalization"]))), 1).numpy()
    np.testing.assert_allclose(got, np.mean(expected, axis=0), atol=1e-5)


def test_finetune_starts_from_the_pretrained_weights_and_freezes_all_but_the_classifier(write_config, tmp_path):
    from datasets.synthetic import write_synthetic
    from pipeline.record.run import load_network
    from pipeline.finetune import finetune_config
    from pipeline.train import run_training

    cfg, config_dir = load_config(write_config(trainer={"max_epochs": 2}))
    pre = run_training(cfg, config_dir, progress=False)
    files = write_synthetic(tmp_path / "patient", n_subjects=1, n_runs=3, trials_per_class=4, seed=7)
    patient = tmp_path / "patient" / "patient.yaml"
    patient.write_text(yaml.safe_dump({  # the run's own input keys, written as a patient config would (short forms)
        "data": {"files": [f.name for f in files], "split": {"method": "holdout", "by": "run", "test": ["03"]},
                 "cache_dir": "cache", "picks": {"names": cfg.data.picks.names}, "bandpass": [8, 30], "tmax": 1.5},
        "trainer": {"max_epochs": 3, "min_steps": 0},
        "finetune": {"frozen_epochs": 3},  # the whole run: only the classifier may change
    }))
    ft_cfg, ft_dir = finetune_config(pre["run_dir"], patient)
    assert ft_cfg.model.name == "shallow" and ft_cfg.finetune.run == str(Path(pre["run_dir"]).resolve())
    ran_lr = yaml.safe_load((Path(pre["run_dir"]) / "config.yaml").read_text())["optim"]["lr"]
    assert ft_cfg.optim.lr == pytest.approx(0.1 * ran_lr)  # small steps from the pretrained weights by default
    assert finetune_config(pre["run_dir"], patient, ["optim.lr=0.5"])[0].optim.lr == 0.5  # a given rate wins
    assert finetune_config(pre["run_dir"], patient, ["finetune.lr_scale=0.5"])[0].optim.lr == pytest.approx(0.5 * ran_lr)
    summary = run_training(ft_cfg, ft_dir, progress=False)
    assert summary["finetuned_from"] == ft_cfg.finetune.run and summary["n_test"] == 12
    b = load_network(Path(pre["run_dir"]))[0].state_dict()
    a = load_network(Path(summary["run_dir"]))[0].state_dict()
    frozen = [k for k in b if not k.startswith("classifier.") and "running" not in k and "num_batches" not in k]
    assert frozen and all(torch.equal(b[k], a[k]) for k in frozen)
    assert not torch.equal(b["classifier.weight"], a["classifier.weight"])
    # the same classes listed in another order keep the pretrained classifier, its rows reordered
    from types import SimpleNamespace

    from pipeline.pretrained import pretrained_network

    net, info = load_network(Path(pre["run_dir"]))[0].eval(), load_network(Path(pre["run_dir"]))[2]
    reordered = list(reversed(info["classes"]))
    dm = SimpleNamespace(ch_names=info["ch_names"], n_times=int(info["n_times"]), sfreq=float(info["sfreq"]),
                         classes=reordered)
    moved, note = pretrained_network(SimpleNamespace(run=pre["run_dir"]), dm)
    x = torch.randn(4, len(info["ch_names"]), int(info["n_times"]))
    with torch.no_grad():
        before, after = net(x), moved.eval()(x)
    np.testing.assert_allclose(after.numpy(), before.numpy()[:, [info["classes"].index(c) for c in reordered]], atol=1e-5)
    assert "reordered" in note
    bad = tmp_path / "patient" / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"files": [f.name for f in files], "tmax": 3.0}}))
    with pytest.raises(ValueError, match=r"'data.tmax' \(3.0\) differs from the pretrained run's \(1.5\)"):
        finetune_config(pre["run_dir"], bad)
