"""The main job end to end, shortened: synthetic data, two decoders, comparison, export, a live LSL
stream into `bmi serve` driving `bmi rig`, and the summary and report that say what happened."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.demo import choose_decoder, wants_rest_gate


def _run(model, val, n_params, n_val=30):
    return {"model": model, "val": {"balanced_accuracy": val}, "n_params": n_params, "n_val": n_val}


def test_the_demo_serves_the_smallest_decoder_within_one_standard_error_of_the_best():
    # 0.9 over 30 windows: standard error sqrt(0.9 * 0.1 / 30) = 0.055
    runs = [_run("eegnet", 0.9, 2451), _run("gru", 0.733, 17011), _run("logvar", 0.867, 1075)]
    chosen, why = choose_decoder(runs)
    assert chosen["model"] == "logvar" and "eegnet 0.900 with 2451" in why and "0.055" in why
    runs[2]["val"]["balanced_accuracy"] = 0.8  # now outside it: the best, however large
    assert choose_decoder(runs)[0]["model"] == "eegnet"
    # more windows, a smaller standard error (0.9 over 300: 0.017): one window's difference no longer decides
    many = [_run("eegnet", 0.9, 2451, n_val=300), _run("logvar", 0.867, 1075, n_val=300)]
    assert choose_decoder(many)[0]["model"] == "eegnet"
    # a perfect best has no binomial error: one validation window is the least margin
    perfect = [_run("eegnet", 1.0, 2451), _run("logvar", 1 - 1 / 30, 1075), _run("gru", 0.9, 10)]
    chosen, why = choose_decoder(perfect)
    assert chosen["model"] == "logvar" and "0.033" in why
    alone, why = choose_decoder([_run("gru", 0.5, 10)])
    assert alone["model"] == "gru" and why == "validation balanced accuracy 0.500 over 30 windows"


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_demo_runs_every_step_and_reports(tmp_path):
    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--out", str(out), "--quick", "--stream-seconds", "6",
         "--no-rest-gate"], capture_output=True, text=True, timeout=580,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["models"]) == {"logvar", "eegnet", "gru"}
    assert summary["best"] in summary["models"] and "validation balanced accuracy" in summary["chosen_by"]
    assert 0.0 <= summary["offline_test"]["balanced_accuracy"] <= 1.0
    assert summary["parity_max_abs_diff"] < 1e-4
    online = summary["online"]
    assert online["n_decisions"] > 20  # ~20 decisions/s once the first window is full
    assert online["rig_messages"] >= online["n_decisions"]  # decisions plus safe/heartbeat messages
    assert online["latency_p99_ms"] < 50
    # --no-rest-gate: served as trained, and the summary says so
    assert summary["rest_gate"] is None and summary["rest_gate_skipped"] == "--no-rest-gate"
    assert "without a rest gate (--no-rest-gate)" in proc.stdout
    assert set(online["hand_at_rest"]) == {"rest_cues", "moved_in", "travel", "cut"}
    # scored by cue as bmi rehearse scores them; 6 s from the first decision hold no whole cue
    assert online["commands"]["n_movement_cues"] + online["commands"]["n_rest_cues"] == 0
    report = Path(summary["report"]).read_text()
    assert "## Online" in report and summary["best"] in report
    # both ways of scoring online decisions: every decision in the cue period, and the training-aligned one
    assert "every decision in the cue period" in report and "aligned online score" in report
    assert "aligned" in online and online["offline_recording"]["n_trials"] > 0
    for figure in ("learning_curves", "confusion_matrix", "latency_histogram", "aperture_vs_cues"):
        assert (out / "figures" / f"{figure}.png").stat().st_size > 1000
    assert (out / "decoder.onnx").is_file() and (out / "session_log.csv").is_file()
    assert "report:" in proc.stdout


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_quick_demo_serves_under_a_rest_gate_by_default_and_holds_the_hand_while_rest_is_likely(tmp_path):
    """`bmi demo` (the rest gate is the default when the data have a rest class): the gate's threshold and dwell
    are chosen by `bmi rehearse` on the held-out recording's part that is not streamed; the server gates the flat
    decoder on 1 - P(rest) with them: every logged decision carries that gate, and none below the chosen
    threshold commands a movement."""
    import csv

    out = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "demo", "--out", str(out), "--quick", "--stream-seconds", "6",
         "--models", "logvar"], capture_output=True, text=True, timeout=580,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    gate = summary["rest_gate"]
    assert summary["rest_gate_skipped"] is None
    assert gate["rehearsed_seconds"] >= 30 and len(gate["rows"]) == 24  # 12 gate settings x 2 EMA weights
    assert {r["ema_alpha"] for r in gate["rows"]} == {0.3, 0.1}
    options = gate["serve_options"]
    threshold = float(options[options.index("--gate-threshold") + 1])
    assert options[:2] == ["--gate-rest-class", "rest"]
    answering = [r for r in gate["rows"] if r["movement_hit_rate"] >= 0.75]
    if answering:  # the one that moves least at rest, served
        assert "chosen by bmi rehearse" in gate["why"] and gate["rehearsal"] in answering
        assert gate["rehearsal"]["movement_time_uncued"] == min(r["movement_time_uncued"] for r in answering)
        assert threshold == gate["rehearsal"]["gate"]["threshold"]
        assert options[-2:] == ["--ema-alpha", f"{gate['rehearsal']['ema_alpha']:g}"]
    else:  # one epoch of training may answer too few cues: the defaults, and the summary says why
        assert gate["rehearsal"] is None and "no setting answered 75%" in gate["why"] and threshold == 0.7
    assert "under a rest gate" in proc.stdout
    assert set(summary["online"]["hand_at_rest"]) == {"rest_cues", "moved_in", "travel", "cut"}
    decisions = [r for r in csv.DictReader((out / "session_log.csv").open()) if r["type"] == "decision"]
    assert len(decisions) > 20
    for row in decisions:
        gate = float(row["gate"])
        assert gate == pytest.approx(1 - json.loads(row["probabilities"])["rest"], abs=1e-5)
        if gate < threshold:
            assert row["action"] == "hold", row


def test_the_demo_gates_on_rest_by_default_only_where_there_is_a_rest_class():
    assert wants_rest_gate(None, ["rest", "grasp", "open"]) == (True, None)
    assert wants_rest_gate(True, ["rest", "grasp"]) == (True, None)
    assert wants_rest_gate(False, ["rest", "grasp"]) == (False, "--no-rest-gate")
    # real data without a rest class: served as trained by default, and the reason names the classes
    served, why = wants_rest_gate(None, ["left", "right", "left"])
    assert not served and "no class named 'rest'" in why and "['left', 'right']" in why
    assert wants_rest_gate(False, ["left", "right"]) == (False, "--no-rest-gate")
    assert wants_rest_gate(None, []) == (False, "the config's data.events names no classes to find a rest class in")
    with pytest.raises(ValueError, match=r"--rest-gate needs a class named 'rest'.*\['left', 'right'\]"):
        wants_rest_gate(True, ["left", "right"])


def test_data_whose_classes_have_no_hand_action_are_refused_before_training(tmp_path):
    """`bmi demo --data` with classes bmi serve cannot map (left / right) stops at step 1, naming the options to
    add, instead of after training; a misspelt action likewise."""
    import yaml

    config = tmp_path / "lr.yaml"
    config.write_text(yaml.safe_dump({"data": {"files": ["a_raw.fif"], "events": {"T0": "rest", "T1": "left",
                                                                                  "T2": "right"}}}))
    for extra, message in (([], "['left', 'right'] have no hand action"),
                           (["--action", "left=opn", "--action", "right=grasp"], "maps to ['opn']")):
        out = tmp_path / f"demo{len(extra)}"
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--data", str(config), "--out", str(out),
                               *extra], capture_output=True, text=True, timeout=60)
        assert proc.returncode != 0 and message in proc.stdout + proc.stderr
        assert "Step 2/6" not in proc.stdout and not list(out.iterdir())  # nothing trained, nothing written


def test_a_bad_release_is_refused_before_training(tmp_path):
    """`bmi demo --release`: a length that is not positive is refused before anything is written, and data
    without a rest class to label the windows with before training."""
    import yaml

    config = tmp_path / "lr.yaml"
    config.write_text(yaml.safe_dump({"data": {"files": ["a_raw.fif"], "events": {"T1": "left", "T2": "right"}}}))
    for extra, message in ((["--release", "0"], "'release.after_s' (0.0) must be positive"),
                           (["--data", str(config), "--action", "left=open", "--action", "right=grasp", "--release",
                             "1.5"], "--release labels its windows 'rest', a class the data lack")):
        out = tmp_path / f"demo{len(extra)}"
        proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--out", str(out), *extra],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 1 and message in proc.stderr, proc.stderr
        assert "Step 2/6" not in proc.stdout and not (out.exists() and list(out.iterdir()))  # nothing written


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_demo_on_real_recordings_maps_their_classes_and_channel_names(eegmmidb_dir, tmp_path):
    """`bmi demo --data` on PhysioNet S001 (rest / left / right, EDF names renamed by the eegbci rule): the server
    and the offline check read the stream's channels under the data's names, and every command drives the hand as
    `--action` maps it, under the default rest gate."""
    import csv

    import yaml

    config = tmp_path / "s001.yaml"
    config.write_text(yaml.safe_dump({"data": {
        "files": [str(eegmmidb_dir / f"S001R{r:02d}.edf") for r in (3, 7, 11)],
        "events": {"T0": "rest", "T1": "left", "T2": "right"}, "rename": "eegbci", "tmin": 0.5, "tmax": 2.5,
        "picks": {"types": ["eeg"]}, "resample": 80.0, "split": {"method": "holdout", "by": "run", "test": ["11"]},
        "cache_dir": str(tmp_path / "cache")}}))
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--data", str(config), "--out", str(out),
                           "--models", "logvar", "--epochs", "5", "--stream-seconds", "8",
                           "--action", "left=open", "--action", "right=grasp"],
                          capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["rest_gate"]["serve_options"][:2] == ["--gate-rest-class", "rest"]
    assert summary["online"]["offline_recording"]["n_trials"] > 0  # the recording read offline under the same names
    decisions = [r for r in csv.DictReader((out / "session_log.csv").open()) if r["type"] == "decision"]
    assert len(decisions) > 20
    mapped = {"left": "open", "right": "grasp", "rest": "hold"}
    for row in decisions:
        assert row["action"] == mapped[row["command"]], row  # a closed gate's command is rest itself


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_an_interrupted_demo_says_where_it_stopped_and_leaves_no_child(tmp_path):
    """Ctrl-C while the live stream runs: exit code 130, a summary that says INTERRUPTED and in which step,
    summary.json with what finished, and no bmi serve / bmi rig left running."""
    import os
    import signal
    import time

    import psutil

    out = tmp_path / "demo"
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "demo", "--out", str(out), "--quick",
                             "--stream-seconds", "60"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="120"))
    lines = []
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        lines.append(line)
        if "replaying held-out recording" in line or not line:
            break
    time.sleep(3)  # serve and rig are up
    children = psutil.Process(proc.pid).children(recursive=True)
    assert {"rig", "serve"} <= {word for c in children for word in c.cmdline()}
    proc.send_signal(signal.SIGINT)
    rest, _ = proc.communicate(timeout=60)
    text = "".join(lines) + rest
    assert proc.returncode == 130, text[-3000:]
    assert "bmi demo: INTERRUPTED" in text and "step 5/6 (live decoding)" in text
    assert "decoder served" in text and "decoder chosen" not in text  # stopped while it was being served
    assert text.rstrip().splitlines()[-1].startswith("partial results are under")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["interrupted"] == "step 5/6 (live decoding)" and (out / "decoder.onnx").is_file()
    assert set(summary["models"]) == {"logvar", "eegnet", "gru"}
    assert not [c for c in children if c.is_running() and c.status() != psutil.STATUS_ZOMBIE]
