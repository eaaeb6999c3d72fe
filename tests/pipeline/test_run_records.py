"""Experiment records are never lost: one run per run directory, a new folder for every CV and sweep, failed
runs marked failed (or leaving nothing), and config errors found before any recording is read."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline.record.config import load_config
from pipeline.record.run import RunExistsError, read_status
from pipeline.train import run_training
from wandb_records import complete_records

ROOT = Path(__file__).resolve().parents[2]


def _digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` with the hash of its bytes (W&B's own folder aside)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and "wandb" not in p.parts}


def test_an_existing_run_name_is_refused_and_the_run_is_untouched(write_config, tmp_path):
    cfg, config_dir = load_config(write_config(), ["name=mine"])
    first = Path(run_training(cfg, config_dir, progress=False)["run_dir"])
    before = _digests(first)
    assert read_status(first)["status"] == "finished"
    cfg2, config_dir = load_config(write_config(), ["name=mine", f"data.cache_dir={tmp_path / 'fresh_cache'}"])
    with pytest.raises(RunExistsError, match=r"already holds a run \(status: finished\).*bmi train --resume"):
        run_training(cfg2, config_dir, progress=False)
    assert _digests(first) == before
    assert not (tmp_path / "fresh_cache").exists()  # refused before any recording was read
    # --resume is the way to continue a run, and a finished run has nothing to continue
    with pytest.raises(RuntimeError, match="has finished .* nothing to resume"):
        run_training(None, resume=first, progress=False)


def test_the_cli_refuses_a_taken_name_with_one_line(write_config, tmp_path):
    path = write_config()
    (tmp_path / "runs" / "taken").mkdir(parents=True)
    (tmp_path / "runs" / "taken" / "notes.txt").write_text("someone's run")
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", str(path), "--name", "taken", "--no-progress"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1
    assert out.stderr.strip().splitlines()[-1].startswith("bmi train: error: RunExistsError: Run directory")
    assert sorted(p.name for p in (tmp_path / "runs" / "taken").iterdir()) == ["notes.txt"]


def test_two_cvs_of_one_group_keep_both(write_config):
    from pipeline.cv import run_cv

    path = write_config(data={"split": {"method": "kfold", "by": "run", "n_folds": 3}}, tracking={"group": "same"})
    cfg, config_dir = load_config(path)
    first = run_cv(cfg, config_dir, folds=1, progress=False)
    first_folder = Path(first["folder"])
    before = _digests(first_folder)
    cfg2, _ = load_config(path, ["model.params.n_filters=4"])
    second = run_cv(cfg2, config_dir, folds=1, progress=False)
    assert first_folder.name == "same" and Path(second["folder"]).name == "same-2"
    assert first["group"] == second["group"] == "same"  # one W&B group, two folders
    assert _digests(first_folder) == before  # fold0 and cv_summary.json of the first CV untouched
    assert json.loads((first_folder / "cv_summary.json").read_text())["folds"][0]["run_dir"] == first["folds"][0]["run_dir"]
    assert yaml.safe_load((Path(second["folds"][0]["run_dir"]) / "config.yaml").read_text())["model"]["params"] == {"n_filters": 4}


def test_a_second_sweep_of_one_name_keeps_the_first(write_config, tmp_path, recwarn):
    from pipeline.sweep import run_sweep

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"data.bandpass": {"type": "categorical", "choices": [[8.0, 30.0], [6.0, 30.0]]}}))
    first = run_sweep(write_config(), space, trials=1, study_name="s")
    before = _digests(Path(first["folder"]))
    second = run_sweep(write_config(), space, trials=1, study_name="s")
    assert Path(first["folder"]).name == "s" and Path(second["folder"]).name == "s-2"
    assert _digests(Path(first["folder"])) == before
    # a list-valued choice goes through Optuna's storage and comes back as the list the space wrote
    run = first["trials_this_process"][0]
    assert run["params"]["data.bandpass"] in ([8.0, 30.0], [6.0, 30.0])
    assert yaml.safe_load((Path(run["run_dir"]) / "config.yaml").read_text())["data"]["bandpass"] == run["params"]["data.bandpass"]
    assert Path(run["run_dir"]).parent == Path(first["folder"]) and Path(run["run_dir"]).name == "trial0"
    assert not [w for w in recwarn if "categorical distribution" in str(w.message)]  # Optuna stores only text


def test_a_run_that_fails_while_training_is_marked_failed_here_and_in_wandb(write_config, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    cfg, config_dir = load_config(write_config(), ["optim.lr=1e30", "trainer.gradient_clip_val=null", "name=diverged",
                                                   "optim.weight_decay=0", "trainer.max_epochs=3", "tracking.mode=auto"])
    with pytest.raises(RuntimeError, match="training diverged"):
        run_training(cfg, config_dir, progress=False)
    run_dir = tmp_path / "runs" / "diverged"
    status = read_status(run_dir)
    assert status["status"] == "failed" and status["error"].startswith("RuntimeError: Loss is nan")
    assert not (run_dir / "summary.json").exists()
    records = complete_records(next((run_dir / "wandb").glob("offline-run-*/*.wandb")))
    exit_record = next(r.exit for r in records if r.WhichOneof("record_type") == "exit")
    assert exit_record.exit_code == 1


@pytest.mark.parametrize("override, error", [
    ("model.name=transformerx", r"Unknown model 'transformerx'"),
    ("model.params={depth: 3}", r"'model.params': Model 'shallow' has no parameter\(s\) \['depth'\]"),
    ("model.name=auto", r"'model.params': .*'logvar' has no parameter\(s\) \['n_filters'\]|'eegnet' has no parameter"),
    ("data.files=[missing_run.fif]", r"Recording file not found: .*missing_run.fif"),
])
def test_config_errors_are_found_before_any_recording_is_read(write_config, tmp_path, override, error):
    cfg, config_dir = load_config(write_config(), [override, f"data.cache_dir={tmp_path / 'cache'}"])
    with pytest.raises((ValueError, TypeError, FileNotFoundError), match=error):
        run_training(cfg, config_dir, progress=False)
    assert not (tmp_path / "cache").exists()  # the epochs cache was never built: nothing was read
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("override, error", [
    ("data.picks.names=[C3, XX9]", "'picks.names' has channels not in the recording"),
    ("data.split.test=['07']", "07"),
    ("data.tmax=0.55", "too short"),
])
def test_a_run_whose_data_or_model_cannot_work_leaves_nothing(write_config, tmp_path, override, error):
    cfg, config_dir = load_config(write_config(), [override])
    with pytest.raises(ValueError, match=error):
        run_training(cfg, config_dir, progress=False)
    assert not (tmp_path / "runs").exists()


def test_a_reversed_band_is_refused_when_the_config_is_read(write_config):
    with pytest.raises(ValueError, match=r"'bandpass' low edge \(30.0 Hz\) must be below the high edge \(8.0 Hz\)"):
        load_config(write_config(), ["data.bandpass=[30, 8]"])
