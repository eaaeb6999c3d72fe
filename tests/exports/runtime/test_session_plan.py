"""Blinded sessions: a balanced, randomised plan whose conditions live only in the key file; `bmi serve
--session-plan` runs the planned condition and logs only an opaque code."""

import csv
import json
import subprocess
import sys
import time
from collections import Counter

import numpy as np
import pytest

from exports.runtime.session_plan import (make_plan, planned_session, read_key, refuse_blinded_source, unblind_logs,
                                          write_plan)

from runtime_helpers import bmi, connect, free_port, send_recording, wait


def read_csv(path):
    return list(csv.DictReader(path.open()))


def plan_files(tmp_path, patients=("P01", "P02"), sessions=6, seed=7):
    rows = make_plan(list(patients), sessions, ["real", "sham"], seed)
    write_plan(rows, tmp_path / "plan.csv", tmp_path / "plan.key.csv")
    return tmp_path / "plan.csv", tmp_path / "plan.key.csv"


def test_the_plan_is_balanced_random_and_keeps_conditions_in_the_key(tmp_path):
    plan, key = plan_files(tmp_path)
    rows, keys = read_csv(plan), read_csv(key)
    assert list(rows[0]) == ["patient", "session", "code"]  # no condition column in the plan
    assert "real" not in plan.read_text() and "sham" not in plan.read_text()
    assert len(rows) == 12 and len({r["code"] for r in rows}) == 12  # one fresh code per session
    conditions = read_key(key)
    for patient in ("P01", "P02"):
        mine = [conditions[r["code"]] for r in rows if r["patient"] == patient]
        assert Counter(mine) == {"real": 3, "sham": 3}  # balanced per patient
    # the seed fixes the order (and only the order: codes are fresh every time)
    again = make_plan(["P01", "P02"], 6, ["real", "sham"], 7)
    assert [r["condition"] for r in again] == [conditions[r["code"]] for r in rows]
    assert {r["code"] for r in again}.isdisjoint({r["code"] for r in rows})
    orders = {tuple(r["condition"] for r in make_plan(["P01"], 6, ["real", "sham"], s)) for s in range(20)}
    assert len(orders) > 5  # randomised, not a fixed alternation
    assert list(keys[0]) == ["code", "patient", "session", "condition"]


@pytest.mark.parametrize("kwargs, match", [
    ({"sessions": 5}, r"'--sessions' \(5\) must be a positive multiple"),
    ({"conditions": ["real", "placebo"]}, r"'--conditions' \(real,placebo\)"),
    ({"conditions": ["real", "real"]}, r"'--conditions' \(real,real\)"),
    ({"patients": ["P01", "P01"]}, r"'--patients' \(P01,P01\) names a patient twice"),
    ({"patients": ["P 1"]}, r"'--patients' \(P 1\)"),
])
def test_bad_plans_are_refused_with_the_value(kwargs, match):
    args = {"patients": ["P01"], "sessions": 4, "conditions": ["real", "sham"], "seed": 1} | kwargs
    with pytest.raises(ValueError, match=match):
        make_plan(**args)


def test_a_plan_is_never_overwritten_and_sessions_are_looked_up_with_clear_errors(tmp_path):
    plan, key = plan_files(tmp_path)
    with pytest.raises(FileExistsError, match="never overwritten"):
        plan_files(tmp_path)
    session = planned_session(plan, "P02", 4)
    assert session.code == next(r["code"] for r in read_csv(plan) if r["patient"] == "P02" and r["session"] == "4")
    assert session.sham == (read_key(key)[session.code] == "sham")
    with pytest.raises(ValueError, match=r"'--patient' \('P09'\) is not in .*patients: P01, P02"):
        planned_session(plan, "P09", 1)
    with pytest.raises(ValueError, match=r"'--session' \(7\) is not planned for P01.*sessions: 1, 2, 3, 4, 5, 6"):
        planned_session(plan, "P01", 7)
    with pytest.raises(ValueError, match="that is the key file"):
        planned_session(key, "P01", 1)
    with pytest.raises(FileNotFoundError, match="Session key not found"):
        planned_session(plan, "P01", 1, tmp_path / "elsewhere.key.csv")
    other_plan, other_key = plan_files(tmp_path / "other")
    with pytest.raises(ValueError, match="were not written together"):
        planned_session(plan, "P01", 1, other_key)


def test_bmi_session_plan_writes_both_files(tmp_path):
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "session", "plan", "--patients", "P01,P02", "--sessions",
                          "4", "--seed", "3", "--out", str(tmp_path / "trial.csv")], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert len(read_csv(tmp_path / "trial.csv")) == 8 and len(read_key(tmp_path / "trial.key.csv")) == 8
    bad = subprocess.run([sys.executable, "-m", "pipeline.cli", "session", "plan", "--patients", "P01", "--sessions",
                          "3", "--out", str(tmp_path / "bad.csv")], capture_output=True, text=True, timeout=60)
    assert bad.returncode == 1 and "'--sessions' (3)" in bad.stderr and not (tmp_path / "bad.csv").exists()


def test_planned_sessions_run_their_condition_and_log_only_the_code(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(8 * sfreq)]
    plan, key = plan_files(tmp_path, patients=("P01",), sessions=2, seed=1)
    conditions = {r["session"]: read_key(key)[r["code"]] for r in read_csv(plan)}
    assert sorted(conditions.values()) == ["real", "sham"]

    def session(*extra, name):
        port, log = free_port(), tmp_path / f"{name}.csv"
        server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                     f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--duration", "7", "--no-status",
                     "--stale-ms", "5000", *extra)
        with connect(port) as sock:  # 0.1 s frames at twice real time: every window is fresh
            send_recording(sock, data, ch_names, sfreq, [25], pace=0.05)
            time.sleep(0.5)
        code, out, err = wait(server, 30)
        assert code == 0, err
        return read_csv(log), json.loads(out.strip().splitlines()[-1]), err

    reference, _, _ = session(name="reference")  # an ordinary real session on the same signal
    planned = {n: session("--session-plan", str(plan), "--patient", "P01", "--session", n, name=f"planned{n}")
               for n in ("1", "2")}
    codes = {r["session"]: r["code"] for r in read_csv(plan)}
    for n, (rows, stats, err) in planned.items():
        assert {r["condition_code"] for r in rows} == {codes[n]}  # every row carries the code ...
        assert {r["sham"] for r in rows} == {""}  # ... and nothing else about the condition
        assert stats["sham"] is None and stats["condition_code"] == codes[n]
        assert "sham" not in err.lower() and codes[n] in err
    assert set(planned["1"][0][0]) == set(planned["2"][0][0]) == set(reference[0])  # the same columns

    def agreement(rows, same):  # share of decisions that match the ordinary session's at the same sample
        ref = {r["sample_index"]: np.array(list(json.loads(r["probabilities"]).values()))
               for r in reference if r["type"] == "decision"}
        matches = [same(np.array(list(json.loads(r["probabilities"]).values())), ref[r["sample_index"]])
                   for r in rows if r["type"] == "decision" and r["sample_index"] in ref]
        assert len(matches) > 50
        return float(np.mean(matches))

    def same_class(p, q):
        return p.argmax() == q.argmax()

    def same_output(p, q):
        return np.allclose(p, q, atol=1e-4)

    for n, (rows, _, _) in planned.items():
        if conditions[n] == "real":  # the planned real session decodes the signal
            assert agreement(rows, same_class) == 1.0 and agreement(rows, same_output) == 1.0
        else:  # the planned sham never passes the decoder's output on (its class agrees only by chance: an
            # unseeded sham holds each class ~1.5 s, so over a few seconds it may share the decoder's class a lot)
            assert agreement(rows, same_output) == 0.0
    # only the key says which was which
    logs = [tmp_path / "planned1.csv", tmp_path / "planned2.csv"]
    assert [r["condition"] for r in unblind_logs(key, logs)] == [conditions["1"], conditions["2"]]
    with pytest.raises(ValueError, match="blinded session's log"):
        refuse_blinded_source(logs[0])


def test_serve_refuses_plan_mistakes(exported, tmp_path):
    plan, _ = plan_files(tmp_path, patients=("P01",), sessions=2)
    cases = [
        (["--session-plan", str(plan), "--patient", "P01", "--session", "1", "--sham"], "'--sham' and '--session-plan'"),
        (["--session-plan", str(plan), "--patient", "P01"], "needs '--patient' and '--session'"),
        (["--patient", "P01", "--session", "1"], "give --session-plan too"),
        (["--session-plan", str(plan), "--patient", "P07", "--session", "1"], "'--patient' ('P07') is not in"),
    ]
    for extra, message in cases:
        out = subprocess.run([sys.executable, "-m", "pipeline.cli", "serve", str(exported.path), "--input",
                              f"tcp://127.0.0.1:{free_port()}", "--output", f"udp://127.0.0.1:{free_port()}",
                              "--duration", "1", "--no-status", *extra], capture_output=True, text=True, timeout=60)
        assert out.returncode == 1 and message in out.stderr, (extra, out.stderr)
