"""`bmi serve` as a real process: light imports, offline/online parity, safety, faults, sham, the rig."""

import csv
import json
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort
import pytest

from exports.onnx import read_model_metadata

from exports.runtime.protocol import encode_hello

from runtime_helpers import bmi, connect, free_port, send_data, send_recording, wait

HEAVY = ("torch", "pytorch_lightning", "lightning", "mne", "sklearn")


def read_log(path):
    return list(csv.DictReader(path.open()))


def test_server_process_never_loads_torch_lightning_or_mne(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    npz = tmp_path / "rec.npz"
    np.savez(npz, data=data[:, : int(6 * sfreq)], ch_names=np.array(ch_names), sfreq=sfreq)
    script = (
        "import json, sys\n"
        "from pipeline.cli import main\n"
        f"main(['serve', {str(exported.path)!r}, '--input', 'replay:{npz}', '--output', 'udp://127.0.0.1:{free_port()}',"
        " '--duration', '4', '--no-status'])\n"
        f"print('MODULES', json.dumps([m for m in {HEAVY!r} if m in sys.modules]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout.splitlines()[-2])
    assert stats["decisions"] > 0  # it really decoded
    # a replay's samples come on its own clock: the loop sleeps until they are due, never polls for them
    assert stats["input_pacing"]["poll_ahead_ms"] == 0 and stats["input_pacing"]["chunks_met_polling"] == 0
    assert proc.stdout.splitlines()[-1] == "MODULES []"


def offline_filtered(meta, data: np.ndarray) -> np.ndarray:
    """Independent of the runtime's classes: one ``scipy.signal.sosfilt`` over the whole recording, started at
    the steady state of its first sample (at the input rate)."""
    from scipy import signal

    sos = np.asarray(meta["preprocessing"]["sos"], dtype=np.float64).reshape(-1, 6)
    x = np.asarray(data, dtype=np.float64)
    return signal.sosfilt(sos, x, axis=1, zi=signal.sosfilt_zi(sos)[:, None, :] * x[None, :, :1])[0]


def offline_reference(meta, data: np.ndarray) -> np.ndarray:
    """:func:`offline_filtered`, then every ``decim``-th sample from the first (the model's rate)."""
    return offline_filtered(meta, data)[:, :: meta["preprocessing"]["decim"]]


def offline_normalized(norm, window: np.ndarray) -> np.ndarray:
    """Independent of ``datasets.dsp``: the metadata's normalisation in plain float64 numpy, Euclidean
    alignment (the one subject's matrix) first, then ``(x - mean) / std`` per channel."""
    x = np.asarray(window, dtype=np.float64)
    if norm.get("alignment"):
        (matrix,) = norm["alignment"].values()  # one subject's whitening matrix
        x = np.asarray(matrix, dtype=np.float64) @ x
    if norm["kind"] == "standardize":
        x = (x - np.asarray(norm["mean"], dtype=np.float64)[:, None]) / np.asarray(norm["std"], dtype=np.float64)[:, None]
    else:
        assert norm["kind"] == "none", norm["kind"]
    return x.astype(np.float32)


def assert_matches_offline(decisions, meta, data, model_path, start_index=0, atol=1e-4):
    """Each logged decision's probabilities equal the model run on the reference window ending at its newest
    sample: every ``decim``-th filtered sample counted back from it (``start_index``: the stream sample where
    ``data`` begins)."""
    filtered = offline_filtered(meta, data)
    session = ort.InferenceSession(str(model_path))
    decim, n_times, worst = meta["preprocessing"]["decim"], meta["window"]["n_times"], 0.0
    for row in decisions:
        newest = int(row["sample_index"]) - start_index - 1
        window = filtered[:, newest - (n_times - 1) * decim : newest + 1 : decim]
        assert window.shape[1] == n_times
        window = offline_normalized(meta["normalization"], window)
        expected = session.run(["probabilities"], {"signals": window[None]})[0][0]
        online = json.loads(row["probabilities"])
        worst = max(worst, max(abs(online[c] - p) for c, p in zip(meta["classes"], expected)))
    assert worst < atol


def test_offline_and_online_probabilities_agree(exported, recording_array, tmp_path):
    """One recording streamed over TCP in odd chunks, channels shuffled, against an independent offline
    reference (whole-recording scipy sosfilt, numpy normalisation, onnxruntime)."""
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(20 * sfreq)]
    port, log = free_port(), tmp_path / "session.csv"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--smoothing", "none", "--log", str(log), "--duration", "14",
                 "--no-status", "--stale-ms", "5000")
    order = np.random.default_rng(0).permutation(len(ch_names))  # the stream's channel order differs
    with connect(port) as sock:
        send_recording(sock, data[order], [ch_names[i] for i in order], sfreq, [7, 64, 1, 33, 128], pace=0.01)
        time.sleep(1.5)
    code, out, err = wait(server, 30)
    assert code == 0, err
    decisions = [r for r in read_log(log) if r["type"] == "decision"]
    assert len(decisions) > 50
    meta = read_model_metadata(exported.path)
    first = min(int(r["sample_index"]) for r in decisions)
    settle_in = meta["preprocessing"]["settle_seconds"] * sfreq
    assert first >= settle_in + meta["window"]["n_times"] * meta["preprocessing"]["decim"]  # never before settled
    # EEGNet begins with a channel mix: the server mixed the samples on arrival, the reference ran the whole graph
    stats = json.loads(out.strip().splitlines()[-1])
    assert stats["decoder_input"] == {"channels": len(ch_names), "rows": 16, "channel_mix_on_arrival": True}
    # the loop learnt the chunks' pace (one every 10 ms) and polled for them: the decisions are the same
    pacing = stats["input_pacing"]
    assert pacing["poll_ahead_ms"] == 0.5 and 8 <= pacing["chunk_interval_ms"] <= 13, pacing
    assert pacing["chunks_met_polling"] >= pacing["chunks"] / 2, pacing
    assert_matches_offline(decisions, meta, data, exported.path)


def test_a_stream_that_does_not_fit_is_refused_and_the_server_waits_for_the_next(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    port, stats = free_port(), tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--no-status", "--duration", "8", "--stats", str(stats))
    with connect(port) as sock:  # two channels missing and another rate: refused, with the reason
        sock.sendall(encode_hello(ch_names[2:], 500.0))
        sock.settimeout(5)
        reply = json.loads(sock.recv(4096).decode().splitlines()[0])
    assert f"missing channels {ch_names[:2]}" in reply["error"]
    assert "sampling rate 500 Hz, the model expects 250 Hz" in reply["error"]
    with connect(port) as sock:  # the next client fits and is decoded
        send_recording(sock, data[:, : int(5 * sfreq)], ch_names, sfreq, [25], pace=0.1)
    code, out, err = wait(server, 30)
    assert code == 0, err
    assert "missing channels" in err  # the operator sees the refusal too
    result = json.loads(stats.read_text())
    assert result["events"]["tcp_client_refused"] == 1 and result["decisions"] > 20


def test_nan_burst_flat_input_and_garbage_frames_do_not_stop_the_server(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(12 * sfreq)].copy()
    data[:, int(3 * sfreq) : int(3.2 * sfreq)] = np.nan  # a NaN burst
    port, log, stats = free_port(), tmp_path / "s.csv", tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--stats", str(stats), "--duration", "12",
                 "--no-status", "--stale-ms", "5000")
    with connect(port) as bad:  # a client speaking garbage is dropped
        bad.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(range(256)))
        time.sleep(0.3)
    with connect(port) as sock:
        sock.sendall(encode_hello(ch_names, sfreq))
        pos = send_data(sock, data[:, : int(6 * sfreq)], sfreq, [25], pace=0.05)
        flat = np.repeat(data[:, int(6 * sfreq) - 1 : int(6 * sfreq)], int(1.5 * sfreq), axis=1)  # amplifier stuck
        pos = send_data(sock, flat, sfreq, [25], pace=0.05, start=pos)
        send_data(sock, data[:, int(6 * sfreq) :], sfreq, [25], pace=0.05, start=pos)
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
    player = _play(path, name, 7)  # decoding starts after the filters settle and the amplitude check (~2.4 s)
    rig = bmi("rig", "--listen", f"udp://127.0.0.1:{port}", "--log", str(tmp_path / "rig1.csv"), "--duration", "9",
              "--no-status")
    log, stats = tmp_path / "s.csv", tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"lsl:{name}", "--output", f"udp://127.0.0.1:{port}",
                 "--log", str(log), "--stats", str(stats), "--duration", "22", "--no-status")
    wait(player, 20)  # the stream stops after 7 s ...
    time.sleep(1.5)
    player = _play(path, name, 9)  # ... and comes back
    wait(rig, 20)
    rig2 = bmi("rig", "--listen", f"udp://127.0.0.1:{port}", "--log", str(tmp_path / "rig2.csv"), "--duration", "4",
               "--no-status")
    code, out, err = wait(server, 40)
    wait(player, 20)
    wait(rig2, 20)
    assert code == 0, err
    rows = read_log(log)
    first_decision = next(i for i, r in enumerate(rows) if r["type"] == "decision")
    stale = next(i for i, r in enumerate(rows) if i > first_decision and r["reason"] == "stale" and r["type"] == "safe")
    last_decision = max(i for i in range(stale) if rows[i]["type"] == "decision")
    gap = float(rows[stale]["t_wall"]) - float(rows[last_decision]["t_wall"])
    assert gap <= 0.250 + 0.050 + 0.1  # stale_ms + one hop, + scheduling slack on a loaded machine
    assert any(r["type"] == "heartbeat" for r in rows[stale:])
    assert any(r["type"] == "decision" for r in rows[stale:])  # resumed when the stream came back
    assert rows[-1]["type"] == "stop" and rows[-1]["command"] == "rest" and rows[-1]["action"] == "hold"
    rig1 = list(csv.DictReader((tmp_path / "rig1.csv").open()))
    rig2_rows = list(csv.DictReader((tmp_path / "rig2.csv").open()))
    assert len(rig1) > 20 and len(rig2_rows) > 5
    assert json.loads(stats.read_text())["events"]["stale"] >= 1


def test_sham_session_is_identical_on_the_wire_and_independent_of_the_signal(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(8 * sfreq)]

    def session(*extra, name):
        port, log = free_port(), tmp_path / f"{name}.csv"
        server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                     f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--duration", "7", "--no-status",
                     "--stale-ms", "5000", *extra)
        with connect(port) as sock:  # 0.1 s frames at twice real time: every window is fresh
            send_recording(sock, data, ch_names, sfreq, [25], pace=0.05)
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


@pytest.mark.slow
def test_decisions_are_scored_against_an_lsl_cue_stream(exported, recording_array, tmp_path):
    """`bmi play` replays the recording with its annotations on a second LSL stream; --cues scores the session."""
    _, _, _, path = recording_array
    name = f"bmi-cues-{time.monotonic_ns()}"
    player = bmi("play", str(path), "--name", name, "--duration", "16")
    stats = tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"lsl:{name}", "--cues", f"lsl:{name}-annotations",
                 "--output", f"udp://127.0.0.1:{free_port()}", "--stats", str(stats), "--duration", "12", "--no-status")
    code, out, err = wait(server, 60)
    wait(player, 30)
    assert code == 0, err
    cues = json.loads(stats.read_text())["cues"]
    assert cues["n_cues"] >= 2 and not cues["unmatched_labels"]
    assert cues["cue_period"]["n_decisions"] > 20 and cues["training_window"]["n_trials"] >= 2
    assert cues["window"] == {"tmin": 0.5, "tmax": 1.5, "tolerance_s": 0.05}
