"""Rig safety with real parts (LSL on loopback, real sockets, real ONNX, `bmi serve` as a process): nothing stale,
transient, mis-scaled or unverified reaches the hand, and no failing part stops the others."""

import copy
import csv
import json
import os
import shutil
import socket
import struct
import threading
import time

import numpy as np
import pytest

from exports.onnx import embed_metadata, read_model_metadata
from exports.runtime.protocol import HEADER, encode_data, encode_hello

from runtime_helpers import bmi, connect, free_port, send_data, send_recording, wait
from test_server import assert_matches_offline, offline_reference, read_log


def decisions_of(path):
    return [r for r in read_log(path) if r["type"] == "decision"]


def model_variant(exported, tmp_path, name, change):
    """A copy of the exported model whose metadata ``change(meta)`` edits (same graph)."""
    path = tmp_path / f"{name}.onnx"
    shutil.copy(exported.path, path)
    meta = copy.deepcopy(read_model_metadata(path))
    change(meta)
    embed_metadata(path, meta)
    return path


def responsive_model(exported, tmp_path):
    """A real ONNX decoder whose class follows the input within every window (mean of each channel over the
    window through a random linear map), with the exported model's metadata: its commands change often."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    meta = read_model_metadata(exported.path)
    n_chans, n_times = meta["io"]["input_shape"][1:]
    weights = np.random.default_rng(0).standard_normal((n_chans, 3)).astype(np.float32) * 50
    graph = helper.make_graph(
        [helper.make_node("ReduceMean", ["signals", "axes"], ["mean"], keepdims=0),
         helper.make_node("MatMul", ["mean", "w"], ["logits"]),
         helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1)],
        "responsive",
        [helper.make_tensor_value_info("signals", TensorProto.FLOAT, ["batch", n_chans, n_times])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 3]),
         helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", 3])],
        [numpy_helper.from_array(np.array([2], dtype=np.int64), "axes"), numpy_helper.from_array(weights, "w")])
    path = tmp_path / "responsive.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), str(path))
    embed_metadata(path, meta)
    return path


def replay_file(tmp_path, name, data, ch_names, sfreq, units=None):
    path = tmp_path / f"{name}.npz"
    extra = {"units": np.array(units)} if units is not None else {}
    np.savez(path, data=data.astype(np.float32), ch_names=np.array(ch_names), sfreq=sfreq, **extra)
    return path


class UDPListener:
    """A controller on UDP: collects every JSON message in a thread (and this computer's monotonic time at its
    receipt, in ``arrivals``)."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.messages, self.arrivals, self._stop = [], [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
                self.arrivals.append(time.monotonic())
                self.messages.append(json.loads(data))
            except socket.timeout:
                continue

    def close(self):
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.messages


# -- freshness --------------------------------------------------------------------------------------------------


def test_stall_then_backlog_never_drives_the_hand_with_old_windows(exported, recording_array, tmp_path):
    """A real LSL outlet streams in real time, stalls 2 s, then delivers the 2 s it buffered at once with their
    acquisition timestamps (a network stall), then streams on. No decision may use a window older than
    --max-age-ms; the hand is safe during the stall; decoding resumes on fresh data."""
    import pylsl

    data, ch_names, sfreq, _ = recording_array
    name = f"bmi-stall-{time.monotonic_ns()}"
    info = pylsl.StreamInfo(name, "EEG", len(ch_names), sfreq, "float32", name)
    channels = info.desc().append_child("channels")
    for ch in ch_names:
        channels.append_child("channel").append_child_value("label", ch).append_child_value("unit", "volts")
    outlet = pylsl.StreamOutlet(info)
    log, stats = tmp_path / "s.csv", tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"lsl:{name}", "--output", f"udp://127.0.0.1:{free_port()}",
                 "--log", str(log), "--stats", str(stats), "--duration", "14", "--no-status")
    assert outlet.wait_for_consumers(30)
    chunk, pos = int(0.02 * sfreq), 0

    def stream(seconds):
        nonlocal pos
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            outlet.push_chunk(data[:, pos : pos + chunk].T.copy(), pylsl.local_clock())  # stamp: the last sample
            pos += chunk
            time.sleep(chunk / sfreq)

    stream(5.0)
    stall_start = pylsl.local_clock()
    time.sleep(2.0)  # the network stalls; the amplifier keeps acquiring
    n = int(2.0 * sfreq)
    stamps = [stall_start + (k + 1) / sfreq for k in range(n)]  # when each sample was acquired
    outlet.push_chunk(data[:, pos : pos + n].T.copy(), stamps)  # ... and the backlog arrives at once
    pos += n
    stream(3.0)
    code, _, err = wait(server, 30)
    assert code == 0, err
    rows = read_log(log)
    decisions = [r for r in rows if r["type"] == "decision"]
    ages = [float(r["age_ms"]) for r in decisions]
    assert len(decisions) > 20 and max(ages) <= 150.0 and min(ages) >= -1.0
    t_stall = next(float(r["t_wall"]) for r in rows if r["reason"] == "stale")
    before = [float(r["t_wall"]) for r in decisions if float(r["t_wall"]) < t_stall]
    after = [float(r["t_wall"]) for r in decisions if float(r["t_wall"]) > t_stall]
    assert before and after  # decoded before the stall and again once fresh data flowed
    gap = [r for r in rows if before[-1] < float(r["t_wall"]) < after[0]]
    assert gap and all(r["safe"] == "1" for r in gap)  # safe all through the stall and the backlog
    result = json.loads(stats.read_text())
    skipped = result["superseded_hops"] + result["withheld_hops"].get("late", 0)
    assert skipped > 20  # the 2 s backlog (40 hops) was filtered but not decoded: skipped to the newest window


def test_dwell_is_counted_in_stream_time_not_in_windows(exported, recording_array, tmp_path):
    """Decoded faster than real time (a whole recording in a burst), the command can change at most once per
    dwell of stream time."""
    data, ch_names, sfreq, _ = recording_array
    port, log = free_port(), tmp_path / "s.csv"
    server = bmi("serve", str(responsive_model(exported, tmp_path)), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--duration", "6", "--no-status",
                 "--smoothing", "none", "--hysteresis", "0", "--dwell-ms", "400", "--max-age-ms", "100000")
    with connect(port) as sock:
        send_recording(sock, data[:, : int(30 * sfreq)], ch_names, sfreq, [50], pace=0.002)
        time.sleep(0.5)
    code, _, err = wait(server, 30)
    assert code == 0, err
    decisions = decisions_of(log)
    assert len(decisions) > 100
    stream_time = [int(r["sample_index"]) / sfreq for r in decisions]
    starts = [stream_time[0]] + [t for a, b, t in zip(decisions, decisions[1:], stream_time[1:]) if a["command"] != b["command"]]
    assert len(starts) > 5 and np.diff(starts).min() >= 0.4 - 1e-6  # every command held 400 ms of stream time
    assert float(decisions[-1]["t_wall"]) - float(decisions[0]["t_wall"]) < 5  # ... though decoded faster than that


# -- settled filters, units, amplitude ----------------------------------------------------------------------------


@pytest.mark.slow
def test_dc_offset_and_a_microvolt_stream_decode_like_the_clean_volt_stream(exported, recording_array, tmp_path):
    """+20 mV on every channel, and the same data in microvolts (declared), agree with the clean stream from the
    first decision on."""
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(7 * sfreq)]
    files = {"clean": replay_file(tmp_path, "clean", data, ch_names, sfreq, units="V"),
             "offset": replay_file(tmp_path, "offset", data + 20e-3, ch_names, sfreq),
             "microvolts": replay_file(tmp_path, "uv", data * 1e6, ch_names, sfreq, units="uV")}
    procs = {k: bmi("serve", str(exported.path), "--input", f"replay:{f}", "--output", f"udp://127.0.0.1:{free_port()}",
                    "--log", str(tmp_path / f"{k}.csv"), "--duration", "6.5", "--no-status", "--smoothing", "none")
             for k, f in files.items()}
    errors = {}
    for k, proc in procs.items():
        code, _, errors[k] = wait(proc, 40)
        assert code == 0, errors[k]
    assert "converting stream units to the model's: uV x1e-06" in errors["microvolts"]
    logs = {k: {r["sample_index"]: json.loads(r["probabilities"]) for r in decisions_of(tmp_path / f"{k}.csv")}
            for k in files}
    firsts = {k: min(map(int, v)) for k, v in logs.items()}
    assert len(set(firsts.values())) == 1  # the same first decision
    for k in ("offset", "microvolts"):
        common = sorted(set(logs[k]) & set(logs["clean"]), key=int)
        assert len(common) > 30
        worst = max(abs(logs[k][i][c] - logs["clean"][i][c]) for i in common for c in logs[k][i])
        assert worst < 1e-3, (k, worst)


@pytest.mark.slow
def test_wrong_units_are_refused_or_caught_by_the_amplitude_check(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(6 * sfreq)]
    declared = replay_file(tmp_path, "uv", data * 1e6, ch_names, sfreq, units="uV")
    refuse = bmi("serve", str(exported.path), "--input", f"replay:{declared}", "--output", "udp://127.0.0.1:9",
                 "--no-status", "--on-unit-mismatch", "refuse")
    code, _, err = wait(refuse, 30)
    assert code == 1 and "The stream is in uV, the model in V" in err
    tesla = replay_file(tmp_path, "tesla", data, ch_names, sfreq, units="fT")
    code, _, err = wait(bmi("serve", str(exported.path), "--input", f"replay:{tesla}", "--output", "udp://127.0.0.1:9",
                            "--no-status"), 30)
    assert code == 1 and "'fT' measures T, not V" in err
    undeclared = replay_file(tmp_path, "uv_silent", data * 1e6, ch_names, sfreq)  # microvolts, says nothing
    stats = tmp_path / "stats.json"
    code, _, err = wait(bmi("serve", str(exported.path), "--input", f"replay:{undeclared}", "--output",
                            f"udp://127.0.0.1:{free_port()}", "--no-status", "--duration", "5.5", "--check-seconds", "1",
                            "--stats", str(stats)), 30)
    assert code == 0, err
    result = json.loads(stats.read_text())
    assert result["decisions"] == 0 and not result["amplitude"]["passed"]
    assert result["amplitude"]["ratio_min"] > 1e5 and result["events"]["amplitude_mismatch"] >= 2
    assert "amplitude check failed on 64 of 64 channels" in err and "Wrong units or gain" in err


# -- outputs, log --------------------------------------------------------------------------------------------------


def test_a_failing_output_and_a_failing_log_stop_nothing(exported, recording_array, tmp_path):
    """A serial hand that vanishes mid-session (its pty closed), a TCP controller that never reads, and a full disk
    for the session log: the UDP controller still receives every message, the last one the safe stop."""
    data, ch_names, sfreq, _ = recording_array
    replay = replay_file(tmp_path, "rec", data[:, : int(8 * sfreq)], ch_names, sfreq)
    master, slave = os.openpty()
    stuck = socket.create_server(("127.0.0.1", 0))
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    udp, stats = UDPListener(), tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"replay:{replay}", "--output", f"serial:{os.ttyname(slave)}",
                 "--output", f"tcp://127.0.0.1:{stuck.getsockname()[1]}", "--output", f"udp://127.0.0.1:{udp.port}",
                 "--log", "/dev/full", "--stats", str(stats), "--duration", "6", "--no-status", "--hop-ms", "20")
    conn, _ = stuck.accept()  # accepted, never read
    time.sleep(3.5)
    os.close(master)  # the serial hand goes away
    os.close(slave)
    code, _, err = wait(server, 30)
    messages = udp.close()
    conn.close()
    stuck.close()
    assert code == 0, err
    assert [m["seq"] for m in messages] == list(range(1, len(messages) + 1))  # every message, none lost
    assert messages[-1]["type"] == "stop" and messages[-1]["safe"] and messages[-1]["action"] == "hold"
    result = json.loads(stats.read_text())
    by_output = {o["output"].split(":")[0]: o for o in result["outputs"]}
    assert by_output["serial"]["failed"] > 0 and by_output["udp"]["failed"] == 0
    assert result["decisions"] > 100 and result["latency_ms"]["p99"] < 20  # nothing waited on a stuck device
    assert "No space left on device" in result["session_log"]["error"] and "decoding goes on" in err


# -- TCP input --------------------------------------------------------------------------------------------------


def test_a_reconnecting_client_restarts_the_pipeline_instead_of_splicing(exported, recording_array, tmp_path):
    """Client 1 streams 4 s and drops; client 2 connects at once with other data. Every decision after the
    reconnection equals the offline reference on client 2's data alone (filters from its first sample)."""
    data, ch_names, sfreq, _ = recording_array
    first, second = data[:, : int(4 * sfreq)], data[:, int(20 * sfreq) : int(27 * sfreq)]
    port, log, stats = free_port(), tmp_path / "s.csv", tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--stats", str(stats), "--duration", "10",
                 "--no-status", "--smoothing", "none")
    with connect(port) as sock:  # 40 ms frames at twice real time: every window fresh
        send_recording(sock, first, ch_names, sfreq, [10], pace=5 / sfreq)
    with connect(port) as sock:
        send_recording(sock, second, ch_names, sfreq, [10], pace=5 / sfreq)
        time.sleep(0.3)
    code, _, err = wait(server, 30)
    assert code == 0, err
    n_first = first.shape[1]
    later = [r for r in decisions_of(log) if int(r["sample_index"]) > n_first]
    assert len(later) > 20
    meta = read_model_metadata(exported.path)
    settle_in = meta["preprocessing"]["settle_seconds"] * sfreq
    assert int(later[0]["sample_index"]) - n_first >= settle_in + meta["window"]["n_times"] * meta["preprocessing"]["decim"]
    assert_matches_offline(later, meta, second, exported.path, start_index=n_first)
    assert json.loads(stats.read_text())["events"]["stream_connections"] == 1


@pytest.mark.slow
def test_hello_timeout_token_and_refusals_leave_the_slot_free(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    port, stats = free_port(), tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--no-status", "--duration", "9", "--stats", str(stats),
                 "--token", "s3cret", "--hello-timeout", "1")
    silent = connect(port)  # connects and never says hello: may not hold the input
    replies = []
    for hello in (encode_hello(ch_names, 0.0, "s3cret"), encode_hello(ch_names, sfreq, "guess")):
        with connect(port) as sock:
            sock.sendall(hello)
            sock.settimeout(5)
            replies.append(json.loads(sock.recv(4096).decode().splitlines()[0])["error"])
    assert "sampling rate 0 Hz" in replies[0] and replies[1] == "wrong or missing token"
    with connect(port) as sock:
        send_recording(sock, data[:, : int(5 * sfreq)], ch_names, sfreq, [25], token="s3cret", pace=0.1)
    code, _, err = wait(server, 30)
    silent.close()
    assert code == 0, err
    result = json.loads(stats.read_text())
    assert result["decisions"] > 20
    assert result["events"]["tcp_hello_timeout"] == 1 and result["events"]["bad_token"] == 1
    assert result["events"]["tcp_client_refused"] == 1


def _fuzz_frames(rng, ch_names, sfreq):
    """Frames with valid headers and wrong contents: lengths, types, hellos, timestamps, channel counts."""
    n = len(ch_names)
    good_hello = encode_hello(ch_names, sfreq)
    data = rng.standard_normal((n, 10)).astype("<f4")
    def frame(kind, n_chans, n_samples, ts, payload, length=None):
        return HEADER.pack(b"BMI1", kind, 0, n_chans, n_samples, ts, len(payload) if length is None else length) + payload
    def hello(obj):
        body = json.dumps(obj).encode() if not isinstance(obj, bytes) else obj
        return frame(ord("H"), n, 0, 0.0, body)
    cases = [
        good_hello + frame(ord("D"), n, 10, 1.0, data.T.tobytes(), length=4 * n * 10 - 4),   # short length
        good_hello + frame(ord("D"), n, 10, 1.0, data.T.tobytes(), length=4 * n * 11),       # long length
        good_hello + frame(ord("D"), n - 1, 10, 1.0, data[:-1].T.tobytes()),                # other channel count
        good_hello + frame(ord("X"), n, 10, 1.0, data.T.tobytes()),                          # unknown type
        good_hello + frame(ord("D"), n, 10, float("nan"), data.T.tobytes()),                 # NaN timestamp
        good_hello + frame(ord("D"), n, 10, float("inf"), data.T.tobytes()),                 # inf timestamp
        good_hello + frame(ord("D"), n, 1 << 30, 1.0, b"", length=1 << 31),                  # oversized
        frame(ord("D"), n, 10, 1.0, data.T.tobytes()),                                       # data before hello
        hello(b"\xff\xfe not utf-8"), hello(b"{not json"), hello([1, 2, 3]),
        hello({"ch_names": "C3", "sfreq": sfreq}), hello({"ch_names": ch_names, "sfreq": "fast"}),
        hello({"ch_names": ch_names}), hello({"ch_names": ch_names, "sfreq": sfreq, "units": ["uV"]}),
        hello({"ch_names": ch_names + ["X1"] * 5000, "sfreq": sfreq}),
        hello({"ch_names": ch_names[::-1], "sfreq": sfreq * 2}), hello({"ch_names": [], "sfreq": sfreq}),
        good_hello[:30],                                                                      # truncated, then closed
        good_hello + encode_data(np.full((n, 10), np.nan, np.float32), 2.0),                 # NaN samples
    ]
    order = rng.permutation(len(cases) * 3) % len(cases)
    return [cases[i] for i in order]


@pytest.mark.slow
def test_frame_fuzzer_with_valid_headers_never_stops_the_server(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    port, stats = free_port(), tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{port}", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--no-status", "--duration", "12", "--stats", str(stats))
    cases = _fuzz_frames(np.random.default_rng(0), ch_names, sfreq)
    for payload in cases:
        with connect(port) as sock:
            try:
                sock.sendall(payload)
                time.sleep(0.02)
            except OSError:
                pass  # the server may drop the client mid-send
    with connect(port) as sock:  # after all that, a valid client is decoded
        send_recording(sock, data[:, : int(5 * sfreq)], ch_names, sfreq, [25], pace=0.1)
    code, _, err = wait(server, 30)
    assert code == 0, err
    result = json.loads(stats.read_text())
    assert result["decisions"] > 20
    events = result["events"]
    assert events["malformed_frame"] >= 20 and events["tcp_client_refused"] >= 6 and events.get("nonfinite", 0) >= 1


# -- LSL resolution, classes to actions, renaming, alignment --------------------------------------------------


@pytest.mark.slow
def test_two_lsl_streams_with_one_name_are_refused_unless_one_is_chosen(exported, recording_array, tmp_path):
    import pylsl

    data, ch_names, sfreq, _ = recording_array
    name = f"bmi-twins-{time.monotonic_ns()}"
    outlets = []
    for source in ("amp-A", "amp-B"):
        info = pylsl.StreamInfo(name, "EEG", len(ch_names), sfreq, "float32", source)
        channels = info.desc().append_child("channels")
        for ch in ch_names:
            channels.append_child("channel").append_child_value("label", ch)
        outlets.append(pylsl.StreamOutlet(info))
    code, _, err = wait(bmi("serve", str(exported.path), "--input", f"lsl:{name}", "--output", "udp://127.0.0.1:9",
                            "--no-status"), 30)
    assert code == 1 and f"2 LSL streams are named {name!r}" in err and "'amp-A'" in err and "'amp-B'" in err
    stats = tmp_path / "stats.json"
    server = bmi("serve", str(exported.path), "--input", f"lsl:{name}?source_id=amp-B", "--output",
                 f"udp://127.0.0.1:{free_port()}", "--no-status", "--duration", "3", "--stats", str(stats))
    assert outlets[1].wait_for_consumers(20) and not outlets[0].have_consumers()
    for i in range(100):
        outlets[1].push_chunk(data[:, i * 5 : (i + 1) * 5].T.copy())
        time.sleep(0.02)
    code, _, err = wait(server, 30)
    assert code == 0, err
    assert json.loads(stats.read_text())["samples_received"] >= 400


@pytest.mark.slow
def test_classes_without_a_hand_action_must_be_mapped(exported, recording_array, tmp_path):
    data, ch_names, sfreq, _ = recording_array
    model = model_variant(exported, tmp_path, "lr", lambda m: m.update(classes=["left", "right", "rest"]))
    replay = replay_file(tmp_path, "rec", data[:, : int(5 * sfreq)], ch_names, sfreq)
    code, _, err = wait(bmi("serve", str(model), "--input", f"replay:{replay}", "--output", "udp://127.0.0.1:9",
                            "--no-status"), 30)
    assert code == 1 and "classes ['left', 'right'] have no hand action" in err and "--action left=open" in err
    udp, stats = UDPListener(), tmp_path / "stats.json"
    code, _, err = wait(bmi("serve", str(model), "--input", f"replay:{replay}", "--output", f"udp://127.0.0.1:{udp.port}",
                            "--action", "left=open", "--action", "right=grasp", "--no-status", "--duration", "4.5",
                            "--stats", str(stats)), 30)
    messages = udp.close()
    assert code == 0, err
    decided = [m for m in messages if m["type"] == "decision"]
    assert decided and all(m["action"] == {"left": "open", "right": "grasp", "rest": "hold"}[m["command"]] for m in decided)
    assert json.loads(stats.read_text())["actions"] == {"left": "open", "right": "grasp", "rest": "hold"}


@pytest.mark.slow
def test_euclidean_alignment_on_the_rig(exported, recording_array, tmp_path):
    """Unknown --subject refused at start with the known ones; --align-seconds estimates a new subject's matrix
    from the first seconds (decisions withheld meanwhile) exactly as training would on those data, saves it, and
    --alignment reloads it."""
    from datasets.dsp import alignment_matrix

    data, ch_names, sfreq, _ = recording_array
    n = len(ch_names)
    model = model_variant(exported, tmp_path, "ea", lambda m: m["normalization"].update(
        alignment={"01": np.eye(n).tolist(), "02": (2 * np.eye(n)).tolist()}))
    replay = replay_file(tmp_path, "rec", data[:, : int(8 * sfreq)], ch_names, sfreq)
    base = ["serve", str(model), "--input", f"replay:{replay}", "--no-status"]
    code, _, err = wait(bmi(*base, "--output", "udp://127.0.0.1:9", "--subject", "03"), 30)
    assert code == 1 and "'--subject' ('03') is not a training subject of the model; known: ['01', '02']" in err
    code, _, err = wait(bmi(*base, "--output", "udp://127.0.0.1:9"), 30)
    assert code == 1 and "choose --subject S" in err and "--align-seconds N" in err

    saved, log = tmp_path / "align.json", tmp_path / "s.csv"
    code, _, err = wait(bmi(*base, "--output", f"udp://127.0.0.1:{free_port()}", "--align-seconds", "4",
                            "--save-alignment", str(saved), "--log", str(log), "--duration", "7"), 40)
    assert code == 0, err
    meta = read_model_metadata(model)
    settle_out = int(np.ceil(meta["preprocessing"]["settle_seconds"] * sfreq / meta["preprocessing"]["decim"]))
    n_align, n_times = int(4 * meta["sfreq"]), meta["window"]["n_times"]
    reference = offline_reference(meta, data[:, : int(8 * sfreq)])[:, settle_out : settle_out + n_align]
    windows = reference[:, : (n_align // n_times) * n_times].reshape(n, -1, n_times).transpose(1, 0, 2)
    got = np.asarray(json.loads(saved.read_text())["matrix"])
    np.testing.assert_allclose(got, alignment_matrix(windows), rtol=1e-3, atol=1e-3 * np.abs(got).max())
    first = min(int(r["sample_index"]) for r in decisions_of(log))
    assert first >= (settle_out + n_align) * meta["preprocessing"]["decim"]  # withheld while aligning
    # every decision after it is the model on windows aligned by that matrix, the first ones included, whose
    # samples arrived before the estimate (the server normalises samples as they arrive, and again then)
    session_norm = dict(meta, normalization=dict(meta["normalization"], alignment={"session": got.tolist()}))
    assert_matches_offline(decisions_of(log), session_norm, data[:, : int(8 * sfreq)], model)
    code, out, err = wait(bmi(*base, "--output", f"udp://127.0.0.1:{free_port()}", "--alignment", str(saved),
                              "--duration", "4"), 40)
    assert code == 0, err
    result = json.loads(out.splitlines()[-1])
    assert result["alignment"] == f"file {saved}" and result["decisions"] > 0


@pytest.mark.parametrize("guard", ["jump", pytest.param("artifact", marks=pytest.mark.slow)])
def test_a_dc_step_mid_session_is_never_decoded(guard, exported, recording_array, tmp_path):
    """An electrode pop: +20 mV on every channel from 4 s on. The band-pass rings at hundreds of times the EEG;
    no decision may use a window that holds the ringing (the filters' settling time after the step). The jump
    detector restarts the filters at the new level; without it the artifact check holds the ringing windows."""
    data, ch_names, sfreq, _ = recording_array
    data = data[:, : int(9 * sfreq)].copy()
    step = int(4 * sfreq)
    data[:, step:] += 20e-3
    log, stats = tmp_path / "s.csv", tmp_path / "stats.json"
    code, _, err = wait(bmi("serve", str(exported.path), "--input", f"replay:{replay_file(tmp_path, 'step', data, ch_names, sfreq)}",
                            "--output", f"udp://127.0.0.1:{free_port()}", "--log", str(log), "--stats", str(stats),
                            "--duration", "8.5", "--no-status", *(["--jump-ratio", "0"] if guard == "artifact" else [])), 40)
    assert code == 0, err
    meta = read_model_metadata(exported.path)
    window_in = meta["window"]["n_times"] * meta["preprocessing"]["decim"]
    settle_in = meta["preprocessing"]["settle_seconds"] * sfreq
    indices = [int(r["sample_index"]) for r in decisions_of(log)]
    assert any(i <= step for i in indices) and any(i >= step + window_in for i in indices)  # before and after
    assert not [i for i in indices if step < i < step + settle_in + window_in]  # nothing holding the ringing
    withheld = json.loads(stats.read_text())["withheld_hops"]
    assert withheld["jump"] == 1 if guard == "jump" else withheld["artifact"] > 10


def test_a_rehearsal_aligns_each_recording_as_the_server_does(exported, recording_array, tmp_path):
    """`bmi rehearse` / decode_recording on a model with per-subject alignment: refused without a choice, as the
    server refuses; with --align-seconds the windows are aligned by the matrix of the recording's own first
    seconds (the offline reference's, as training estimates it), no decision before, and cues from before the
    first decision are not scored."""
    import mne
    import yaml

    from datasets.dsp import alignment_matrix
    from exports.runtime.alignment import AlignmentPlan, choose_alignment
    from exports.runtime.closed_loop import decode_recording

    data, ch_names, sfreq, path = recording_array
    n = len(ch_names)
    model = model_variant(exported, tmp_path, "ea", lambda m: m["normalization"].update(
        alignment={"01": np.eye(n).tolist(), "02": (2 * np.eye(n)).tolist()}))
    meta = read_model_metadata(model)
    data = data[[ch_names.index(c) for c in meta["preprocessing"]["ch_names"]], : int(12 * sfreq)]
    with pytest.raises(ValueError, match="choose --subject S"):
        decode_recording(model, data)

    everything = decode_recording(model, data, alignment=choose_alignment(meta, None, 4.0, None))
    estimated = everything.decided()
    assert "aligning" in everything.reason and set(everything.action[: everything.reason.index("")]) == {"hold"}
    decim, n_times = meta["preprocessing"]["decim"], meta["window"]["n_times"]
    settle_out = int(np.ceil(meta["preprocessing"]["settle_seconds"] * sfreq / decim))
    n_align = int(4 * meta["sfreq"])
    assert estimated.t[0] >= (settle_out + n_align) * decim / sfreq  # withheld while aligning
    assert estimated.alignment.source == "estimated from the session's first 4 s"
    reference = offline_reference(meta, data)[:, settle_out : settle_out + n_align]
    windows = reference[:, : (n_align // n_times) * n_times].reshape(len(reference), -1, n_times).transpose(1, 0, 2)
    matrix = alignment_matrix(windows)
    np.testing.assert_allclose(estimated.alignment.matrix, matrix, rtol=1e-3, atol=1e-3 * np.abs(matrix).max())
    known = decode_recording(model, data, alignment=AlignmentPlan(matrix, "reference")).decided()
    identity = decode_recording(model, data, alignment=choose_alignment(meta, "01", None, None)).decided()
    same = known.t >= estimated.t[0]
    np.testing.assert_array_equal(known.t[same], estimated.t)
    np.testing.assert_allclose(estimated.probabilities, known.probabilities[same], atol=1e-4)
    assert np.abs(identity.probabilities[same] - estimated.probabilities).max() > 1e-2  # the matrix matters

    config = tmp_path / "cued.yaml"
    config.write_text(yaml.safe_dump({"data": {"files": [str(path)], "events": {c: c for c in ("rest", "grasp", "open")}}}))
    code, _, err = wait(bmi("rehearse", str(model), "--data", str(config)), 60)
    assert code == 1 and "choose --subject S" in err and "--align-seconds N" in err
    code, out, err = wait(bmi("rehearse", str(model), "--data", str(config), "--align-seconds", "4", "--json"), 120)
    assert code == 0, err
    row = json.loads(out.splitlines()[-1])["rows"][0]
    raw = mne.io.read_raw(path, verbose="error")
    onsets = raw.annotations.onset - (raw.first_time if raw.annotations.orig_time is not None else 0.0)
    assert row["alignment"] == ["estimated from the session's first 4 s"]
    assert row["cues_unscored"] == sum(o < estimated.t[0] for o in onsets) > 0
