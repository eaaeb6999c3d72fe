"""Experiments across runs: `bmi compare` (offline), cross-validation, Optuna sweeps, the CSP+LDA reference."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.compare import compare_runs, find_runs
from pipeline.record.config import load_config
from pipeline.cv import run_cv
from pipeline.sweep import run_sweep


def fake_run(root: Path, name: str, lr: float, model: str, score: float, config: dict | None = None,
             curve: list[float] | None = None) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(config or {"model": {"name": model},
                                                               "optim": {"lr": lr, "weight_decay": 0.01}, "seed": 0}))
    (run / "summary.json").write_text(json.dumps({"run_id": name, "val": {"balanced_accuracy": score - 0.1},
                                                  "test": {"balanced_accuracy": score, "kappa": score / 2}}))
    if curve:
        (run / "metrics.csv").write_text("epoch,val/balanced_accuracy\n" + "".join(f"{i},{v}\n" for i, v in enumerate(curve)))
    return run


def test_compare_shows_metrics_then_only_differing_keys_sorted(tmp_path):
    fake_run(tmp_path, "a", 0.001, "eegnet", 0.6, curve=[0.3, 0.5])
    fake_run(tmp_path, "b", 0.01, "eegnet", 0.8, curve=[0.4, 0.6, 0.7])
    fake_run(tmp_path, "c", 0.001, "shallow", 0.7)
    table = compare_runs(find_runs([], tmp_path), ["test.balanced_accuracy", "test.kappa"], tmp_path / "report")
    assert table["columns"] == ["run", "test.balanced_accuracy", "test.kappa", "model.name", "optim.lr"]
    assert [r["run"] for r in table["rows"]] == ["b", "c", "a"]
    assert Path(table["chart"]).stat().st_size > 1000
    assert table["curves"] == {"a": 2, "b": 3}  # the learning curves of the runs that have them, overlaid
    report = Path(table["report"]).read_text()
    assert "| b | 0.800 | 0.400 | eegnet | 0.01 |" in report and "weight_decay" not in report


def _render(table, width=100, unfinished=None) -> str:
    import io

    from rich.console import Console

    from pipeline.compare import render

    console = Console(width=width, file=io.StringIO(), record=True, color_system=None)
    for item in render(table, width=width, unfinished=unfinished):
        console.print(item)
    return console.export_text()


def test_fourteen_runs_fit_a_100_column_terminal_with_readable_headers(tmp_path):
    """Generated run ids, ten differing keys (two of them 'optim.*', two ending in 'dropout'): every line fits,
    nothing is cut to an ellipsis, every run and shown header is whole, and the shortened keys are unambiguous."""
    from pipeline.compare import short_keys

    for i in range(14):
        config = {"model": {"name": ["eegnet", "shallow"][i % 2], "params": {"dropout": 0.1 * (i % 3)}},
                  "optim": {"lr": 10.0 ** -(i % 4), "weight_decay": 0.01 * (i % 2)}, "seed": i,
                  "data": {"dropout": i % 2, "bandpass": [8.0, 30.0 + i], "tmin": 0.5 * (i % 3), "tmax": 2.0 + i % 2,
                           "batch_size": 8 * (1 + i % 3)}}
        fake_run(tmp_path, f"20261125-10{i:02d}00-{config['model']['name']}-{i:04x}", 0, "", 0.5 + i / 100, config)
    table = compare_runs(find_runs([], tmp_path))
    text = _render(table)
    lines = text.splitlines()
    assert max(map(len, lines)) <= 100 and "…" not in text
    rule = next(i for i, line in enumerate(lines) if line.startswith("────"))
    body = lines[rule + 1: next(i for i, line in enumerate(lines) if line.startswith("keys:"))]
    assert len(body) == 14  # one line per run: no cell wrapped onto a second line
    for i in range(14):
        assert f"-{i:04x}" in text and "2026" not in text.split("keys:")[0]  # short names: the date is dropped
    header = "\n".join(lines[1:3])
    assert "bal_acc" in header and "lr" in header and "weight_decay" in header
    short = short_keys(table["config_keys"])
    assert short["model.params.dropout"] == "params.dropout" and short["data.dropout"] == "data.dropout"
    assert short["optim.lr"] == "lr" and len(set(short.values())) == len(short)
    assert "more differing keys (in the report)" in text  # what does not fit is named, not dropped silently
    assert text.index("test") < text.index("lr")  # metric columns first


def test_cv_folds_are_listed_under_their_folder_and_unfinished_runs_are_flagged(tmp_path):
    from pipeline.compare import unfinished_runs

    fake_run(tmp_path, "single", 0.001, "eegnet", 0.6)
    for fold, score in enumerate((0.7, 0.5)):
        fake_run(tmp_path / "cv-x", f"fold{fold}", 0.001, "eegnet", score)
    (tmp_path / "cv-x" / "cv_summary.json").write_text(json.dumps(
        {"description": "grouped 2-fold by run", "test": {"balanced_accuracy": {"mean": 0.6, "std": 0.1}}}))
    failed = tmp_path / "broken"
    failed.mkdir()
    (failed / "run.json").write_text(json.dumps({"status": "failed", "error": "RuntimeError: Loss is nan"}))
    table = compare_runs(find_runs([], tmp_path), root=tmp_path)
    assert table["folders"] == {"": ["single"], "cv-x": ["cv-x/fold0", "cv-x/fold1"]}
    text = _render(table, unfinished=unfinished_runs(tmp_path))
    lines = text.splitlines()
    folder = next(i for i, line in enumerate(lines) if line.startswith("cv-x/"))
    assert "0.600" in lines[folder]  # the folder's row: its CV mean
    assert lines[folder + 1].startswith("  fold0") and lines[folder + 2].startswith("  fold1")
    assert "not compared, 1 unfinished: broken (failed: RuntimeError: Loss is nan)" in " ".join(lines)
    with pytest.raises(FileNotFoundError, match=r"broken is not a finished run directory .*\(failed: RuntimeError"):
        find_runs([failed], tmp_path)


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
    space.write_text(yaml.safe_dump({"model.name": {"type": "categorical", "choices": ["deep", "cnn_lstm"]}}))
    storage = f"sqlite:///{tmp_path / 'study.db'}"
    study = optuna.create_study(study_name="f", storage=storage, direction="maximize")
    study.enqueue_trial({"model.name": "deep"})  # DeepConvNet needs at least ~0.38 s: these windows are 0.35 s
    study.enqueue_trial({"model.name": "cnn_lstm"})
    result = run_sweep(write_config(), space, trials=2, overrides=["model.params={}", "data.tmax=0.85"], storage=storage,
                       study_name="f")
    failed, done = result["trials_this_process"]
    assert "too short for DeepConvNet" in failed["error"] and "run_dir" not in failed and result["n_failed_this_process"] == 1
    assert result["best"]["params"] == {"model.name": "cnn_lstm"} and result["best"]["run_dir"] == done["run_dir"]
    states = [t.state for t in optuna.load_study(study_name="f", storage=storage).trials]
    assert states == [optuna.trial.TrialState.FAIL, optuna.trial.TrialState.COMPLETE]

    only_bad = tmp_path / "bad.yaml"
    only_bad.write_text(yaml.safe_dump({"model.name": {"type": "categorical", "choices": ["deep"]}}))
    with pytest.raises(RuntimeError, match="No trial .* has completed: trial 0: ValueError"):
        run_sweep(write_config(), only_bad, trials=1, overrides=["model.params={}", "data.tmax=0.85"], study_name="g")


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


def test_cv_names_its_method_as_it_splits():
    """LOSO is by subject whatever 'split.by' says (it printed "loso by run")."""
    from pipeline.cv import describe_method

    assert describe_method("loso", "run", 4) == "leave-one-subject-out"
    assert describe_method("kfold", "session", 3) == "grouped 3-fold by session"
