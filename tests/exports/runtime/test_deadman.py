"""The controller contract (exports/runtime/outputs.py): a controller that hears nothing for the announced
timeout holds, drops messages older than the newest of their session, and starts afresh on a new session.
Real processes on loopback: `bmi rig` against raw datagrams, and against a `bmi serve` that is SIGKILLed."""

import csv
import json
import os
import signal
import socket
import time

import pytest

from exports.runtime.outputs import DEFAULT_TIMEOUT_MS, controller_timeout_ms
from exports.runtime.protocol import encode_data, encode_hello
from exports.runtime.rig import Link
from exports.runtime.safety import SafetyConfig
from exports.runtime.server import ServeConfig

from runtime_helpers import bmi, connect, free_port, wait

# the rig polls every 20 ms; a loaded 2-core machine (training, other tests) may delay it or the kill this much
TOLERANCE_S = 0.3


def _message(seq, session="A", **fields):
    return {"type": "decision", "seq": seq, "session": session, "command": "grasp", "action": "grasp",
            "level": 1.0, **fields}


def test_the_link_drops_old_seqs_starts_a_new_session_afresh_and_times_out_once():
    link, t = Link(300), 100.0
    assert link.admit(_message(1), t) and link.admit(_message(2), t)
    assert not link.admit(_message(2), t)  # a duplicate
    assert not link.admit(_message(1), t)  # overtaken by a newer one
    assert link.admit(_message(5), t)  # seq may skip
    assert link.admit(_message(1, "B"), t)  # a restarted server counts from 1 again: never dropped
    assert not link.admit(_message(6, "A"), t)  # a late message of the run left behind
    assert link.admit(_message(2, "B", timeout_ms=450), t)  # the sender announces its timeout
    assert link.out_of_order == 3 and link.timeout_ms == 450
    assert link.expired(t + 0.449) is None
    event = link.expired(t + 0.451)
    assert event is not None and event["last_seq"] == 2 and event["session"] == "B" and event["timeout_ms"] == 450
    assert link.expired(t + 5.0) is None and link.timeouts == 1  # once per silence
    assert link.admit(_message(3, "B", type="stop"), t + 6.0)
    assert link.expired(t + 60.0) is None  # the server's last word: silence after it is no fault
    # without a session, a silence ends the sender's run: its restart (seq 1 again) is accepted
    plain = Link(100)
    assert plain.admit({"seq": 7}, t) and plain.expired(t + 0.2) is not None and plain.admit({"seq": 1}, t + 0.3)
    with pytest.raises(ValueError, match=r"'seq' \('3'\) must be an integer"):
        link.admit(_message("3", "B"), t)
    with pytest.raises(ValueError, match=r"'timeout_ms' \(0\) must be a positive number"):
        link.admit(_message(9, "B", timeout_ms=0), t)
    with pytest.raises(ValueError, match=r"'--timeout-ms' \(-1\) must be a positive number"):
        Link(-1)
    # the rig's default is what bmi serve announces with its defaults: stale_ms 250 + 2 hops of 50 + 100 ms
    assert DEFAULT_TIMEOUT_MS == controller_timeout_ms(SafetyConfig().stale_ms, ServeConfig().hop_ms) == 450
    with pytest.raises(ValueError, match=r"'hop_ms' \(0\) must be a positive number of milliseconds"):
        controller_timeout_ms(250, 0)


def test_rig_drops_old_datagrams_and_holds_when_the_sender_falls_silent(tmp_path):
    port, log = free_port(socket.SOCK_DGRAM), tmp_path / "rig.csv"
    rig = bmi("rig", "--listen", f"udp://127.0.0.1:{port}", "--log", str(log), "--timeout-ms", "200",
              "--speed", "0.2", "--duration", "2.5", "--no-status")
    deadline = time.monotonic() + 20
    while not log.exists() and time.monotonic() < deadline:  # the log opens once it listens
        time.sleep(0.02)
    sent = [_message(1), _message(3), _message(2), _message(3),  # 2 overtaken, 3 repeated: both dropped
            _message(1, "B", command="open", action="open"),  # a new run of the server
            _message(4, "A")]  # the old run's late datagram: dropped
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as out:
        for m in sent:
            out.sendto(json.dumps(m).encode() + b"\n", ("127.0.0.1", port))
            time.sleep(0.01)
    sent_at = time.time()
    code, stdout, err = wait(rig, 30)
    assert code == 0, err
    result = json.loads(stdout.splitlines()[-1])
    rows = list(csv.DictReader(log.open()))
    assert [(r["session"], r["seq"], r["action"]) for r in rows] == [("A", "1", "grasp"), ("A", "3", "grasp"),
                                                                      ("B", "1", "open")]
    assert result["messages"] == 3 and result["out_of_order"] == 3 and result["session"] == "B"
    assert result["timeouts"] == 1 and result["timeout_ms"] == 200  # nothing announced: the flag's
    event = result["timeout_events"][0]
    assert event["last_seq"] == 1 and event["t_wall"] - sent_at <= 0.2 + TOLERANCE_S
    assert result["final_aperture"] == pytest.approx(event["aperture"], abs=1e-9)  # it was opening; now it holds
    assert "no message for" in err and "the hand holds" in err


def test_a_killed_server_leaves_the_hand_holding_within_the_timeout(exported, recording_array, tmp_path):
    """`bmi serve` drives `bmi rig` to close the hand (every class mapped to grasp, and the safe command "hold", not
    the rest class, so whichever class wins leaves hold after the dwell); SIGKILL leaves no final safe
    message, so only the rig's timeout can stop the hand. The hand closes slowly (0.05 per second from 0.5) so
    that it is still closing when the server dies and would visibly go on without the timeout."""
    data, ch_names, sfreq, _ = recording_array
    rig_port, in_port, log = free_port(socket.SOCK_DGRAM), free_port(), tmp_path / "rig.csv"
    # the rig's own timeout is 5 s: only the server's announced one (450 ms) can hold the hand in time
    rig = bmi("rig", "--listen", f"udp://127.0.0.1:{rig_port}", "--log", str(log), "--speed", "0.05",
              "--timeout-ms", "5000", "--duration", "90", "--no-status")
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{in_port}", "--output",
                 f"udp://127.0.0.1:{rig_port}", "--action", "rest=grasp,open=grasp", "--safe-command", "hold",
                 "--duration", "90", "--no-status")
    try:
        chunk, pos = 25, 0
        with connect(in_port, timeout=30) as sock:
            sock.sendall(encode_hello(list(ch_names), sfreq))
            t0, deadline = time.monotonic(), time.monotonic() + 60
            while True:  # in real time until the rig has closed on several grasp decisions
                assert pos + chunk <= data.shape[1] and time.monotonic() < deadline, "no grasp decisions reached the rig"
                sock.sendall(encode_data(data[:, pos : pos + chunk], (pos + chunk) / sfreq))
                pos += chunk
                time.sleep(max(0.0, t0 + pos / sfreq - time.monotonic()))
                rows = list(csv.DictReader(log.open())) if log.exists() else []
                grasps = [r for r in rows if r["type"] == "decision" and r["action"] == "grasp"]
                if len(grasps) >= 5 and rows[-1] is grasps[-1]:
                    break
            server.send_signal(signal.SIGKILL)  # no final safe message: the hand keeps its last command
            killed_at = time.time()
            server.wait(10)
        time.sleep(DEFAULT_TIMEOUT_MS / 1000 + TOLERANCE_S + 1.0)  # the timeout, then a second to see it hold
        rig.send_signal(signal.SIGTERM)
        code, stdout, err = wait(rig, 30)
    finally:
        for proc in (server, rig):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
    assert code == 0, err
    result = json.loads(stdout.splitlines()[-1])
    rows = list(csv.DictReader(log.open()))
    last = rows[-1]
    assert last["type"] == "decision" and last["action"] == "grasp" and last["session"]  # closing when it died
    assert result["timeout_ms"] == DEFAULT_TIMEOUT_MS  # announced on every message by the server (not the 5 s)
    assert result["timeouts"] == 1 and result["out_of_order"] == 0
    event = result["timeout_events"][0]
    assert event["last_seq"] == int(last["seq"]) and event["session"] == last["session"]
    silent, after_kill = event["t_wall"] - float(last["t_arrival"]), event["t_wall"] - killed_at
    assert DEFAULT_TIMEOUT_MS / 1000 <= silent, f"held {silent:.3f} s after the last message: before the timeout"
    assert after_kill <= DEFAULT_TIMEOUT_MS / 1000 + TOLERANCE_S, f"held {after_kill:.3f} s after the kill: too late"
    assert 0.0 < event["aperture"] < float(rows[0]["aperture"])  # it was closing and is not closed
    assert result["final_aperture"] == pytest.approx(event["aperture"], abs=1e-9)  # and it stopped there
    assert "the hand holds" in err
