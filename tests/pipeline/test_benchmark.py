"""``bmi benchmark``: MOABB's own evaluations of the project's decoders (as scikit-learn classifiers) and the
classical references, on MOABB's fake dataset made learnable."""

import json

import mne
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("moabb")

from moabb_learnable import LearnableFake  # noqa: E402
from pipeline.benchmark import COLUMNS, make_paradigm, make_pipelines, run_benchmark  # noqa: E402
from pipeline.cli import main  # noqa: E402


def learnable(**kw):
    return LearnableFake(event_list=["left_hand", "right_hand"], n_subjects=2, n_sessions=2, n_runs=1, duration=90,
                         n_events=24, seed=5, **kw)


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from sklearn.dummy import DummyClassifier

    out = tmp_path_factory.mktemp("bench")
    paradigm = make_paradigm("MotorImagery", events=["left_hand", "right_hand"], n_classes=2, fmin=8, fmax=32,
                             tmin=0.0, tmax=2.0, resample=64)
    pipelines = make_pipelines(["CSP+LDA", "logvar"], sfreq=64, max_epochs=100, seed=0)
    pipelines["constant"] = DummyClassifier(strategy="prior")  # the same probabilities for every trial
    with mne.utils.use_log_level("error"):
        frame = run_benchmark([learnable()], paradigm, ["within-session", "cross-subject"], pipelines, out)
    return out, frame


@pytest.mark.slow  # about a minute: MOABB's 5-fold within-session and cross-subject folds train a decoder each
def test_the_results_have_moabbs_columns_and_one_row_per_subject_session_and_pipeline(results):
    out, frame = results
    written = pd.read_csv(out / "results.csv")
    assert list(written.columns[: len(COLUMNS)]) == COLUMNS
    within = written[written.evaluation == "within-session"]
    assert sorted(within.groupby("pipeline").size().items()) == [("CSP+LDA", 4), ("constant", 4), ("logvar", 4)]
    assert set(zip(within.subject, within.session.astype(str))) == {(1, "0"), (1, "1"), (2, "0"), (2, "1")}
    across = written[written.evaluation == "cross-subject"]
    assert sorted(across.groupby("pipeline").size().items()) == [("CSP+LDA", 4), ("constant", 4), ("logvar", 4)]
    assert (written.channels == 3).all() and (written.n_sessions == 2).all()
    notes = json.loads((out / "notes.json").read_text())
    assert "non-causal" in notes["preprocessing"] and notes["paradigm"] == "MotorImagery"
    assert not list((out / "moabb").rglob("*")) == []  # MOABB's own results stay in the output folder


@pytest.mark.slow
def test_the_scores_separate_a_learnable_signal_from_a_constant_guess(results):
    """Two classes: MOABB scores ROC AUC. A classifier with the same output for every trial scores exactly 0.5;
    CSP+LDA and the log-variance decoder find the lateralised power change (a wrapper that mixed up its classes or
    ignored X would sit at or below 0.5)."""
    _, frame = results
    mean = frame.groupby(["evaluation", "pipeline"]).score.mean()
    assert np.allclose(frame[frame.pipeline == "constant"].score, 0.5)
    assert mean["within-session", "CSP+LDA"] > 0.95 and mean["cross-subject", "CSP+LDA"] > 0.95
    assert mean["within-session", "logvar"] > 0.85 and mean["cross-subject", "logvar"] > 0.85  # 1.0 on 2026-12-05


@pytest.mark.slow  # about 40 s on a shared 2-core machine
def test_the_command_writes_the_csv_in_its_folder_and_nothing_in_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    (tmp_path / "home").mkdir()
    out = tmp_path / "out"
    code = main(["benchmark", "--dataset", "FakeDataset", "--option", "n_subjects=2", "--option", "n_sessions=2",
                 "--option", "n_runs=1", "--option", "duration=40", "--option", "n_events=16", "--option", "seed=1",
                 "--option", "event_list=[left_hand, right_hand]", "--events", "left_hand,right_hand",
                 "--evaluations", "cross-session", "--pipelines", "TS+LR,logvar", "--max-epochs", "2",
                 "--tmax", "2", "--out", str(out)])
    assert code == 0
    frame = pd.read_csv(out / "results.csv")
    assert list(frame.columns[: len(COLUMNS)]) == COLUMNS
    assert sorted(frame.groupby("pipeline").size().items()) == [("TS+LR", 4), ("logvar", 4)]
    assert set(frame.evaluation) == {"cross-session"} and frame.score.between(0, 1).all()
    assert list((tmp_path / "home").rglob("*")) == []


@pytest.mark.parametrize("argv, message", [
    (["--pipelines", "CSP+LDA,nope"], "'--pipelines' names 'nope'"),
    (["--evaluations", "within-subject"], "'--evaluations' (['within-subject']) must name some of"),
    (["--paradigm", "Imagine"], "is not a MOABB paradigm; known:"),
    (["--dataset", "Cho2071"], "close names: Cho2017"),
])
def test_bad_input_is_a_one_line_error_and_nothing_is_written(tmp_path, capsys, argv, message):
    base = ["benchmark", "--dataset", "FakeDataset", "--option", "n_subjects=2", "--out", str(tmp_path / "out")]
    if argv[0] == "--dataset":
        base = base[:1] + argv + base[3:]
        argv = []
    assert main(base + argv) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
