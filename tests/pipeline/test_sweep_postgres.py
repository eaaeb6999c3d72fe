"""A sweep shared by several worker processes on a real PostgreSQL server (``tests/postgres.py``): every trial
recorded once in one study folder, a killed worker's trial failed by the heartbeat and its run folder marked
failed, and bad storage or a mismatched study refused before any run starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from wandb_records import complete_records

from pipeline.compare import compare_runs, find_runs, unfinished_runs
from pipeline.sweep import run_sweep

SPACE = {"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
         "model.params.n_filters": {"type": "categorical", "choices": [4, 8]}}


@pytest.fixture
def space(tmp_path) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump(SPACE))
    return path


def worker(config: Path, space: Path, url: str, study: str, trials: int, *extra: str) -> subprocess.Popen:
    """One ``bmi sweep`` worker process (a heartbeat every second: a silent trial is stale after 3 s)."""
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", "sweep", str(config), str(space),
                             "--trials", str(trials), "--storage", url, "--study-name", study, "--heartbeat", "1",
                             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})


def finish(proc: subprocess.Popen, timeout: float = 240) -> str:
    out, _ = proc.communicate(timeout=timeout)
    assert proc.returncode == 0, out
    return out


@pytest.mark.slow
def test_two_workers_share_one_study(postgres_server, write_config, space, tmp_path):
    import optuna

    config, url = write_config(), postgres_server.url()
    workers = [worker(config, space, url, "shared", 2), worker(config, space, url, "shared", 2)]
    for proc in workers:
        finish(proc)
    trials = optuna.load_study(study_name="shared", storage=url).trials
    assert sorted(t.number for t in trials) == [0, 1, 2, 3]  # every trial recorded once
    assert all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    folder = tmp_path / "runs" / "shared"
    assert sorted(t.user_attrs["run_dir"] for t in trials) == [str((folder / f"trial{n}").resolve()) for n in range(4)]
    assert sorted(p.name for p in folder.iterdir() if p.is_dir()) == ["trial0", "trial1", "trial2", "trial3"]
    assert len(list(folder.glob("sweep_summary-*.json"))) == 2  # one per worker, neither replacing the other
    for t in trials:  # each run folder holds what its trial asked for, and the value Optuna recorded
        run = Path(t.user_attrs["run_dir"])
        assert yaml.safe_load((run / "config.yaml").read_text())["optim"]["lr"] == pytest.approx(t.params["optim.lr"])
        summary = json.loads((run / "summary.json").read_text())
        assert summary["val"]["balanced_accuracy"] == pytest.approx(t.value)
    table = compare_runs(find_runs([], tmp_path / "runs"), root=tmp_path / "runs", curve=None)
    assert sorted(table["folders"]) == ["shared"] and len(table["folders"]["shared"]) == 4


@pytest.mark.slow
def test_a_killed_worker_leaves_its_trial_failed_and_the_study_goes_on(postgres_server, write_config, space, tmp_path):
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback

    from pipeline.sweep import GRACE_FACTOR

    config, url = write_config(), postgres_server.url()
    victim = worker(config, space, url, "killed", 3)
    deadline, line = time.monotonic() + 180, ""
    while "run directory:" not in line:  # the victim is inside its first trial's training
        assert time.monotonic() < deadline and victim.poll() is None, "the victim worker never started a trial"
        line = victim.stdout.readline()
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    killed_dir = Path(line.split("run directory:", 1)[1].strip())
    # A stale trial is failed by the next worker that starts a trial after the grace period (heartbeat 1 s): the
    # survivor joins once the victim's trial is stale, so the check does not race the survivor's own pace.
    time.sleep(GRACE_FACTOR * 1 + 1)
    finish(worker(config, space, url, "killed", 4))

    trials = {t.number: t for t in optuna.load_study(study_name="killed", storage=url).trials}
    killed = next(t for t in trials.values() if t.user_attrs.get("run_dir") == str(killed_dir))
    assert killed.state == optuna.trial.TrialState.FAIL, f"trial {killed.number} is {killed.state.name}"
    retried = [t for t in trials.values() if RetryHeartbeatStaleTrialCallback.retried_trial_number(t) == killed.number]
    assert len(retried) == 1 and retried[0].state == optuna.trial.TrialState.COMPLETE
    assert retried[0].params == killed.params and retried[0].user_attrs["run_dir"] != str(killed_dir)
    assert sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials.values()) == 4  # the survivor's four
    status = json.loads((killed_dir / "run.json").read_text())  # the killed run is not trusted later
    assert status["status"] == "failed" and "heartbeat" in status["error"]
    assert not (killed_dir / "summary.json").exists()
    unfinished = unfinished_runs(tmp_path / "runs")
    assert [u["run"] for u in unfinished] == [f"killed/{killed_dir.name}"] and unfinished[0]["status"] == "failed"


def sweep_cli(config: Path, space: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pipeline.cli", "sweep", str(config), str(space), "--trials", "1",
                           *args], capture_output=True, text=True, timeout=120)


def one_line_error(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("bmi sweep: error: "), proc.stderr
    return lines[0]


def test_an_unreachable_database_or_a_wrong_password_fails_before_any_run(postgres_server, write_config, space,
                                                                           tmp_path):
    from postgres import free_port

    config = write_config()
    unreachable = sweep_cli(config, space, "--storage",
                            f"postgresql+psycopg2://bmi:secret@127.0.0.1:{free_port()}/bmi", "--study-name", "u")
    line = one_line_error(unreachable)
    assert "Cannot open the study storage" in line and "refused" in line and "secret" not in line
    wrong = sweep_cli(config, space, "--storage", postgres_server.url(password="not-it"), "--study-name", "w")
    line = one_line_error(wrong)
    assert "password authentication failed" in line and "not-it" not in line
    bad = sweep_cli(config, space, "--storage", "postgres-at-the-lab", "--study-name", "b")
    assert "must be a database URL" in one_line_error(bad)
    assert not (tmp_path / "runs").exists()  # nothing written in the runs folder


@pytest.mark.slow
def test_a_study_with_another_space_or_metric_refuses_a_worker(postgres_server, write_config, space, tmp_path):
    url = postgres_server.url()
    first = run_sweep(write_config(), space, trials=1, storage=url, study_name="fixed", overrides=["tracking.mode=offline"])
    trial_dir = Path(first["trials_this_process"][0]["run_dir"])  # the trial's W&B run: in the study's group
    records = complete_records(next((trial_dir / "wandb").glob("offline-run-*/*.wandb")))
    run = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    logged = {item.key: json.loads(item.value_json) for item in run.config.update}
    assert run.run_group == "fixed" and logged["grouping"] == {"study": "fixed", "fold": None, "trial": 0, "subject": None}
    other_space = tmp_path / "other.yaml"
    other_space.write_text(yaml.safe_dump({**SPACE, "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}))
    elsewhere = tmp_path / "elsewhere"
    common = ["--storage", url, "--study-name", "fixed", "--set", f"runs_dir={elsewhere}"]
    line = one_line_error(sweep_cli(write_config(), other_space, *common))
    assert "created with another search space (differing keys: optim.lr)" in line
    line = one_line_error(sweep_cli(write_config(), space, *common, "--metric", "val.kappa"))
    assert "optimises 'val.balanced_accuracy', not '--metric' 'val.kappa'" in line
    line = one_line_error(sweep_cli(write_config(), space, *common, "--direction", "minimize"))
    assert "maximizes its metric; this worker asked to minimize it" in line
    assert not elsewhere.exists()  # refused before any run folder was made


def test_journal_storage_on_a_shared_file_system(tmp_path):
    import optuna

    from pipeline.sweep import check_study, open_storage

    storage = open_storage(f"journal:{tmp_path / 'study.log'}")
    study = optuna.create_study(study_name="j", storage=storage, direction="maximize", load_if_exists=True)
    check_study(study, SPACE, "val.balanced_accuracy", "maximize")
    again = optuna.load_study(study_name="j", storage=open_storage(f"journal://{tmp_path / 'study.log'}"))
    assert again.user_attrs["bmi_metric"] == "val.balanced_accuracy"  # another worker sees what the first stored
    with pytest.raises(ValueError, match="differing keys: model.params.n_filters"):
        check_study(again, {"optim.lr": SPACE["optim.lr"]}, "val.balanced_accuracy", "maximize")
    with pytest.raises(FileNotFoundError, match="Journal storage folder not found"):
        open_storage(f"journal:{tmp_path / 'absent' / 'study.log'}")
