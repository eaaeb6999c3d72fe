"""A sweep's study report (``bmi compare --study-report``): Optuna's own parallel-coordinate and importance plots
of a study opened from the storage its sweep summaries name, and the refusals when that cannot be done.

The studies are made with Optuna directly (a journal file or SQLite in tmp_path, fake values), laid out as
``bmi sweep`` leaves them: runs/<study>/trial<n> folders and a sweep_summary-trials<a>-<b>.json per worker."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from pipeline.cli import main as bmi
from pipeline.study_report import IMPORTANCE_PNG, PARALLEL_PNG, REPORT, StudyReportError, write_study_report

SPACE = ("optim.lr", "model.name", "model.params.dropout", "data.batch_size")


def distributions():
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    return {"optim.lr": FloatDistribution(1e-4, 1e-2, log=True),
            "model.name": CategoricalDistribution(["eegnet", "shallow"]),
            "model.params.dropout": FloatDistribution(0.1, 0.5),
            "data.batch_size": IntDistribution(16, 64, step=16)}


def make_study(root: Path, storage: str, name: str = "sweep-t", complete: int = 8, failed: int = 1) -> Path:
    """A study of ``complete`` scored trials (the learning rate decides the score) and ``failed`` failed ones,
    in ``storage``; its folder under ``root`` with trial folders and one worker's summary."""
    import optuna

    from pipeline.sweep import open_storage

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # a database as the URL itself (open_storage's heartbeat is for trials run by study.optimize)
    shared = storage if storage.startswith("sqlite") else open_storage(storage)
    study = optuna.create_study(study_name=name, storage=shared, direction="maximize")
    study.set_user_attr("bmi_metric", "val.balanced_accuracy")
    folder = root / name
    rng = random.Random(0)
    for i in range(complete + failed):
        trial = study.ask(distributions())
        run = folder / f"trial{trial.number}"
        run.mkdir(parents=True)
        trial.set_user_attr("run_dir", str(run.resolve()))
        if i < failed:
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            (run / "run.json").write_text(json.dumps({"status": "failed", "error": "RuntimeError: Loss is nan"}))
            continue
        score = 0.4 + 0.4 * (trial.params["optim.lr"] > 1e-3) + 0.05 * rng.random()
        study.tell(trial, score)
        (run / "summary.json").write_text(json.dumps({"run_id": run.name, "val": {"balanced_accuracy": score},
                                                      "test": {"balanced_accuracy": score - 0.02}}))
    n = complete + failed
    (folder / f"sweep_summary-trials0-{n - 1}.json").write_text(json.dumps(
        {"study": name, "storage": storage, "metric": "val.balanced_accuracy", "direction": "maximize"}))
    return folder


def test_a_journal_study_is_drawn_with_optunas_plots(tmp_path, capsys):
    folder = make_study(tmp_path / "runs", f"journal:{tmp_path / 'study.log'}")
    assert bmi(["compare", "--study-report", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "study sweep-t: 8 completed, 1 failed" in out and f"report: {folder / REPORT}" in out
    html = (folder / REPORT).read_text()
    assert all(name in html for name in SPACE)  # the best trial's values and the importances, by parameter
    assert html.count('src="data:image/png;base64,') == 2 and "<script" not in html and "http" not in html
    assert "Optuna storage journal:" in html and "Best trial" in html
    for png in (PARALLEL_PNG, IMPORTANCE_PNG):
        assert (folder / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(folder.glob(".*.tmp"))  # written through datasets.atomic: no temporary left
    assert "\nimportance: optim.lr " in out  # first: the one parameter the fake score depends on
    best = int(out.split("best trial ")[1].split()[0])
    assert f"run trial{best})</h2>" in html  # the best trial's run folder, from its run_dir attribute


def test_too_few_completed_trials_for_importance_are_said_not_crashed(tmp_path):
    folder = make_study(tmp_path / "runs", f"sqlite:///{tmp_path / 'study.db'}", complete=1, failed=2)
    (folder / IMPORTANCE_PNG).write_bytes(b"an older report's plot")
    result = write_study_report(folder)
    assert result["importances"] is None and result["trials"] == {"completed": 1, "failed": 2}
    assert "parameter importance needs at least 2 completed trials; this study has 1" in result["notes"]
    html = (folder / REPORT).read_text()
    assert "needs at least 2 completed trials" in html and html.count("data:image/png") == 1
    assert not (folder / IMPORTANCE_PNG).exists()  # no stale plot beside a report that says there is none


def test_an_in_memory_study_is_rebuilt_from_its_summary(tmp_path):
    folder = tmp_path / "runs" / "sweep-m"
    folder.mkdir(parents=True)
    trials = [{"trial": i, "params": {"optim.lr": lr, "data.bandpass": band},
               "run_dir": str(folder / f"trial{i}"), "val": {"balanced_accuracy": score}}
              for i, (lr, band, score) in enumerate([(1e-4, [8, 30], 0.5), (3e-3, [4, 40], 0.8), (1e-2, [8, 30], 0.7)])]
    trials.append({"trial": 3, "params": {"optim.lr": 5e-4, "data.bandpass": [4, 40]}, "error": "ValueError: too short"})
    (folder / "sweep_summary-trials0-3.json").write_text(json.dumps(
        {"study": "sweep-m", "storage": None, "metric": "val.balanced_accuracy", "direction": "maximize",
         "trials_this_process": trials}))
    result = write_study_report(folder)
    assert result["trials"] == {"completed": 3, "failed": 1} and result["best"]["trial"] == 1
    assert result["best"]["params"] == {"optim.lr": 3e-3, "data.bandpass": "[4, 40]"}
    assert "the study was in memory" in result["notes"][0]
    assert set(result["importances"]) == {"optim.lr", "data.bandpass"}
    assert "data.bandpass" in (folder / REPORT).read_text()


def refusal(folder: Path, capsys) -> str:
    assert bmi(["compare", "--study-report", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err  # one line, no traceback
    return err


def test_refusals_name_what_is_missing(tmp_path, capsys):
    empty = tmp_path / "runs" / "cv-x"
    empty.mkdir(parents=True)
    assert "holds no sweep_summary-*.json: not a bmi sweep study folder" in refusal(empty, capsys)
    assert "Study folder not found" in refusal(tmp_path / "runs" / "nope", capsys)

    db = tmp_path / "study.db"
    folder = make_study(tmp_path / "runs", f"sqlite:///{db}")
    db.rename(tmp_path / "moved.db")  # the database is gone: refused, and no empty one is made in its place
    assert f"The study's storage sqlite:///{db} cannot be reached: no file {db}." in refusal(folder, capsys)
    assert not db.exists()

    lost = make_study(tmp_path / "runs", f"journal:{tmp_path / 'other.log'}", name="sweep-lost")
    summary = next(lost.glob("sweep_summary-*.json"))
    summary.write_text(summary.read_text().replace("sweep-lost", "sweep-renamed"))
    assert "Study 'sweep-renamed' is not in its storage journal:" in refusal(lost, capsys)

    unscored = make_study(tmp_path / "runs", f"journal:{tmp_path / 'u.log'}", name="sweep-u", complete=0, failed=2)
    assert "Study 'sweep-u' has no completed trial yet (2 failed): nothing to draw." in refusal(unscored, capsys)

    (lost / "sweep_summary-trials9-9.json").write_text(json.dumps({"study": "sweep-renamed", "storage": None}))
    assert "name different storages" in refusal(lost, capsys)

    unreachable = tmp_path / "runs" / "sweep-pg"
    unreachable.mkdir()
    (unreachable / "sweep_summary-trials0-0.json").write_text(json.dumps(
        {"study": "sweep-pg", "storage": "postgresql+psycopg2://bmi:secret@127.0.0.1:1/optuna"}))
    err = refusal(unreachable, capsys)
    assert "The study's storage cannot be reached" in err and "secret" not in err  # the password stays hidden

    assert bmi(["compare", "--study-report", str(folder), "--out", str(tmp_path / "x")]) == 1
    assert "drop --out" in capsys.readouterr().err
    with pytest.raises(StudyReportError, match="each was its own study"):
        (empty / "sweep_summary-trials0-0.json").write_text(json.dumps({"study": "a", "storage": None}))
        (empty / "sweep_summary-trials1-1.json").write_text(json.dumps({"study": "a", "storage": None}))
        write_study_report(empty)


def test_the_console_lists_studies_and_serves_only_their_reports(tmp_path):
    from exports.runtime.console import runs

    root = tmp_path / "runs"
    folder = make_study(root, f"journal:{tmp_path / 'study.log'}", complete=2, failed=0)
    (root / "cv-a" / "fold0").mkdir(parents=True)
    (root / "cv-a" / "fold0" / "summary.json").write_text(json.dumps({"run_id": "fold0"}))
    rows = runs.list_runs(root)
    assert runs.studies(root, rows) == {"sweep-t": {"report": False, "path": str(folder)}}  # not the CV
    with pytest.raises(FileNotFoundError, match="bmi compare --study-report makes one"):
        runs.study_report(root, "sweep-t")
    write_study_report(folder)
    assert runs.studies(root, rows)["sweep-t"]["report"] is True
    assert runs.study_report(root, "sweep-t") == (folder / REPORT).resolve()
    (tmp_path / REPORT).write_text("outside the runs folder")
    for bad in ("..", "../runs/..", "cv-a"):
        with pytest.raises(FileNotFoundError):
            runs.study_report(root, bad)


@pytest.mark.slow  # three real trainings (about 15 s); the tests above cover the report on fake values
def test_a_real_sweep_in_memory_and_in_a_journal(write_config, tmp_path):
    """bmi sweep's own folders: an in-memory study (rebuilt from its summary) and a journal one (opened from it)."""
    import yaml

    from pipeline.sweep import run_sweep

    space = tmp_path / "space.yaml"
    space.write_text(yaml.safe_dump({"optim.lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True},
                                     "model.params.n_filters": {"type": "categorical", "choices": [4, 8]}}))
    memory = run_sweep(write_config(), space, trials=2, study_name="mem")
    result = write_study_report(memory["folder"])
    assert "the study was in memory" in result["notes"][0] and result["trials"] == {"completed": 2}
    assert result["best"]["run_dir"] == memory["best"]["run_dir"]
    journal = run_sweep(write_config(), space, trials=1, storage=f"journal:{tmp_path / 'sweep.log'}", study_name="jr")
    result = write_study_report(journal["folder"])
    assert result["source"] == f"Optuna storage journal:{tmp_path / 'sweep.log'}" and result["importances"] is None
    assert result["best"]["value"] == journal["best"]["value"] and result["metric"] == "val.balanced_accuracy"
    html = (Path(journal["folder"]) / REPORT).read_text()
    assert "optim.lr" in html and "model.params.n_filters" in html
