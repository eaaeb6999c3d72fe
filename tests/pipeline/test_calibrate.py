"""`bmi calibrate`: the paradigm, and the whole day on the simulated amplifier (real LSL on loopback, real FIF
files read back with MNE, real processes): calibrate, train, export, serve against the same amplifier with cues;
killing a calibration keeps readable files with the trials so far."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import mne
import numpy as np
import pytest
import yaml

from datasets.typed import ConfigError
from pipeline.calibrate import check_out_dir, serve_commands, training_config
from pipeline.paradigm import ParadigmConfig, load_calibration, plan_runs

# a short paradigm: 3 s cues (the training window ends 2.5 s after the onset), about 4 s a trial
SHORT = {"paradigm": {"cue_seconds": 3.0, "rest_seconds": 1.0, "jitter_seconds": 0.5, "lead_in_seconds": 1.5,
                      "break_seconds": 1.0}}


# -- the paradigm ------------------------------------------------------------------------------------------------


def test_the_order_is_balanced_per_run_random_and_reproducible():
    cfg = ParadigmConfig(trials=20, runs=3)
    runs = plan_runs(cfg, seed=4)
    assert [len(r) for r in runs] == [20, 20, 20]  # 60 trials, the runs equally long
    assert Counter(sum(runs, [])) == {"grasp": 20, "open": 20, "rest": 20}
    for run in runs:  # within a run, each class 6 or 7 times
        assert set(Counter(run).values()) <= {6, 7}
    assert plan_runs(cfg, seed=4) == runs and plan_runs(cfg, seed=5) != runs
    even = plan_runs(ParadigmConfig(trials=6, runs=3), seed=1)
    assert all(Counter(run) == {"grasp": 2, "open": 2, "rest": 2} for run in even)


@pytest.mark.parametrize("raw, match", [
    ({"paradigm": {"runs": 1}}, r"'paradigm.runs' \(1\) must be at least 2"),
    ({"paradigm": {"trials": 2}}, r"'paradigm.trials' \(2\) must be at least 'paradigm.runs' \(3\)"),
    ({"paradigm": {"cue_seconds": 2.0}}, r"'training.tmax' \(2.5\) must be within the cue"),
    ({"paradigm": {"classes": ["grasp", "grasp"]}}, r"'paradigm.classes' \(\['grasp', 'grasp'\]\)"),
    ({"paradigm": {"jitter_seconds": -1}}, r"'paradigm.jitter_seconds' \(-1.0\) must be >= 0"),
    ({"paradigm": {"cue_secs": 3}}, r"Unknown key 'cue_secs'.*Did you mean 'cue_seconds'"),
    ({"training": {"tmin": 2.0, "tmax": 1.0}}, r"'training.tmax' \(1.0\) must be greater than 'training.tmin'"),
])
def test_bad_calibration_configs_name_the_key(tmp_path, raw, match):
    path = tmp_path / "calibration.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=match):
        load_calibration(path)


def test_the_shipped_calibration_config_loads_and_the_command_line_wins():
    cfg = load_calibration(Path(__file__).parents[2] / "configs" / "calibration.yaml", trials=12, classes=["grasp", "rest"])
    assert cfg.paradigm.trials == 12 and cfg.paradigm.classes == ["grasp", "rest"]
    assert cfg.paradigm.runs == 3 and cfg.training.euclidean_alignment


def test_a_session_folder_is_never_overwritten(tmp_path):
    check_out_dir(tmp_path / "new")
    check_out_dir(tmp_path)  # empty
    (tmp_path / "sub-01_ses-01_run-01_raw.fif").write_bytes(b"yesterday")
    with pytest.raises(FileExistsError, match="already holds files"):
        check_out_dir(tmp_path)


def test_the_training_config_tests_on_the_last_run_and_keeps_alignment(tmp_path):
    from datasets.synthetic import sensor_info

    cfg = load_calibration(None)
    files = [tmp_path / f"sub-01_ses-01_run-{r:02d}_raw.fif" for r in (1, 2, 3)]
    data = training_config(files, tmp_path, sensor_info("eeg", 250.0), cfg, ["grasp", "open", "rest"], 3)["data"]
    assert data["split"] == {"method": "holdout", "by": "run", "test": ["03"]}
    assert data["resample"] == 125.0 and data["picks"] == {"types": ["eeg"]} and data["euclidean_alignment"] is True
    meg = training_config(files, tmp_path, sensor_info("meg", 1000.0), cfg, ["grasp", "rest"], 3)["data"]
    assert meg["picks"] == {"types": ["meg"]} and meg["resample"] == 125.0
    commands = serve_commands(tmp_path / "decoder.onnx", "SimAmp", "bmi-cues", tmp_path)
    assert "--align-seconds 60" in commands["next_day"] and "--align-seconds" not in commands["today"]


def test_classes_without_a_hand_action_are_refused_before_recording_and_mapped_ones_reach_every_command(tmp_path):
    out = tmp_path / "day1"
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "calibrate", "--stream", "lsl:NoSuchAmp", "--out",
                           str(out), "--classes", "left,right,rest", "--resolve-timeout", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "['left', 'right'] have no hand action" in proc.stderr
    assert "--action left=open --action right=grasp" in proc.stderr and not out.exists()  # nothing recorded
    commands = serve_commands(tmp_path / "decoder.onnx", "SimAmp", "bmi-cues", tmp_path, ["--gate-rest-class", "rest"],
                              {"left": "open", "right": "grasp"})
    for command in commands.values():  # today's, the next day's and the rest gate's
        assert "--action left=open --action right=grasp" in command


# -- real processes ------------------------------------------------------------------------------------------------


def bmi(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SECRET = "console-secret-of-the-calibration-test"


def wait_http(url: str, timeout: float = 20.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.HTTPError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class Lines:
    """A child's stderr, read as it comes (so a test can act on progress lines)."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._thread.start()

    def _read(self, stream) -> None:
        for line in stream:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not any(re.search(pattern, line) for line in self.lines):
            if time.monotonic() > deadline:
                raise AssertionError(f"no line matching {pattern!r} within {timeout} s:\n" + "\n".join(self.lines[-20:]))
            time.sleep(0.05)

    def text(self) -> str:
        self._thread.join(timeout=5)
        return "\n".join(self.lines)


def cue_lines(lines: list[str]) -> list[tuple[int, str]]:
    """(run, label) of every cue the calibration showed (its non-terminal progress lines)."""
    return [(int(m.group(1)), m.group(2)) for line in lines if (m := re.match(r"run (\d+)/\d+ trial \d+/\d+: (\w+)", line))]


@pytest.fixture
def names():
    stamp = time.monotonic_ns()
    return f"SimAmp-{stamp}", f"bmi-cues-{stamp}"


def binomial_tail(n: int, k: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_whole_day_on_the_simulated_amplifier(names, tmp_path):
    """Calibrate (cues on the console's cue page), train, export, then serve against the same amplifier while a
    console paradigm cues the patient: the online decisions agree with the cues far above chance."""
    import httpx

    name, cues = names
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump(SHORT))
    day1 = tmp_path / "sessions" / "day1"
    amp = bmi("amp", "--synthetic", "--name", name, "--cues", f"lsl:{cues}", "--snr", "2.5", "--no-status")
    procs = [amp]
    try:
        port = free_port()
        calibrate = bmi("calibrate", "--stream", f"lsl:{name}", "--cues", f"lsl:{cues}", "--console",
                        f"127.0.0.1:{port}", "--config", str(config), "--trials", "6", "--seed", "2", "--out", str(day1),
                        "--flush-seconds", "1", env=dict(os.environ, BMI_CONSOLE_TOKEN=SECRET))
        procs.append(calibrate)
        shown_on_page: list[str] = []

        def watch_cue_page():  # what the patient's screen receives: the cue page's event stream
            wait_http(f"http://127.0.0.1:{port}/cue")
            try:
                with httpx.stream("GET", f"http://127.0.0.1:{port}/events", timeout=None,
                                  headers={"X-BMI-Token": SECRET, "Origin": f"http://127.0.0.1:{port}"}) as response:
                    for line in response.iter_lines():
                        if line.startswith("data: "):
                            msg = json.loads(line[6:])
                            if msg.get("kind") == "cue" and msg.get("label"):
                                shown_on_page.append(msg["label"])
            except httpx.HTTPError:
                pass  # the console stops with the calibration

        threading.Thread(target=watch_cue_page, daemon=True).start()
        out, err = calibrate.communicate(timeout=600)
        assert calibrate.returncode == 0, err[-3000:]
        report = json.loads((day1 / "calibration.json").read_text())
        order = report["paradigm"]["order"]
        assert shown_on_page == sum(order, [])  # the cue page showed every cue, in the planned order

        # the recordings read back with MNE: one file per run, every cue an annotation at its place in the order
        files = sorted(day1.glob("sub-01_ses-01_run-*_raw.fif"))
        assert [f.name.split("_")[2] for f in files] == ["run-01", "run-02", "run-03"]
        for f, run_order in zip(files, order):
            raw = mne.io.read_raw_fif(f, preload=True, verbose="error")
            assert list(raw.annotations.description) == run_order
            assert Counter(raw.annotations.description) == {"grasp": 2, "open": 2, "rest": 2}
            assert len(raw.ch_names) == 64 and set(raw.get_channel_types()) == {"eeg"}
            assert 1e-6 < raw.get_data().std() < 1e-4  # volts
            assert np.all(np.diff(raw.annotations.onset) > 3.0)  # a cue and a rest apart

        # trained, compared with the references, exported; the exact commands printed
        assert (day1 / "decoder.onnx").is_file()
        # the decoder's test score, as the result table prints it (its column and the value)
        assert "calibration decoder, test run" in out and "balanced accuracy" in out
        assert f"{report['test']['balanced_accuracy']:.3f}" in out
        assert set(report["baselines"]) == {"csp_lda", "tangent_space"}
        assert report["serve"]["today"] in out and report["serve"]["next_day"] in out
        assert report["serve"]["today"].startswith(f"bmi serve {day1 / 'decoder.onnx'} --input lsl:{name}")
        # a rest gate chosen on the test run (4 movement cues) by bmi rehearse's rule: the decoder trained on this
        # amplifier's data (snr 2.5) answers them (measured: test balanced accuracy 1.000; 19 of the 24 settings
        # answered all 4 cues, the others 0-2); half the settings is the bound, and the one moving least where no
        # movement was cued is served
        gate = report["rest_gate"]
        assert gate["recording"] == "sub-01_ses-01_run-03_raw.fif" and len(gate["rows"]) == 24  # 12 gates x 2 EMA weights
        assert all(r["movement_cues"] == 4 for r in gate["rows"])
        answering = [r for r in gate["rows"] if r["movement_hit_rate"] >= 0.75]
        assert len(answering) >= 12, [r["movement_hit_rate"] for r in gate["rows"]]
        assert gate["chosen"] in answering
        assert gate["chosen"]["movement_time_uncued"] == min(r["movement_time_uncued"] for r in answering)
        assert report["serve"]["rest_gate"] in out
        assert "--gate-rest-class rest --gate-threshold" in report["serve"]["rest_gate"]
        assert f"--ema-alpha {gate['chosen']['ema_alpha']:g} " in report["serve"]["rest_gate"]
        for f in report["files"]:  # what crash safety cost: rewrites about every second, each short
            assert f["longest_unsaved_seconds"] < 2.5 and f["write_seconds_max"] < 0.5

        # the closed-loop session: a console cues the patient, bmi serve decodes the same amplifier
        port2 = free_port()
        console = bmi("console", "--runs", str(day1 / "runs"), "--listen", f"127.0.0.1:{port2}", "--cue-outlet", cues,
                      env=dict(os.environ, BMI_CONSOLE_TOKEN=SECRET))
        procs.append(console)
        wait_http(f"http://127.0.0.1:{port2}/cue")
        stats = tmp_path / "stats.json"
        serve = bmi("serve", str(day1 / "decoder.onnx"), "--input", f"lsl:{name}", "--output",
                    f"udp://127.0.0.1:{free_port()}", "--cues", f"lsl:{cues}", "--stats", str(stats), "--duration", "80",
                    "--no-status")
        procs.append(serve)
        time.sleep(8)  # the server settles and checks the amplitude; the amplifier subscribes to the console's cues
        paradigm = {"classes": ["grasp", "open", "rest"], "trials": 5, "cue_s": 3.0, "rest_s": 1.0, "jitter_s": 0.5,
                    "seed": 5}
        own = {"X-BMI-Token": SECRET, "Origin": f"http://127.0.0.1:{port2}"}
        assert httpx.post(f"http://127.0.0.1:{port2}/api/paradigm", json=paradigm, headers=own).json()["ok"]
        _, serve_err = serve.communicate(timeout=150)
        assert serve.returncode == 0, serve_err[-3000:]
    finally:
        for proc in procs:
            stop(proc)
    scores = json.loads(stats.read_text())["cues"]
    window = scores["training_window"]
    # 15 cues; each scored once, on the window the offline test scores. A decoder at chance (1/3) reaches 0.8
    # balanced accuracy (12 of 15 here) with probability binomial_tail(15, 12, 1/3) = 0.0002.
    assert scores["n_cues"] == 15 and not scores["unmatched_labels"]
    assert window["n_trials"] >= 13
    assert binomial_tail(15, 12, 1 / 3) < 1e-3
    assert window["balanced_accuracy"] >= 0.8, scores


def _start_calibration(names, tmp_path, flush: float = 1.0):
    name, cues = names
    config = tmp_path / "short.yaml"
    config.write_text(yaml.safe_dump({"paradigm": {**SHORT["paradigm"], "cue_seconds": 2.5, "rest_seconds": 0.5,
                                                   "jitter_seconds": 0.0, "lead_in_seconds": 1.0}}))
    config.write_text(config.read_text() + "training: {tmin: 0.5, tmax: 2.0}\n")
    amp = bmi("amp", "--synthetic", "--name", name, "--cues", f"lsl:{cues}", "--no-status")
    out = tmp_path / "day1"
    calibrate = bmi("calibrate", "--stream", f"lsl:{name}", "--cues", f"lsl:{cues}", "--config", str(config),
                    "--trials", "6", "--seed", "3", "--out", str(out), "--flush-seconds", str(flush), "--no-train")
    return amp, calibrate, out, Lines(calibrate.stderr)


def _annotations(path: Path) -> list[str]:
    return list(mne.io.read_raw_fif(path, preload=True, verbose="error").annotations.description)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sigkill_mid_run_leaves_readable_files_with_the_trials_so_far(names, tmp_path):
    amp, calibrate, out, lines = _start_calibration(names, tmp_path)
    try:
        lines.wait_for(r"^run 2/3 trial 3/6", timeout=120)
        time.sleep(2.2)  # the third cue of run 2 is 2.2 s old: older than a rewrite (1 s) plus its write
        calibrate.send_signal(signal.SIGKILL)
        calibrate.wait(timeout=10)
    finally:
        stop(calibrate)
        stop(amp)
    shown = cue_lines(lines.lines)
    run1, run2 = out / "sub-01_ses-01_run-01_raw.fif", out / "sub-01_ses-01_run-02_raw.fif"
    assert _annotations(run1) == [label for r, label in shown if r == 1]  # the finished run: every cue
    got, cued = _annotations(run2), [label for r, label in shown if r == 2]
    assert len(got) >= 3 and got == cued[: len(got)]  # the killed run: its first cues, in order
    assert not (out / "sub-01_ses-01_run-03_raw.fif").exists()
    assert not list(out.glob(".*tmp*"))  # no half-written file beside them (a temporary is renamed or removed)
    seconds = mne.io.read_raw_fif(run2, verbose="error").times[-1]
    killed_at = 1.0 + 2 * 3.0 + 2.2  # lead-in, two whole trials, 2.2 s into the third
    # lost at most: the rewrite interval (1 s, or 10x the last write when that is longer) and one write
    assert seconds > killed_at - 2.0


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_ctrl_c_finishes_the_file_and_says_how_to_train_on_it(names, tmp_path):
    amp, calibrate, out, lines = _start_calibration(names, tmp_path, flush=5.0)
    try:
        lines.wait_for(r"^run 2/3 trial 2/6", timeout=120)
        time.sleep(0.5)
        calibrate.send_signal(signal.SIGINT)
        calibrate.wait(timeout=30)
    finally:
        stop(calibrate)
        stop(amp)
    text = lines.text()
    assert calibrate.returncode == 130, text[-2000:]
    shown = cue_lines(lines.lines)
    run2 = out / "sub-01_ses-01_run-02_raw.fif"
    # the last write on the way out: every cue shown so far, though the rewrite interval (5 s) had not come
    assert _annotations(run2) == [label for r, label in shown if r == 2] and len(shown) == 8
    assert "bmi train" in text and "kept 2 recording(s)" in text
    train = yaml.safe_load((out / "train.yaml").read_text())
    assert train["data"]["files"] == ["sub-01_ses-01_run-01_raw.fif", "sub-01_ses-01_run-02_raw.fif"]
