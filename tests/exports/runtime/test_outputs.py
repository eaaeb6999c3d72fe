"""Controller outputs a rig uses: TCP JSON lines, a serial device (a real pseudo-terminal), an LSL marker
outlet; and SIGTERM sends the safe command last."""

import csv
import json
import os
import select
import signal
import socket
import time

import numpy as np

from runtime_helpers import bmi, wait


def _replay_file(recording_array, tmp_path, seconds=30):
    data, ch_names, sfreq, _ = recording_array
    path = tmp_path / "rec.npz"
    np.savez(path, data=data[:, : int(seconds * sfreq)], ch_names=np.array(ch_names), sfreq=sfreq)
    return path


def test_tcp_serial_and_lsl_outputs_then_sigterm(exported, recording_array, tmp_path):
    import pylsl

    replay = _replay_file(recording_array, tmp_path)
    controller = socket.create_server(("127.0.0.1", 0))
    controller.settimeout(10)
    master, slave = os.openpty()
    marker_name = f"bmi-markers-{time.monotonic_ns()}"
    server = bmi("serve", str(exported.path), "--input", f"replay:{replay}",
                 "--output", f"tcp://127.0.0.1:{controller.getsockname()[1]}",
                 "--output", f"serial:{os.ttyname(slave)}?baud=115200",
                 "--output", f"lsl:{marker_name}", "--no-status", "--duration", "30")
    conn, _ = controller.accept()
    conn.settimeout(10)
    markers = pylsl.resolve_byprop("name", marker_name, timeout=10)
    assert markers, "the LSL marker outlet was not found"
    inlet = pylsl.StreamInlet(markers[0])
    inlet.open_stream(timeout=10)
    time.sleep(2.5)  # a window fills and decisions flow
    samples, _ = inlet.pull_chunk(timeout=1.0)  # while the outlet lives (a lost outlet makes liblsl wait)
    inlet.close_stream()
    assert samples and {json.loads(s[0])["type"] for s in samples} & {"safe", "heartbeat", "decision"}
    server.send_signal(signal.SIGTERM)
    code, out, err = wait(server, 30)
    assert code == 0, err

    received = b""
    while chunk := conn.recv(1 << 16):
        received += chunk
    lines = [json.loads(line) for line in received.decode().splitlines()]
    assert any(m["type"] == "decision" for m in lines)
    assert lines[-1]["type"] == "stop" and lines[-1]["command"] == "rest" and lines[-1]["action"] == "hold"
    assert lines[-1]["safe"] is True
    assert [m["seq"] for m in lines] == sorted(m["seq"] for m in lines)

    serial_text = b""
    while select.select([master], [], [], 0.2)[0]:
        serial_text += os.read(master, 1 << 16)
    serial_lines = serial_text.decode("ascii").replace("\r", "").strip().splitlines()
    assert serial_lines[-1].startswith("C,") and serial_lines[-1].endswith(",hold,+0.000,S")
    fields = serial_lines[0].split(",")
    assert len(fields) == 5 and fields[0] == "C" and fields[4] in ("D", "S")

    os.close(master)
    os.close(slave)


def test_remote_addresses_need_a_flag_and_a_token(exported, recording_array, tmp_path):
    replay = _replay_file(recording_array, tmp_path, 2)
    proc = bmi("serve", str(exported.path), "--input", "tcp://0.0.0.0:9", "--output", "udp://127.0.0.1:9", "--no-status")
    code, _, err = wait(proc, 30)
    assert code == 1 and "needs --allow-remote and a shared --token" in err
    proc = bmi("serve", str(exported.path), "--input", f"replay:{replay}", "--output", "udp://10.1.2.3:9000", "--no-status")
    code, _, err = wait(proc, 30)
    assert code == 1 and "needs --allow-remote" in err
    proc = bmi("serve", str(exported.path), "--input", f"replay:{replay}", "--output", "udp://127.0.0.1:9", "--allow-remote")
    code, _, err = wait(proc, 30)
    assert code == 1 and "--allow-remote needs a shared token (--token-file or $BMI_TOKEN)" in err


def test_rig_follows_the_address_policy_and_reports_what_it_ignores(tmp_path):
    code, _, err = wait(bmi("rig", "--listen", "udp://0.0.0.0:9", "--no-status"), 30)
    assert code == 1 and "needs --allow-remote and a shared --token" in err
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    rig = bmi("rig", "--listen", f"udp://127.0.0.1:{port}", "--token", "k3y", "--duration", "6", "--log",
              str(tmp_path / "rig.csv"), "--action", "right=open")
    deadline = time.monotonic() + 20
    while not (tmp_path / "rig.csv").exists() and time.monotonic() < deadline:  # the log opens once it listens
        time.sleep(0.05)
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    messages = [{"type": "decision", "seq": 1, "command": "grasp", "action": "grasp", "level": 1.0, "token": "k3y"},
                {"type": "decision", "seq": 2, "command": "grasp", "action": "grasp", "level": 1.0},  # no token
                {"type": "decision", "seq": 3, "command": "left", "action": "left", "level": 0.0, "token": "k3y"},
                {"type": "decision", "seq": 4, "command": "left", "action": "left", "level": 0.0, "token": "k3y"},
                {"type": "decision", "seq": 5, "command": "right", "level": 0.0, "token": "k3y"}]  # no action: mapped
    for m in messages:
        out.sendto(json.dumps(m).encode() + b"\n", ("127.0.0.1", port))
        time.sleep(0.05)
    out.sendto(b"not json\n", ("127.0.0.1", port))
    code, stdout, err = wait(rig, 30)
    assert code == 0, err
    result = json.loads(stdout.splitlines()[-1])
    assert result["messages"] == 4 and result["bad_token"] == 1 and result["malformed"] == 1
    assert result["unknown_actions"] == {"left": 2}
    rows = list(csv.DictReader((tmp_path / "rig.csv").open()))
    assert [r["action"] for r in rows] == ["grasp", "left", "left", "open"]
    assert "unknown action 'left' (class 'left')" in err and "UNKNOWN ACTIONS {'left': 2}" in err
