"""Experiments across runs: `bmi compare` (offline), cross-validation, Optuna sweeps, the CSP+LDA reference."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.compare import compare_runs, find_runs
from pipeline.config import load_config
from pipeline.cv import run_cv
from pipeline.sweep import run_sweep


def fake_run(root: Path, name: str, lr: float, model: str, score: float) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({"model": {"name": model}, "optim": {"lr": lr, "weight_decay": 0.01},
                                                     "seed": 0}))
    (run / "summary.json").write_text(json.dumps({"run_id": name, "val": {"balanced_accuracy": score - 0.1},
                                                  "test": {"balanced_accuracy": score, "kappa": score / 2}}))
    return run


def test_compare_shows_only_differing_keys_sorted(tmp_path):
    fake_run(tmp_path, "a", 0.001, "eegnet", 0.6)
    fake_run(tmp_path, "b", 0.01, "eegnet", 0.8)
    fake_run(tmp_path, "c", 0.001, "shallow", 0.7)
    table = compare_runs(find_runs([], tmp_path), ["test.balanced_accuracy", "test.kappa"], tmp_path / "report")
    assert table["columns"] == ["run", "model.name", "optim.lr", "test.balanced_accuracy", "test.kappa"]
    assert [r["run"] for r in table["rows"]] == ["b", "c", "a"]
    assert Path(table["chart"]).stat().st_size > 1000
    report = Path(table["report"]).read_text()
    assert "| b | eegnet | 0.0100 | 0.8000 | 0.4000 |" in report and "weight_decay" not in report


def test_compare_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="No finished runs"):
        find_runs([], tmp_path)
    with pytest.raises(FileNotFoundError, match="not a finished run directory"):
        find_runs([tmp_path], tmp_path)
    run = fake_run(tmp_path, "a", 0.001, "eegnet", 0.6)
    with pytest.raises(ValueError, match=r"Unknown metric 'test.auc'; the runs have: .*test.balanced_accuracy"):
        compare_runs([run], ["test.auc"])


def test_cv_runs_one_tracked_run_per_fold_in_one_group(write_config):
    path = write_config(data={"split": {"method": "kfold", "by": "run", "n_folds": 3}},
                        tracking={"mode": "offline", "group": "cv-test"})
    cfg, config_dir = load_config(path)
    result = run_cv(cfg, config_dir, folds=2, progress=False)
    assert [f["fold"] for f in result["folds"]] == [0, 1]
    for fold in result["folds"]:
        summary = json.loads((Path(fold["run_dir"]) / "summary.json").read_text())
        assert summary["group"] == "cv-test" and (Path(fold["run_dir"]) / "wandb").is_dir()
    scores = [f["test"]["balanced_accuracy"] for f in result["folds"]]
    assert result["test"]["balanced_accuracy"]["mean"] == pytest.approx(sum(scores) / 2)
    assert result["test"]["balanced_accuracy"]["std"] == pytest.approx(abs(scores[0] - scores[1]) / 2)
    assert json.loads(Path(result["path"]).read_text())["group"] == "cv-test"


def test_cv_refuses_holdout(write_config):
    cfg, config_dir = load_config(write_config())
    with pytest.raises(ValueError, match="needs 'kfold' \\(grouped\\) or 'loso'"):
        run_cv(cfg, config_dir)


def test_sweep_trials_are_runs_in_a_shared_study(write_config, tmp_path):
    config = write_config()
    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                                     "model.params.n_filters": {"type": "categorical", "choices": [4, 8]}}))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    first = run_sweep(config, space, trials=1, storage=storage, study_name="s")
    second = run_sweep(config, space, trials=1, storage=storage, study_name="s")  # another "machine" joins
    assert second["n_trials_total"] == 2
    for result in (first, second):
        trial = result["trials_this_process"][0]
        cfg = yaml.safe_load((Path(trial["run_dir"]) / "config.yaml").read_text())
        assert cfg["optim"]["lr"] == pytest.approx(trial["params"]["optim.lr"])
        assert cfg["model"]["params"]["n_filters"] == trial["params"]["model.params.n_filters"]
    assert Path(second["path"]).is_file()


def test_a_failing_trial_does_not_stop_the_sweep(write_config, tmp_path):
    import optuna

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"model.name": {"type": "categorical", "choices": ["deep", "shallow"]}}))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="f", storage=storage, direction="maximize")
    study.enqueue_trial({"model.name": "deep"})  # DeepConvNet needs a longer window than these 1 s at 125 Hz
    study.enqueue_trial({"model.name": "shallow"})
    result = run_sweep(write_config(), space, trials=2, overrides=["model.params={}"], storage=storage, study_name="f")
    failed, done = result["trials_this_process"]
    assert "too short for DeepConvNet" in failed["error"] and "run_dir" not in failed and result["n_failed_this_process"] == 1
    assert result["best"]["params"] == {"model.name": "shallow"} and result["best"]["run_dir"] == done["run_dir"]
    states = [t.state for t in optuna.load_study(study_name="f", storage=storage).trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]

    only_bad = tmp_path / "bad.yaml"
    only_bad.write_text(yaml.safe_dump({"model.name": {"type": "categorical", "choices": ["deep"]}}))
    with pytest.raises(RuntimeError, match="No trial .* has completed: trial 0: ValueError"):
        run_sweep(write_config(), only_bad, trials=1, overrides=["model.params={}"], study_name="g")


def test_baseline_cli_reports_csp_lda_and_tangent_space(write_config):
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "baseline", str(write_config()), "--json"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.splitlines()[-1])
    assert result["csp_lda"]["model"] == "CSP(4)+LDA" and result["tangent_space"]["model"] == "TangentSpace+LR"
    for name in ("csp_lda", "tangent_space"):
        assert set(result[name]["test"]) == {"accuracy", "balanced_accuracy", "kappa", "f1_macro"}
    # the synthetic rest/grasp/open data are lateralised band power: both references must decode them
    # (chance is 1/3)
    assert result["tangent_space"]["test"]["balanced_accuracy"] >= 0.6
    assert result["csp_lda"]["test"]["balanced_accuracy"] >= 0.6
