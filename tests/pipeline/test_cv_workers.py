"""Cross-validation spread over worker processes: ``bmi cv --group G --fold K`` into one shared folder, and
``bmi cv --collect`` that refuses until every fold is there and then writes the single-process summary."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from wandb_records import complete_records

from pipeline.cv import PLAN, collect, run_cv
from pipeline.record.config import load_config

KFOLD = {"split": {"method": "kfold", "by": "run", "n_folds": 3}}


def cv_cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "cv", *args, "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def without_places(summary: dict) -> dict:
    """A CV summary without what names where it ran (its folder, group, run folders, summary path)."""
    out = {k: v for k, v in summary.items() if k not in ("folder", "group", "path")}
    out["folds"] = [{k: v for k, v in f.items() if k != "run_dir"} for f in summary["folds"]]
    return out


@pytest.mark.slow
def test_fold_workers_and_collect_give_the_single_process_summary(write_config, tmp_path):
    config = write_config(data=KFOLD)
    cfg, config_dir = load_config(config)
    single = run_cv(cfg, config_dir, progress=False)

    folder = tmp_path / "runs" / "spread"
    first = run_cv(load_config(config, ["tracking.group=spread", "tracking.mode=offline"])[0], config_dir, fold=1,
                   progress=False)
    assert Path(first["run_dir"]) == (folder / "fold1").resolve() and (folder / PLAN).is_file()
    records = complete_records(next((folder / "fold1" / "wandb").glob("offline-run-*/*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    logged = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert run.run_group == "spread" and "fold1" in run.tags  # the W&B dashboard groups the CV's folds
    assert logged["grouping"] == {"study": "spread", "fold": 1, "trial": None, "subject": None}
    with pytest.raises(RuntimeError, match=r"1 of 3 folds finished; missing: fold0 \(not started\), fold2 \(not "
                                           r"started\)\. Run them with bmi cv CONFIG --group spread --fold K"):
        collect(folder)
    assert not (folder / "cv_summary.json").exists()
    workers = [cv_cli(str(config), "--group", "spread", "--fold", str(k)) for k in (0, 2)]  # two at once
    for proc in workers:
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
        assert f"bmi cv --collect {folder.resolve()}" in out
    proc = cv_cli("--collect", str(folder))
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    collected = json.loads((folder / "cv_summary.json").read_text())
    assert collected["group"] == "spread" and [f["fold"] for f in collected["folds"]] == [0, 1, 2]
    assert [Path(f["run_dir"]).parent for f in collected["folds"]] == [folder.resolve()] * 3
    expected = without_places(json.loads(Path(single["path"]).read_text()))
    got = without_places(collected)
    assert got.keys() == expected.keys()
    for key in expected:  # field by field: the same folds, the same scores, the same means and spreads
        assert got[key] == expected[key], key


def test_a_fold_worker_is_checked_before_it_trains(write_config, tmp_path):
    config = write_config(data=KFOLD)
    cfg, config_dir = load_config(config)
    with pytest.raises(ValueError, match="'--fold' needs the CV's shared folder name: '--group NAME'"):
        run_cv(cfg, config_dir, fold=0)
    grouped, _ = load_config(config, ["tracking.group=g"])
    with pytest.raises(ValueError, match=r"'--fold' \(3\) must be between 0 and 2 \(the split has 3 folds\)"):
        run_cv(grouped, config_dir, fold=3)
    assert not (tmp_path / "runs" / "g").exists()

    folder = tmp_path / "runs" / "g"  # a plan another worker wrote with another model and learning rate
    folder.mkdir(parents=True)
    from pipeline.cv import make_plan

    other, _ = load_config(config, ["tracking.group=g", "optim.lr=0.01"])
    (folder / PLAN).write_text(json.dumps(make_plan(other, "g", 3)))
    with pytest.raises(ValueError, match=r"planned with another experiment \(differing keys: optim.lr\)"):
        run_cv(grouped, config_dir, fold=0)
    other, _ = load_config(config, ["tracking.group=g", "model.name=eegnet", "model.params={}"])
    (folder / PLAN).write_text(json.dumps(make_plan(other, "g", 3)))
    with pytest.raises(ValueError, match="planned with model 'eegnet'; this worker has 'shallow'"):
        run_cv(grouped, config_dir, fold=0)
    assert sorted(p.name for p in folder.iterdir()) == [PLAN]  # no fold folder was started

    with pytest.raises(FileNotFoundError, match="has no cv_plan.json"):
        collect(tmp_path / "runs")
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "cv", str(config), "--collect", str(folder)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and proc.stderr.strip().splitlines() == [
        "bmi cv: error: ValueError: '--collect FOLDER' takes no config, --fold, --folds, --group or --set: the "
        "folder's cv_plan.json holds its plan."]


def test_grouping_names_study_fold_trial_and_subject(tmp_path):
    from pipeline.tracking import grouping

    loso = {"data": {"split": {"method": "loso", "fold": 1}, "bids": {"root": "b", "subjects": ["03", "01", "02"]}},
            "tracking": {"group": "cohort"}}
    assert grouping(None, tmp_path / "fold1", loso) == {"study": "cohort", "fold": 1, "trial": None, "subject": "02"}
    single = {"data": {"split": {"method": "holdout", "fold": 3}, "bids": {"root": "b", "subjects": ["07"]}}}
    assert grouping("s", tmp_path / "trial12", single) == {"study": "s", "fold": None, "trial": 12, "subject": "07"}
