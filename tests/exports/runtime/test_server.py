"""`bmi serve` as a real process: light imports, offline/online parity, safety, faults, sham, the rig."""

import csv
import json
import math
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest

from datasets.dsp import PreprocessingSpec, apply_normalization, apply_offline
from exports.onnx import read_model_metadata

from runtime_helpers import bmi, connect, free_port, send_recording, wait

HEAVY = ("torch", "pytorch_lightning", "lightning", "mne", "sklearn")


def read_log(path):
    return list(csv.DictReader(path.open()))


def test_server_process_never_loads_torch_lightning_or_mne(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    npz = tmp_path / "rec.npz"
    np.savez(npz, data=data[:, : int(3 * sfreq)], ch_names=np.array(ch_names), sfreq=sfreq)
    script = (
        "import json, sys\n"
        "from pipeline.cli import main\n"
        f"main(['serve', {str(exported.path)!r}, '--input', 'replay:{npz}', '--output', 'udp://127.0.0.1:{free_port()}',"
        " '--duration', '2', '--no-status'])\n"
        f"print('MODULES', json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.splitlines()[-2])
    assert stats["decisions"] > 0  # it really decoded
    assert proc.stdout.splitlines()[-1] == "MODULES []"


def test_offline_and_online_probabilities_agree(exported, recording_array, tmp_path):
    """One recording decoded offline (export path) and streamed over TCP in odd chunks, channels shuffled."""
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(20 * sfreq)]
    port, log = free_port(), tmp_path / "session.csv"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--smoothing", "none", "--log", str(log), "--duration", "12",
                 "--no-status", "--stale-ms", "5000")
    order = np.random.default_rng(0).permutation(len(ch_names))  # the stream's channel order differs
    with connect(port) as sock:
        send_recording(sock, data[order], [ch_names[i] for i in order], sfreq, [7, 64, 1, 33, 128], pace=0.0005)
        time.sleep(1.5)
    code, out, err = wait(server, 30)
    assert code == 0, err
    decisions = [r for r in read_log(log) if r["type"] == "decision"]
    assert len(decisions) > 50

    meta = read_model_metadata(exported.path)
    spec = PreprocessingSpec.from_dict(meta["preprocessing"])
    offline = apply_offline(spec, data.astype(np.float64))  # same float32 samples as sent
    session = ort.InferenceSession(str(exported.path))
    n_times, worst = meta["window"]["n_times"], 0.0
    for row in decisions:
        end = math.ceil(int(row["sample_index"]) / spec.decim)
        window = apply_normalization(offline[:, end - n_times : end].astype(np.float32), meta["normalization"])
        expected = session.run(["probabilities"], {"signals": window[None]})[0][0]
        online = json.loads(row["probabilities"])
        worst = max(worst, max(abs(online[c] - p) for c, p in zip(meta["classes"], expected)))
    assert worst < 1e-4


def test_wrong_channel_set_is_refused_at_start(exported, recording_array):
    data, ch_names, sfreq, _ = recording_array
    port = free_port()
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--no-status")
    with connect(port) as sock:
        send_recording(sock, data[2:, :100], ch_names[2:], 500.0, [50])
        code, out, err = wait(server, 30)
    assert code == 1
    assert f"missing channels {ch_names[:2]}" in err and "sampling rate 500 Hz, the model expects 250 Hz" in err


def test_nan_burst_flat_input_and_garbage_frames_do_not_stop_the_server(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(12 * sfreq)].copy()
    data[:, int(3 * sfreq) : int(3.2 * sfreq)] = np.nan  # a NaN burst
    port, log, stats = free_port(), tmp_path / "s.csv", tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--stats", str(stats), "--duration", "10",
                 "--no-status", "--stale-ms", "5000")
    with connect(port) as bad:  # a client speaking garbage is dropped
        bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        time.sleep(0.3)
    with connect(port) as sock:
        send_recording(sock, data[:, : int(6 * sfreq)], ch_names, sfreq, [25], pace=0.002)
        flat = np.repeat(data[:, int(6 * sfreq) - 1 : int(6 * sfreq)], int(1.5 * sfreq), axis=1)  # amplifier stuck
        send_recording(sock, flat, ch_names, sfreq, [25], pace=0.002)
        send_recording(sock, data[:, int(6 * sfreq) :], ch_names, sfreq, [25], pace=0.002)
        time.sleep(0.5)
    code, out, err = wait(server, 30)
    assert code == 0, err
    rows = read_log(log)
    reasons = [r["reason"] for r in rows if r["type"] == "safe"]
    assert "nonfinite" in reasons and "flat" in reasons
    nan_at = next(i for i, r in enumerate(rows) if r["reason"] == "nonfinite")
    assert any(r["type"] == "decision" for r in rows[nan_at:])  # decoding resumed on clean data
    counted = json.loads(stats.read_text())["events"]
    assert counted["malformed_frame"] >= 1 and counted["nonfinite"] == 1 and counted["flat"] >= 1


def _play(path, name, seconds):
    return subprocess.Popen([sys.executable, "-c", (
        "import sys, time\nfrom mne_lsl.player import PlayerLSL\n"
        f"p = PlayerLSL({str(path)!r}, chunk_size=10, name={name!r}, annotations=False)\n"
        f"p.start(); time.sleep({seconds}); p.stop()\n")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slow
def test_lsl_stream_to_rig_with_stream_loss_and_rig_restart(exported, recording_array, tmp_path):
    """PlayerLSL -> bmi serve -> bmi rig; the stream stops (safe state within stale_ms + one hop) and comes
    back (decoding resumes); the rig restarts and receives again."""
    _, _, _, path = recording_array
    name = f"bmi-test-{time.monotonic_ns()}"
    port = free_port(__import__("socket").SOCK_DGRAM)
    player = _play(path, name, 5)
    rig = bmi("rig", "--listen", f"udp://127.0.0.1:{port}", "--log", str(tmp_path / "rig1.csv"), "--duration", "7")
    log, stats = tmp_path / "s.csv", tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"lsl:{name}", "--output", f"udp://127.0.0.1:{port}",
                 "--log", str(log), "--stats", str(stats), "--duration", "14", "--no-status")
    wait(player, 20)  # the stream stops after 5 s ...
    time.sleep(1.5)
    player = _play(path, name, 6)  # ... and comes back
    wait(rig, 20)
    rig2 = bmi("rig", "--listen", f"udp://127.0.0.1:{port}", "--log", str(tmp_path / "rig2.csv"), "--duration", "4")
    code, out, err = wait(server, 40)
    wait(player, 20)
    wait(rig2, 20)
    assert code == 0, err
    rows = read_log(log)
    stale = next(i for i, r in enumerate(rows) if r["reason"] == "stale" and r["type"] == "safe")
    last_decision = max(i for i in range(stale) if rows[i]["type"] == "decision")
    gap = float(rows[stale]["t_wall"]) - float(rows[last_decision]["t_wall"])
    assert gap <= 0.250 + 0.050 + 0.1  # stale_ms + one hop, + scheduling slack on a loaded machine
    assert any(r["type"] == "heartbeat" for r in rows[stale:])
    assert any(r["type"] == "decision" for r in rows[stale:])  # resumed when the stream came back
    assert rows[-1]["type"] == "stop" and rows[-1]["command"] == "rest"
    rig1 = list(csv.DictReader((tmp_path / "rig1.csv").open()))
    rig2_rows = list(csv.DictReader((tmp_path / "rig2.csv").open()))
    assert len(rig1) > 20 and len(rig2_rows) > 5
    assert json.loads(stats.read_text())["events"]["stale"] >= 1


def test_sham_session_is_identical_on_the_wire_and_independent_of_the_signal(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(10 * sfreq)]

    def session(*extra, name):
        port, log = free_port(), tmp_path / f"{name}.csv"
        server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                     f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--duration", "6", "--no-status",
                     "--stale-ms", "5000", *extra)
        with connect(port) as sock:
            send_recording(sock, data, ch_names, sfreq, [50], pace=0.001)
            time.sleep(0.5)
        code, _, err = wait(server, 30)
        assert code == 0, err
        return [r for r in read_log(log) if r["type"] == "decision"]

    real = session(name="real")
    sham1 = session("--sham", "--sham-source", str(tmp_path / "real.csv"), "--sham-seed", "1", name="sham1")
    sham2 = session("--sham", "--sham-source", str(tmp_path / "real.csv"), "--sham-seed", "2", name="sham2")
    assert len(real) == len(sham1) == len(sham2)  # same timing: one decision per hop
    assert all(r["sham"] == "0" for r in real) and all(r["sham"] == "1" for r in sham1)
    assert set(sham1[0]) == set(real[0]) and json.loads(sham1[0]["probabilities"]).keys() == json.loads(real[0]["probabilities"]).keys()
    assert {r["command"] for r in sham1} <= {r["command"] for r in real}
    # same signal, different seeds -> different commands: the sham does not follow the signal
    assert [r["command"] for r in sham1] != [r["command"] for r in sham2] or len({r["command"] for r in real}) == 1
