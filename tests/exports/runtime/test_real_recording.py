"""The rig path on a real recording: a decoder trained on PhysioNet EDF runs, exported, then a later run of the
same subject replayed as a live LSL stream into `bmi serve` (skipped where the recordings are absent)."""

import csv
import subprocess
import sys
import time

import pytest
import yaml

from runtime_helpers import bmi, free_port, wait


@pytest.mark.slow
def test_real_edf_stream_is_decoded(eegmmidb_dir, tmp_path):
    config = tmp_path / "train.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"files": [str(eegmmidb_dir / f"S001R{r:02d}.edf") for r in (3, 7)],
                 "events": {"T1": "left", "T2": "right"}, "rename": "eegbci", "tmin": 0.5, "tmax": 2.5,
                 "bandpass": [8.0, 30.0], "resample": 80.0, "split": {"method": "holdout", "by": "run"},
                 "cache_dir": str(tmp_path / "cache")},
        "trainer": {"max_epochs": 2, "enable_progress_bar": False}, "tracking": {"mode": "disabled"},
        "runs_dir": str(tmp_path / "runs"),
    }, sort_keys=False))
    train = subprocess.run([sys.executable, "-m", "pipeline.cli", "train", str(config), "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert train.returncode == 0, train.stderr[-2000:]
    run_dir = next((tmp_path / "runs").iterdir())
    export = subprocess.run([sys.executable, "-m", "pipeline.cli", "export", str(run_dir), "--out", str(tmp_path / "m.onnx")],
                            capture_output=True, text=True, timeout=300)
    assert export.returncode == 0, export.stderr[-2000:]

    name = f"eegmmidb-{time.monotonic_ns()}"
    player = subprocess.Popen([sys.executable, "-c", (
        "import time, mne\nfrom mne_lsl.player import PlayerLSL\n"
        f"raw = mne.io.read_raw_edf({str(eegmmidb_dir / 'S001R11.edf')!r}, preload=True, verbose='error')\n"
        "mne.datasets.eegbci.standardize(raw)  # the amplifier's names = the training names\n"
        f"p = PlayerLSL(raw, chunk_size=8, name={name!r}, annotations=False)\n"
        "p.start(); time.sleep(9); p.stop()\n")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = tmp_path / "session.csv"
    actions = ["--action", "left=open", "--action", "right=grasp"]  # a left/right model must say what moves the hand
    server = bmi("serve", str(tmp_path / "m.onnx"), "--input", f"lsl:{name}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--duration", "8", "--no-status", *actions)
    code, out, err = wait(server, 60)
    wait(player, 30)
    assert code == 0, err
    decisions = [r for r in csv.DictReader(log.open()) if r["type"] == "decision"]
    # no rest class: "hold" (the safe command) until a class has held for the dwell, then the classes' actions
    assert len(decisions) > 40 and {r["command"] for r in decisions} <= {"left", "right", "hold"}
    assert decisions[0]["command"] == "hold" and any(r["command"] != "hold" for r in decisions)
    assert {r["action"] for r in decisions if r["command"] != "hold"} <= {"open", "grasp"}
    assert {r["action"] for r in decisions if r["command"] == "hold"} == {"hold"}

    # the EDF file itself, replayed: its PhysioNet names (C3.., Fc5.) get the training renaming (eegbci)
    log = tmp_path / "replay.csv"
    server = bmi("serve", str(tmp_path / "m.onnx"), "--input", f"replay:{eegmmidb_dir / 'S001R11.edf'}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--duration", "6", "--no-status", *actions)
    code, out, err = wait(server, 60)
    assert code == 0, err
    assert len([r for r in csv.DictReader(log.open()) if r["type"] == "decision"]) > 30
