"""Only the operator's own page controls the rig: every console route, over raw HTTP, refuses a rebound Host,
a missing or foreign Origin and a missing or wrong secret; the secret is drawn when none is given, read from
the environment or a file, and never on a command line; bad bodies are answered 400 with the reason; and a
resume after an emergency stop starts from hold (ungated and gated)."""

import os
import re
import time
from pathlib import Path

import pytest

from runtime_helpers import bmi, connect, free_port, send_data, wait
from exports.runtime.protocol import encode_hello

SECRET = "console-secret-of-this-test-0123"

# (method, path, JSON body, needs same-origin proof)
ROUTES = [
    ("GET", "/events", None, True),
    ("POST", "/api/control/estop", {}, True),
    ("POST", "/api/control/resume", {"confirm": True}, True),
    ("POST", "/api/control/mark", {"label": "x"}, True),
    ("POST", "/api/cue", {"label": None, "seconds": 0}, True),
    ("POST", "/api/paradigm", {"classes": ["rest"], "trials": 1, "cue_s": 0.1, "rest_s": 0}, True),
    ("POST", "/api/paradigm/stop", {}, True),
    ("GET", "/api/runs", None, True),
    ("GET", "/runs", None, False),
    ("GET", "/runs/report/no-such-study", None, False),  # a study's report, opened as a link in a new tab
    ("GET", "/cue", None, False),
]


def start_console(runs: Path, *extra, env=None):
    port = free_port()
    proc = bmi("console", "--runs", str(runs), "--listen", f"127.0.0.1:{port}", *extra,
               env=env if env is not None else dict(os.environ, BMI_CONSOLE_TOKEN=SECRET))
    return proc, port


def wait_until_up(base: str, proc, timeout: float = 30.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            httpx.get(base + "/static/console.css", timeout=2)
            return
        except httpx.HTTPError:
            assert time.monotonic() < deadline, "the console did not start"
            time.sleep(0.2)


def request(client, method, base, path, body, headers):
    if path == "/events":  # a stream: the status line is enough
        with client.stream("GET", base + path, headers=headers, timeout=5) as response:
            return response.status_code
    return client.request(method, base + path, json=body, headers=headers, timeout=5).status_code


def test_every_route_refuses_a_rebound_host_a_foreign_or_missing_origin_and_a_wrong_secret(trained_run):
    import httpx

    proc, port = start_console(trained_run.parent)
    base = f"http://127.0.0.1:{port}"
    wait_until_up(base, proc)
    own = {"X-BMI-Token": SECRET, "Origin": base}
    try:
        with httpx.Client() as client:
            for method, path, body, proof in ROUTES:
                def status(headers):
                    return request(client, method, base, path, body, headers)

                assert status(own | {"Host": f"attacker.example:{port}",  # DNS rebinding: the page's own name
                                     "Origin": f"http://attacker.example:{port}"}) == 400, path
                assert status({"Origin": base}) == 403, path  # no secret
                assert status({"X-BMI-Token": SECRET[:-1] + "x", "Origin": base}) == 403, path  # a wrong one
                if proof:
                    assert status({"X-BMI-Token": SECRET}) == 403, path  # no Origin: refused, not trusted
                    assert status(own | {"Origin": "http://attacker.example"}) == 403, path
                    assert status(own | {"Origin": f"http://localhost:{port + 1}"}) == 403, path  # another port
                    assert status({"X-BMI-Token": SECRET, "Sec-Fetch-Site": "same-origin"}) not in (400, 403), path
                    assert status({"X-BMI-Token": SECRET, "Sec-Fetch-Site": "cross-site"}) == 403, path
                assert status(own) not in (400, 403), path  # the operator's own page
                assert status(own | {"Host": f"localhost:{port}", "Origin": f"http://localhost:{port}"}) not in (400, 403)

            # a page opened with ?token= sets an HttpOnly, SameSite=Strict cookie and drops the token from the URL
            opened = client.get(base + "/runs?token=" + SECRET, follow_redirects=False)
            assert opened.status_code == 303 and opened.headers["location"] == "/runs"
            cookie = opened.headers["set-cookie"].lower()
            assert f"bmi_console_{port}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie
            jar = {f"bmi_console_{port}": SECRET}
            assert client.get(base + "/runs", cookies=jar).status_code == 200
            assert client.get(base + "/api/runs", cookies=jar, headers={"Origin": base}).json()["runs"]
            client.cookies.clear()
            assert client.get(base + "/runs?token=wrong", follow_redirects=False).status_code == 403
            assert client.get(base + "/runs").status_code == 403

            # bad bodies: 400 with the reason, and the console goes on
            for path, raw in [("/api/cue", "[1, 2]"), ("/api/cue", "not json"), ("/api/control/mark", "[]"),
                              ("/api/paradigm", "5"), ("/api/cue", '{"seconds": "soon"}')]:
                reply = client.post(base + path, content=raw, headers=own | {"Content-Type": "application/json"})
                assert reply.status_code == 400 and reply.json()["message"], (path, raw)
            assert client.post(base + "/api/cue", json={"label": None}, headers=own).status_code == 200
        cmdline = Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode()
        assert SECRET not in cmdline  # what every user sees in ps
    finally:
        proc.terminate()
        wait(proc, 10)


def test_a_secret_is_drawn_when_none_is_given_and_read_from_a_file(trained_run, tmp_path):
    import httpx

    env = {k: v for k, v in os.environ.items() if k != "BMI_CONSOLE_TOKEN"}
    proc, port = start_console(trained_run.parent, env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        line = proc.stdout.readline()  # shown once, as the URL to open
        drawn = re.search(r"/runs\?token=(\S+)", line).group(1)
        assert len(drawn) >= 24
        wait_until_up(base, proc)
        assert httpx.get(base + "/api/runs", headers={"X-BMI-Token": drawn, "Origin": base}).status_code == 200
        assert httpx.get(base + "/api/runs", headers={"Origin": base}).status_code == 403
    finally:
        proc.terminate()
        wait(proc, 10)
    again, port = start_console(trained_run.parent, env=env)
    try:
        assert re.search(r"token=(\S+)", again.stdout.readline()).group(1) != drawn  # a new one each session
    finally:
        again.terminate()
        wait(again, 10)

    secret_file = tmp_path / "console.secret"
    secret_file.write_text("a-secret-kept-in-a-file-0001\n")
    proc, port = start_console(trained_run.parent, "--token-file", str(secret_file), env=env)
    base = f"http://127.0.0.1:{port}"
    try:
        assert "token=" not in proc.stdout.readline()  # given, so not shown
        wait_until_up(base, proc)
        headers = {"X-BMI-Token": "a-secret-kept-in-a-file-0001", "Origin": base}
        assert httpx.get(base + "/api/runs", headers=headers).status_code == 200
    finally:
        proc.terminate()
        wait(proc, 10)
    secret_file.write_text("short")
    code, _, err = wait(bmi("console", "--runs", str(trained_run.parent), "--token-file", str(secret_file),
                            "--listen", f"127.0.0.1:{free_port()}", env=env), 30)
    assert code == 1 and "at least 16 characters" in err
    code, _, err = wait(bmi("console", "--runs", str(trained_run.parent), "--listen", "0.0.0.0:9", env=env), 30)
    assert code == 1 and "needs --allow-remote" in err


def _stream_and_serve(exported, recording_array, tmp_path, extra):
    """`bmi serve` on a real-time TCP stream of the recording, with the console; every class mapped to grasp and
    the safe command "hold" (no class), so every decision that is not holding moves the hand, whatever the
    (barely trained) decoder prefers."""
    import socket

    data, ch_names, sfreq, _ = recording_array
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.05)
    in_port, console_port = free_port(), free_port()
    classes = ["rest", "grasp", "open"]
    server = bmi("serve", str(exported.path), "--input", f"tcp://127.0.0.1:{in_port}", "--output",
                 f"udp://127.0.0.1:{udp.getsockname()[1]}", "--console", f"127.0.0.1:{console_port}",
                 "--duration", "40", "--no-status", "--dwell-ms", "400", "--safe-command", "hold", *extra,
                 "--log", str(tmp_path / "session.csv"),
                 *[a for c in classes for a in ("--action", f"{c}=grasp")],
                 env=dict(os.environ, BMI_CONSOLE_TOKEN=SECRET))
    return server, udp, in_port, console_port, data, ch_names, sfreq


@pytest.mark.parametrize("gate", [[], ["--gate-rest-class", "rest", "--gate-threshold", "0.05",
                                       "--gate-hysteresis", "0.05", "--gate-dwell-ms", "400"]],
                         ids=["ungated", "rest-gated"])
def test_resume_after_an_emergency_stop_starts_from_hold(exported, recording_array, tmp_path, gate):
    """Stopped while the hand is commanded to move; a rebound or origin-less resume is refused; the operator's
    resume then holds for the whole dwell (400 ms of stream time) before the first movement."""
    import json
    import threading

    import httpx

    server, udp, in_port, port, data, ch_names, sfreq = _stream_and_serve(exported, recording_array, tmp_path, gate)
    base, messages, stop = f"http://127.0.0.1:{port}", [], threading.Event()

    def receive():
        while not stop.is_set():
            try:
                messages.append(json.loads(udp.recv(65536)))
            except OSError:
                continue

    def control(action, headers=None, **body):
        return httpx.post(f"{base}/api/control/{action}", json=body, timeout=5,
                          headers=headers if headers is not None else {"X-BMI-Token": SECRET, "Origin": base})

    def decisions(since=0):
        return [m for m in messages[since:] if m["type"] == "decision"]

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    sock = connect(in_port)
    sender_stop = threading.Event()

    def send():  # real time, 20 ms frames
        sock.sendall(encode_hello(list(ch_names), sfreq))
        frame, pos, t0 = int(sfreq * 0.02), 0, time.monotonic()
        while not sender_stop.is_set() and pos + frame <= data.shape[1]:
            send_data(sock, data[:, pos : pos + frame], sfreq, [frame], start=pos)
            pos += frame
            time.sleep(max(0.0, t0 + pos / sfreq - time.monotonic()))

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    try:
        deadline = time.monotonic() + 30
        while not (decisions() and decisions()[-1]["action"] == "grasp"):  # moving now
            assert time.monotonic() < deadline and server.poll() is None, ("no movement command before the stop", messages[-3:])
            time.sleep(0.01)
        # the operator stops the session log and starts another: the first is kept, never overwritten
        assert control("log_stop").json()["ok"]
        restarted = control("log_start").json()
        assert restarted["ok"] and restarted["message"].endswith("session-2.csv") and restarted["log_active"]
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(3) as pool:  # a double-clicked stop: each click gets its own acknowledgement
            replies = list(pool.map(lambda _: control("estop").json(), range(3)))
        assert all(r["ok"] and r["estop"] for r in replies), replies
        time.sleep(0.5)
        stopped = len(messages)
        rebound = control("resume", {"X-BMI-Token": SECRET, "Host": f"attacker.example:{port}",
                                     "Origin": f"http://attacker.example:{port}"}, confirm=True)
        assert rebound.status_code == 400
        assert control("resume", {"X-BMI-Token": SECRET}, confirm=True).status_code == 403  # no Origin
        time.sleep(0.5)
        assert not decisions(stopped)  # still stopped: only safe heartbeats
        resumed = len(messages)
        assert control("resume", confirm=True).json()["ok"]
        deadline = time.monotonic() + 15
        while not [d for d in decisions(resumed) if d["action"] == "grasp"]:
            assert time.monotonic() < deadline, "the hand never moved again after the resume"
            time.sleep(0.02)
        after = decisions(resumed)
        first = after[0]["sample_index"]
        moving = next(d for d in after if d["action"] == "grasp")
        # the full dwell in stream time from hold: 400 ms of samples after the first decision of the restart
        assert moving["sample_index"] - first >= 0.4 * sfreq - 1, (first, moving)
        assert all(d["action"] == "hold" for d in after if d["sample_index"] - first < 0.4 * sfreq - 1)
        children = [p for p in os.listdir("/proc") if p.isdigit()]
        for pid in children:  # neither the server nor its console child carries the secret in its arguments
            try:
                assert SECRET not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
            except (FileNotFoundError, PermissionError, ProcessLookupError):
                continue
    finally:
        sender_stop.set()
        stop.set()
        server.send_signal(2)
        code, _, err = wait(server, 30)
        sock.close()
        udp.close()
    assert code == 0, err[-2000:]
    import csv

    first, second = (list(csv.DictReader((tmp_path / name).open())) for name in ("session.csv", "session-2.csv"))
    assert [r for r in first if r["type"] == "decision"] and [r for r in second if r["type"] == "decision"]
    assert int(second[0]["seq"]) > int(first[-1]["seq"])  # one session, two files, nothing written twice
