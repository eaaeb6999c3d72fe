"""Soak benchmark of the real server: a MEG-scale stream through ``bmi serve`` for N minutes with a schedule
of faults, watching its memory, its latency and what reaches the hand.

An EEGNet with random weights and real metadata (306 channels at 1 kHz, 8-30 Hz band-pass, 250 Hz, 1 s
window; scripts/bench_server.py's ``export_model``) is served by a real ``bmi serve`` process that reads a TCP
stream this script sends in real time (20 ms frames stamped with this computer's monotonic clock, the
protocol of exports/runtime/protocol.py), with the operator console on (``BMI_CONSOLE_TOKEN`` set to a fresh
secret; every console request carries it as ``X-BMI-Token`` with a same-origin ``Origin``). This script is
also the hand controller (UDP, scripts/bench_faults.py's ``Controller``). The classes are mapped explicitly
(``--action``) so that the decoder's decisions are movement commands (grasp / open) on good data.

A cycle of faults repeats through the run, one every ``--fault-every-s`` seconds (default: spread so that
each comes at least once, 12 to 30 s apart), each with its "bad data" (as in bench_faults: the bad samples
plus the band-pass's settling after them) and the answer expected from the server:

- stall_backlog: the sender stops 1 s (the samples are still acquired), then sends the held frames at once
  with their original timestamps, then goes on live. Bad: any window decoded older than --max-age-ms.
  Answer: safe (stale), and nothing of the backlog decoded.
- dc_step: +20 mV on every 10th channel for 3 s. Bad: windows holding either edge or the settling after it.
  Answer: safe (jump).
- nan_burst: 0.2 s of NaN on every 7th channel. Bad: windows holding it or the settling after it. Answer:
  safe (nonfinite).
- reconnect_units: a second client says hello in fT (another quantity: must be refused with an error line),
  and the amplifier reconnects announcing the other unit of the same quantity (V <-> uV, its samples scaled
  to match). Bad: windows spanning the reconnection or the settling after it. Answer: safe
  (new_connection), the fT client refused, decisions again (rescaled: an unscaled stream fails the
  amplitude check).
- misscaled_units: the amplifier reconnects declaring its unit but sending samples 1e6 times larger, and 4 s
  later reconnects correctly. Bad: every window of that connection and the settling after it. Answer: safe,
  and the amplitude (or artifact) check refuses it: never a decision on it.
- estop_resume: emergency stop through the console (``POST /api/control/estop``), 2 s later a resume
  without confirmation (must be refused), then with ``{"confirm": true}``. Bad: any decision the server sent
  after its emergency_stop safe message and before the confirmed resume was requested. Answer: safe
  (emergency_stop), then decisions again.
- sse_clients: console clients open ``GET /events`` and vanish without closing: one resets its connection
  after the first event, one stays connected and never reads again (until the next such fault resets it).
  Answer: decoding goes on (no missed hop) and a fresh client still gets the event stream.
- log_start_stop: the session log started (``log_start``) and 3 s later stopped (``log_stop``). Answer: both
  acknowledged, the log written, decoding goes on.

The report (a table, and a JSON results file written atomically):

- movement commands on bad data (must be 0): decisions whose action is grasp or open and whose window holds
  bad data, was older than --max-age-ms when sent (the age from the true acquisition time this script
  stamped; 5 ms allowed, as bench_faults), or which came during an emergency stop;
- missed hops (must be 0): the server sends one message every hop (a decision, or a safe heartbeat while
  safe). A gap between consecutive messages (the server's send times) longer than 2 hops is a miss, counted
  as (gap - allowance) // hop - 1 hops, where the allowance is the longest pause of the input inside the
  gap, up to --stale-ms (the server cannot tell a pause from a stall before then). The server's decoding
  thread's run-queue wait (/proc/PID/schedstat) is sampled every 10 ms: a gap that would have been within
  2 hops had the server not waited for a CPU is the computer's load (other processes), reported apart;
  the goal counts the others (missed_hops_server);
- memory growth per hour: a linear fit of the server process's resident memory (sampled every
  --memory-every-s, default a minute) against time, after a warm-up minute; the console process's alongside;
- per block of --block-minutes (default 5): decisions, p50 / p99 / max latency (arrival at the controller -
  acquisition of the window's last sample; also to the server's send time, which leaves out this script's
  own receiving), the server's own processing latency, missed hops, bad moves;
- per fault: how many were injected, how many were answered as expected, time to safe (fault onset -> the
  first safe message at the controller), recovery (fault end -> the next decision).

    .venv/bin/python scripts/soak.py --minutes N [--block-minutes 5] [--fault-every-s S]
                                     [--memory-every-s 60] [--out bench_results/soak.json]
                                     [--docs-table] [--docs-dir DIR]

``--docs-table`` also writes the docs' results file ``soak`` (scripts/results_file.py): one row per block, its
decisions, latency, the server's own p99, missed hops, movement commands on bad data and the server's resident
memory (first -> last sample in the block). ``--minutes`` may be a fraction (``--minutes 0.5``: a 30 s soak, one
block; the first fault comes 10 s in and the last 8 s are left to its recovery, so a run of 18 s or less has
none).

Exit status 0 when there were no movement commands on bad data, no missed hops, every fault was answered and
the server exited cleanly; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import results_file  # noqa: E402
from bench_faults import Controller, _connect  # noqa: E402
from bench_server import _free_port, channel_names, export_model, signal_block  # noqa: E402
from exports.runtime.protocol import encode_data, encode_hello  # noqa: E402

N_CHANS, SFREQ = 306, 1000.0
FRAME_S, HOP_MS, MAX_AGE_MS, STALE_MS = 0.02, 50.0, 150.0, 250.0
AGE_TOLERANCE_MS = 5.0  # as bench_faults: the controller's own reading of a message
FIRST_FAULT_S, TAIL_S = 10.0, 8.0  # the first fault after the first decisions; the last one's recovery
STALL_S, DC_HOLD_S, DC_STEP_V, NAN_S, MISSCALED_S, ESTOP_S, LOG_S = 1.0, 3.0, 20e-3, 0.2, 4.0, 2.0, 3.0
UNIT_FACTOR = {"V": 1.0, "uV": 1e6}  # samples in volts -> samples in this unit
FAULT_TYPES = ["stall_backlog", "dc_step", "nan_burst", "reconnect_units", "misscaled_units", "estop_resume",
               "sse_clients", "log_start_stop"]
SAFE_ANSWER = {"stall_backlog", "dc_step", "nan_burst", "reconnect_units", "misscaled_units", "estop_resume"}
MOVEMENTS = ("grasp", "open")
ACTIONS = ("rest=hold", "grasp=grasp", "open=open")


def movement_settings(model: Path) -> tuple[list[str], dict[str, Any]]:
    """bmi serve options under which the random-weight decoder commands movements on good data.

    Its input (10 uV noise standardised with a unit std) is near zero, so its probabilities hardly change: the
    top class wins every window by a margin that may be below the default hysteresis over rest (the hold
    every restart begins from). The hysteresis is set to half that margin so that good data move the hand."""
    from exports.runtime.model import DecoderSession

    decoder = DecoderSession(model, warmup=1, split_mix=False)
    probs = decoder.predict(np.zeros((decoder.n_chans, decoder.n_times), dtype=np.float32))
    classes = list(decoder.meta["classes"])
    top = classes[int(np.argmax(probs))]
    margin = float(np.max(probs) - probs[classes.index("rest")])
    info = {"probabilities_at_zero_input": {c: round(float(p), 4) for c, p in zip(classes, probs)}, "top_class": top}
    if top == "rest":
        raise RuntimeError(f"the random-weight decoder's top class is rest ({info}): it would never command a movement")
    hysteresis = round(min(0.1, margin / 2), 4)
    info["hysteresis"] = hysteresis
    return ["--hysteresis", str(hysteresis), *[a for pair in ACTIONS for a in ("--action", pair)]], info


@dataclass
class FaultRecord:
    kind: str
    n: int  # the how-many-th of its kind
    onset_s: float  # scheduled, stream seconds
    onset_mono: float | None = None  # injected (this computer's monotonic clock)
    end_mono: float | None = None  # clean data flowing again / the fault over
    onset_index: int | None = None
    detail: dict[str, Any] = field(default_factory=dict)


# -- the server's surroundings --------------------------------------------------------------------------------
def rss_mib(pid: int) -> float | None:
    """Resident memory of a process (MiB), or None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def child_pids(pid: int) -> list[int]:
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


class Console:
    """The operator console's HTTP API, as the live page uses it: token header and same origin on every call."""

    def __init__(self, port: int, token: str):
        import httpx

        self.port, self.token = port, token
        self.origin = f"http://127.0.0.1:{port}"
        self.headers = {"X-BMI-Token": token, "Origin": self.origin}
        self.client = httpx.Client(base_url=self.origin, headers=self.headers, timeout=4.0)

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.client.get("/", timeout=1.0).status_code < 500:
                    return True
            except Exception:
                pass
            time.sleep(0.2)
        return False

    def control(self, action: str, body: dict | None = None) -> dict[str, Any]:
        """POST a control; its answer, HTTP status and how long it took (never raises)."""
        t = time.monotonic()
        try:
            r = self.client.post(f"/api/control/{action}", json=body or {})
            try:
                answer = r.json()
            except ValueError:
                answer = {"ok": False, "message": r.text[:200]}
            out = {"status": r.status_code, "ok": bool(answer.get("ok")), "message": answer.get("message")}
        except Exception as err:
            out = {"status": None, "ok": False, "message": f"{type(err).__name__}: {err}"}
        out["ms"] = round((time.monotonic() - t) * 1000, 1)
        return out

    def sse_client(self, rcvbuf: int | None = None, timeout: float = 3.0) -> tuple[socket.socket | None, float | None]:
        """A raw ``GET /events`` client that has read its first event; (socket, seconds to it) or (None, None)."""
        t = time.monotonic()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.settimeout(timeout)
        try:
            sock.connect(("127.0.0.1", self.port))
            sock.sendall((f"GET /events HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAccept: text/event-stream\r\n"
                          f"X-BMI-Token: {self.token}\r\nOrigin: {self.origin}\r\n\r\n").encode())
            got = b""
            while b"data:" not in got:
                data = sock.recv(65536)
                if not data:
                    raise OSError("closed before the first event")
                got += data
            return sock, time.monotonic() - t
        except OSError:
            sock.close()
            return None, None

    def close(self) -> None:
        self.client.close()


def vanish(sock: socket.socket) -> None:
    """Gone without a goodbye: the connection reset (no FIN), as a client whose computer disappears."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    except OSError:
        pass
    sock.close()


def refused_hello(port: int, ch_names: list[str], units: str, timeout: float = 3.0) -> dict[str, Any]:
    """A client whose hello declares ``units``: the server's answer (an error line when it refuses)."""
    t = time.monotonic()
    try:
        sock = _connect(port)
    except OSError as err:
        return {"refused": False, "answer": f"connect failed: {err}"}
    sock.settimeout(timeout)
    answer = b""
    try:
        sock.sendall(encode_hello(ch_names, SFREQ, units=units))
        while b"\n" not in answer:
            data = sock.recv(4096)
            if not data:
                break
            answer += data
    except OSError as err:
        answer += f" ({type(err).__name__})".encode()
    finally:
        sock.close()
    text = answer.decode(errors="replace").strip()
    try:
        refused = "error" in json.loads(text.splitlines()[0])
    except (ValueError, IndexError):
        refused = False
    return {"refused": refused, "answer": text[:300], "ms": round((time.monotonic() - t) * 1000, 1)}


# -- the run --------------------------------------------------------------------------------------------------
class Soak:
    def __init__(self, args: argparse.Namespace, folder: Path):
        self.args, self.folder = args, folder
        self.seconds = args.minutes * 60.0
        self.n_total = int(round(self.seconds * SFREQ))
        self.frame = int(round(FRAME_S * SFREQ))
        self.ch_names = channel_names(N_CHANS)
        self.block = signal_block(N_CHANS, SFREQ).T.copy()  # [n_chans, n] in volts, repeated (what the model's rms saw)
        self.acquired = np.full(self.n_total, np.nan)  # each sample's acquisition time (monotonic)
        self.sends_mono = array("d")  # when each frame (or backlog burst) went out
        self.late_frames = 0  # frames sent more than a hop after they were due (this computer, not the server)
        self.faults: list[FaultRecord] = []
        self.bad_intervals: list[tuple[int, int, int]] = []  # [first, end) stream samples, fault number
        self.memory: list[dict[str, Any]] = []
        self.sched = array("d")  # (monotonic, CPU ms, run-queue wait ms) of the server's decoding thread
        self.unit = "V"
        self.data_factor = 1.0  # the misscaled connection's extra factor
        self.frozen: list[socket.socket] = []  # console clients that stopped reading
        self.jobs: queue.Queue = queue.Queue()
        self.threads: list[threading.Thread] = []
        self.crashed: dict[str, Any] | None = None
        self.samples_sent = 0
        self._done = False
        self.server: subprocess.Popen | None = None
        self.every = args.fault_every_s or float(np.clip((self.seconds - FIRST_FAULT_S - TAIL_S) / len(FAULT_TYPES),
                                                         12.0, 30.0))

    # -- setup and teardown ---------------------------------------------------------------------------------
    def start(self) -> None:
        from exports.onnx import read_model_metadata

        self.model = export_model(N_CHANS, SFREQ, self.folder)
        self.meta = meta = read_model_metadata(self.model)
        spec = meta["preprocessing"]
        self.window_in = int(meta["window"]["n_times"]) * int(spec["decim"])
        self.settle_in = int(np.ceil(spec["settle_seconds"] * SFREQ))
        self.movement_args, self.movement_info = movement_settings(self.model)
        self.controller = Controller()
        self.controller.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.port, self.console_port = _free_port(), _free_port()
        self.token = secrets.token_urlsafe(24)
        self.stats_path = self.folder / "server_stats.json"
        self.stderr_path = self.folder / "server_stderr.txt"
        self.server_cmd = [
            sys.executable, "-m", "pipeline.cli", "serve", str(self.model), "--input", f"tcp://127.0.0.1:{self.port}",
            "--output", f"udp://127.0.0.1:{self.controller.port}", "--hop-ms", str(HOP_MS), "--max-age-ms",
            str(MAX_AGE_MS), "--stale-ms", str(STALE_MS), "--duration", str(self.seconds + 120), "--stats",
            str(self.stats_path), "--no-status", "--console", f"127.0.0.1:{self.console_port}",
            *self.movement_args, *self.args.server_arg]
        env = dict(os.environ, BMI_CONSOLE_TOKEN=self.token, PYTHONPATH=os.pathsep.join(
            filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
        self._stderr = self.stderr_path.open("w")
        self.server = subprocess.Popen(self.server_cmd, cwd=self.folder, env=env, stdout=subprocess.DEVNULL,
                                       stderr=self._stderr)
        self.console = Console(self.console_port, self.token)
        if not self.console.wait_ready(60):
            raise RuntimeError(f"the console did not come up: {self.stderr_path.read_text()[-2000:]}")
        self.sock = _connect(self.port)
        self.sock.sendall(encode_hello(self.ch_names, SFREQ, units=self.unit))
        self.wall_offset = time.time() - time.monotonic()
        self.t0 = time.monotonic() + 0.1
        for target in (self._console_worker, self._memory_sampler, self._sched_sampler):
            thread = threading.Thread(target=target, daemon=True)
            thread.start()
            self.threads.append(thread)

    def finish(self) -> None:
        self._done = True
        time.sleep(1.0)  # the server goes stale and says so
        self._sample_memory()
        self.jobs.put(None)
        for thread in self.threads:
            thread.join(timeout=15)
        try:
            self.sock.close()
        except OSError:
            pass
        if self.server.poll() is None:
            self.server.send_signal(signal.SIGINT)
        try:
            self.server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait()
        self._stderr.close()
        self.received = self.controller.close()
        for sock in self.frozen:
            vanish(sock)
        self.console.close()
        self.stats = json.loads(self.stats_path.read_text()) if self.stats_path.is_file() else {}
        if self.args.keep:  # every message the controller got, with its arrival (s after the stream's start)
            with (self.folder / "messages.jsonl").open("w") as fh:
                for t, m in self.received:
                    fh.write(json.dumps({"t_s": round(t - self.t0, 4), **m}) + "\n")
        self.wall_offset_end = time.time() - time.monotonic()

    # -- memory -----------------------------------------------------------------------------------------------
    def _sample_memory(self) -> None:
        pid = self.server.pid
        self.memory.append({"t_s": round(time.monotonic() - self.t0, 2), "server_mib": rss_mib(pid),
                            "console_mib": sum(filter(None, (rss_mib(c) for c in child_pids(pid)))) or None})

    def _sched_sampler(self) -> None:
        """The server's decoding thread's CPU time and run-queue wait (/proc/PID/schedstat), every 10 ms: a gap in
        its messages while it waited for a CPU is the computer's load, not the server's doing."""
        path = Path(f"/proc/{self.server.pid}/schedstat")
        while not self._done:
            try:
                run_ns, wait_ns = (int(v) for v in path.read_text().split()[:2])
            except (OSError, ValueError):
                return
            self.sched.extend((time.monotonic(), run_ns / 1e6, wait_ns / 1e6))
            time.sleep(0.01)

    def _sched_between(self, ta: float, tb: float) -> tuple[float | None, float | None]:
        """(CPU ms, run-queue wait ms) of the server's decoding thread between two monotonic times."""
        if len(self.sched) < 6:
            return None, None
        if getattr(self, "_sched_table", None) is None or len(self._sched_table) * 3 != len(self.sched):
            self._sched_table = np.asarray(self.sched).reshape(-1, 3)
        table = self._sched_table
        run = np.interp([ta, tb], table[:, 0], table[:, 1])
        wait = np.interp([ta, tb], table[:, 0], table[:, 2])
        return float(run[1] - run[0]), float(wait[1] - wait[0])

    def _memory_sampler(self) -> None:
        k = 0
        while not self._done:
            due = self.t0 + k * self.args.memory_every_s
            while time.monotonic() < due and not self._done:
                time.sleep(min(0.5, max(0.0, due - time.monotonic())))
            if self._done:
                return
            self._sample_memory()
            k += 1

    # -- the console's faults, on their own thread (a console call never holds up the stream) -----------------
    def _console_worker(self) -> None:
        while True:
            job = self.jobs.get()
            if job is None:
                return
            rec, action = job
            try:
                action(rec)
            except Exception as err:  # a broken fault is a result, not a crash of the benchmark
                rec.detail.setdefault("errors", []).append(f"{type(err).__name__}: {err}")

    def _estop_resume(self, rec: FaultRecord) -> None:
        rec.onset_mono = time.monotonic()
        rec.detail["estop"] = self.console.control("estop")
        time.sleep(ESTOP_S)
        rec.detail["resume_unconfirmed"] = self.console.control("resume")
        rec.detail["resume_request_mono"] = time.monotonic()
        rec.detail["resume"] = self.console.control("resume", {"confirm": True})
        rec.end_mono = time.monotonic()

    def _sse_clients(self, rec: FaultRecord) -> None:
        rec.onset_mono = time.monotonic()
        for sock in self.frozen:  # the last ones that stopped reading now vanish too
            vanish(sock)
        rec.detail["vanished_frozen"] = len(self.frozen)
        self.frozen = []
        reset, _ = self.console.sse_client()
        frozen, _ = self.console.sse_client(rcvbuf=4096)
        rec.detail["opened"] = int(reset is not None) + int(frozen is not None)
        if reset is not None:
            vanish(reset)
        if frozen is not None:
            self.frozen.append(frozen)  # connected, never read again
        time.sleep(1.0)
        fresh, seconds = self.console.sse_client()
        rec.detail["fresh_client_first_event_s"] = None if seconds is None else round(seconds, 3)
        if fresh is not None:
            fresh.close()
        rec.end_mono = time.monotonic()

    def _log_start_stop(self, rec: FaultRecord) -> None:
        rec.onset_mono = time.monotonic()
        rec.detail["log_start"] = start = self.console.control("log_start")
        time.sleep(LOG_S)
        rec.detail["log_stop"] = self.console.control("log_stop")
        rec.end_mono = time.monotonic()
        message = str(start.get("message") or "")
        if message.startswith("logging to "):
            path = Path(message[len("logging to "):])
            path = path if path.is_absolute() else self.folder / path
            rec.detail["log_path"] = str(path)
            deadline, rows = time.monotonic() + 3.0, None  # the log's thread may still be writing what was queued
            while time.monotonic() < deadline:
                rows = max(0, len(path.read_text().splitlines()) - 1) if path.is_file() else None
                if rows:
                    break
                time.sleep(0.1)
            rec.detail["log_rows"] = rows

    # -- the stream ---------------------------------------------------------------------------------------------
    def _schedule(self) -> list[FaultRecord]:
        out, t, i = [], FIRST_FAULT_S, 0
        counts = dict.fromkeys(FAULT_TYPES, 0)
        while t < self.seconds - TAIL_S:
            kind = FAULT_TYPES[i % len(FAULT_TYPES)]
            counts[kind] += 1
            out.append(FaultRecord(kind, counts[kind], round(t, 3)))
            t, i = t + self.every, i + 1
        return out

    def _reconnect(self, units: str) -> None:
        try:
            self.sock.close()
        except OSError:
            pass
        time.sleep(0.05)
        self.sock = _connect(self.port)
        self.sock.sendall(encode_hello(self.ch_names, SFREQ, units=units))

    def _send(self, x: np.ndarray, k: int, n: int) -> None:
        scaled = x * np.float32(UNIT_FACTOR[self.unit] * self.data_factor)
        self.sock.sendall(encode_data(scaled, self.acquired[k + n - 1]))

    def run(self) -> None:
        schedule = self._schedule()
        nxt = 0
        held: list[tuple[np.ndarray, int, int]] = []
        hold_until, dc_window, nan_window, misscaled_end = -1, (-1, -1), (-1, -1), -1
        pending: dict[str, FaultRecord] = {}
        dc_chans, nan_chans = np.arange(0, N_CHANS, 10), np.arange(3, N_CHANS, 7)
        k, L = 0, self.block.shape[1]
        while k < self.n_total:
            n = min(self.frame, self.n_total - k)
            due = self.t0 + (k + n) / SFREQ
            time.sleep(max(0.0, due - time.monotonic()))
            self.acquired[k : k + n] = due - (n - 1 - np.arange(n)) / SFREQ
            if self.server.poll() is not None:
                self.crashed = {"t_s": round(time.monotonic() - self.t0, 2), "exit": self.server.returncode}
                break
            # a fault whose time has come
            while nxt < len(schedule) and k >= schedule[nxt].onset_s * SFREQ:
                rec = schedule[nxt]
                nxt += 1
                rec.onset_index = k
                self.faults.append(rec)
                number = len(self.faults) - 1
                if rec.kind == "stall_backlog":
                    hold_until = k + int(STALL_S * SFREQ)
                    rec.onset_mono = time.monotonic()
                    pending["stall_backlog"] = rec
                elif rec.kind == "dc_step":
                    dc_window = (k, k + int(DC_HOLD_S * SFREQ))
                    self.bad_intervals += [(k, k + self.settle_in, number),
                                           (dc_window[1], dc_window[1] + self.settle_in, number)]
                    pending["dc_step"] = rec
                elif rec.kind == "nan_burst":
                    nan_window = (k, k + int(NAN_S * SFREQ))
                    self.bad_intervals.append((k, nan_window[1] + self.settle_in, number))
                    pending["nan_burst"] = rec
                elif rec.kind == "reconnect_units":
                    rogue = threading.Thread(target=lambda r=rec: r.detail.update(
                        foreign_units=refused_hello(self.port, self.ch_names, "fT")), daemon=True)
                    rogue.start()
                    self.threads.append(rogue)
                    rec.onset_mono = time.monotonic()
                    self.unit = "uV" if self.unit == "V" else "V"
                    self._reconnect(self.unit)
                    rec.end_mono = time.monotonic()
                    rec.detail["units"] = self.unit
                    self.bad_intervals.append((k, k + self.settle_in, number))
                elif rec.kind == "misscaled_units":
                    rec.onset_mono = time.monotonic()
                    self.data_factor = 1e6
                    self._reconnect(self.unit)
                    misscaled_end = k + int(MISSCALED_S * SFREQ)
                    rec.detail["declared"], rec.detail["samples_times"] = self.unit, 1e6
                    rec.detail["number"] = number
                    pending["misscaled_units"] = rec
                elif rec.kind == "estop_resume":
                    self.jobs.put((rec, self._estop_resume))
                elif rec.kind == "sse_clients":
                    self.jobs.put((rec, self._sse_clients))
                elif rec.kind == "log_start_stop":
                    self.jobs.put((rec, self._log_start_stop))
            if misscaled_end >= 0 and k >= misscaled_end:  # the amplifier comes back right
                rec = pending.pop("misscaled_units")
                self.data_factor = 1.0
                self._reconnect(self.unit)
                rec.end_mono = time.monotonic()
                self.bad_intervals.append((rec.onset_index, k + self.settle_in, rec.detail.pop("number")))
                misscaled_end = -1
            x = self.block[:, k % L : k % L + n]
            if dc_window[0] <= k < dc_window[1] or nan_window[0] <= k < nan_window[1]:
                x = x.copy()
                if dc_window[0] <= k < dc_window[1]:
                    x[dc_chans] += np.float32(DC_STEP_V)
                if nan_window[0] <= k < nan_window[1]:
                    x[nan_chans] = np.nan
            for kind, (first, end) in (("dc_step", dc_window), ("nan_burst", nan_window)):
                rec = pending.get(kind)
                if rec is not None and k == first:
                    rec.onset_mono = time.monotonic()
                if rec is not None and k >= end:
                    rec.end_mono = time.monotonic()
                    pending.pop(kind)
            try:
                if k < hold_until:  # acquired, held up in the network
                    held.append((x, k, n))
                    k += n
                    continue
                if held:  # the backlog arrives at once, each frame with its own acquisition time
                    for hx, hk, hn in held:
                        self._send(hx, hk, hn)
                    held = []
                    rec = pending.pop("stall_backlog")
                    rec.end_mono = time.monotonic()
                    self.sends_mono.append(rec.end_mono)
                self._send(x, k, n)
            except OSError as err:
                self.crashed = {"t_s": round(time.monotonic() - self.t0, 2), "exit": self.server.poll(),
                                "error": f"{type(err).__name__}: {err}"}
                break
            sent = time.monotonic()
            self.sends_mono.append(sent)
            if sent - due > HOP_MS / 1000:
                self.late_frames += 1
            k += n
        self.samples_sent = k

    # -- analysis -----------------------------------------------------------------------------------------------
    def analyse(self) -> dict[str, Any]:
        received = sorted(self.received, key=lambda tm: tm[1]["seq"])
        t0, hop_s = self.t0, HOP_MS / 1000
        off = self.wall_offset
        msgs = [(t, m, m["t_wall"] - off) for t, m in received]  # arrival, message, send time (monotonic)
        decisions = [(t, m, ts) for t, m, ts in msgs if m["type"] == "decision"]
        # the emergency stops: from the server's emergency_stop safe message to the confirmed resume's request
        estops = []
        for rec in self.faults:
            if rec.kind != "estop_resume" or rec.onset_mono is None:
                continue
            first = next((ts for t, m, ts in msgs if ts >= rec.onset_mono and m["safe"]
                          and m["reason"] == "emergency_stop"), None)
            estop = rec.detail.get("estop", {})
            acked = rec.onset_mono + estop.get("ms", 0) / 1000 if estop.get("ok") else None
            start = min(x for x in (first, acked) if x is not None) if (first or acked) else None
            end = rec.detail.get("resume_request_mono", rec.end_mono)
            if start is not None:
                estops.append((start, end if end is not None else np.inf))
        bad_moves, bad_decisions, late_sent, late_any, bad_list = 0, 0, 0, 0, []
        latencies = []  # (arrival, end-to-end ms, ms when the server sent it, the server's own processing ms)
        for t, m, ts in decisions:
            idx = int(m["sample_index"])
            last = self.acquired[idx - 1] if 0 < idx <= len(self.acquired) else np.nan
            age_sent = (ts - last) * 1000 if np.isfinite(last) else np.nan
            if np.isfinite(last):
                latencies.append((t, (t - last) * 1000, age_sent, m.get("latency_ms")))
            reasons = []
            if np.isfinite(age_sent) and age_sent > MAX_AGE_MS:
                late_any += 1
                if age_sent > MAX_AGE_MS + AGE_TOLERANCE_MS:
                    late_sent += 1
                    reasons.append(f"age {age_sent:.1f} ms when sent")
            for first, end, number in self.bad_intervals:
                if idx - self.window_in < end and idx > first:
                    reasons.append(f"window holds bad data of {self.faults[number].kind} #{self.faults[number].n}")
            if any(a <= ts < b for a, b in estops):
                reasons.append("during an emergency stop")
            if reasons:
                bad_decisions += 1
                if m["action"] in MOVEMENTS:
                    bad_moves += 1
                    bad_list.append({"t_s": round(t - t0, 3), "seq": m["seq"], "sample_index": idx,
                                     "action": m["action"], "why": reasons})
        # missed hops: the server's send times, with the input's own pauses allowed up to the stale limit
        sends = np.sort(np.asarray(self.sends_mono))
        missed, excused, gaps = 0, 0, []
        for (_, a, ta), (_, b, tb) in zip(msgs, msgs[1:]):
            gap = tb - ta
            if gap <= 2 * hop_s:
                continue
            i, j = np.searchsorted(sends, ta), np.searchsorted(sends, tb)
            # the input's longest pause around the gap: from the last frame before it to the first after it
            pts = np.concatenate([sends[max(i - 1, 0) : j + 1], [] if j < len(sends) else [tb]])
            silence = float(np.diff(pts).max()) if len(pts) > 1 and i > 0 else gap  # before the stream: all pause
            excess = gap - min(silence, STALE_MS / 1000)
            if excess > 2 * hop_s and ta - t0 < self.seconds:
                n_missed = int(excess // hop_s) - 1
                cpu_ms, wait_ms = self._sched_between(ta, tb)
                # had it not waited for a CPU, would the server have been within 2 hops?
                host = wait_ms is not None and excess - wait_ms / 1000 <= 2 * hop_s
                missed += n_missed
                excused += n_missed if host else 0
                gaps.append({"t_s": round(ta - t0, 3), "gap_ms": round(gap * 1000, 1),
                             "input_pause_ms": round(silence * 1000, 1), "missed": n_missed,
                             "server_cpu_ms": None if cpu_ms is None else round(cpu_ms, 1),
                             "server_waited_for_cpu_ms": None if wait_ms is None else round(wait_ms, 1),
                             "computer_load": host,
                             "before": f"{a['type']}/{a['reason']}", "after": f"{b['type']}/{b['reason']}"})
        seqs = [m["seq"] for _, m in received]
        lost = (max(seqs) - min(seqs) + 1 - len(set(seqs))) if seqs else 0
        # restarts that moved the hand before the dwell (every restart of decoding should start from hold)
        dwell_in = int(round(0.2 * SFREQ))
        early, first_idx, was_safe, reason = [], None, True, "starting"
        for t, m, _ in msgs:
            if m["safe"]:
                was_safe, reason = True, m["reason"]
                continue
            if m["type"] != "decision":
                continue
            idx = int(m["sample_index"])
            if was_safe:
                first_idx, was_safe, restart_reason = idx, False, reason
            if m["action"] in MOVEMENTS and first_idx is not None and idx - first_idx < dwell_in - self.frame:
                early.append({"t_s": round(t - t0, 3), "after": restart_reason,
                              "samples_after_restart": idx - first_idx})
        return {"bad": (bad_moves, bad_decisions, late_sent, late_any, bad_list), "missed": (missed, excused, gaps),
                "lost": lost, "latencies": latencies, "estops": estops, "decisions": decisions, "msgs": msgs,
                "early": early}

    def fault_rows(self, a: dict[str, Any]) -> list[dict[str, Any]]:
        rows = []
        msgs = sorted(a["msgs"], key=lambda x: x[0])  # by arrival
        arrivals = np.array([t for t, _, _ in msgs])
        for i, rec in enumerate(self.faults):
            until = self.t0 + self.seconds  # the next fault's onset, or the stream's end
            if i + 1 < len(self.faults) and self.faults[i + 1].onset_mono:
                until = min(until, self.faults[i + 1].onset_mono)
            onset = rec.onset_mono
            row = {"fault": rec.kind, "n": rec.n, "onset_s": None if onset is None else round(onset - self.t0, 3),
                   "expected": "safe" if rec.kind in SAFE_ANSWER else "keeps_decoding"}
            if onset is None:
                rows.append(row | {"answered": False, "why": "not injected"})
                continue
            first, last = np.searchsorted(arrivals, onset), np.searchsorted(arrivals, until)
            row["decoding_at_onset"] = first > 0 and msgs[first - 1][1]["type"] == "decision"
            after = [(t, m) for t, m, _ in msgs[first:last]]
            want = "emergency_stop" if rec.kind == "estop_resume" else None
            safe = next(((t, m) for t, m in after if m["safe"] and (want is None or m["reason"] == want)), None)
            row["time_to_safe_ms"] = None if safe is None else round((safe[0] - onset) * 1000, 1)
            row["safe_reason"] = None if safe is None else safe[1]["reason"]
            end = rec.end_mono if rec.end_mono is not None else onset
            nxt = next((t for t, m in after if m["type"] == "decision" and t >= end), None)
            row["recovery_s"] = None if nxt is None else round(nxt - end, 3)
            gaps = [g for g in a["missed"][2] if onset - self.t0 <= g["t_s"] < (until - self.t0)]
            row["missed_hops"] = sum(g["missed"] for g in gaps)
            row["missed_hops_server"] = sum(g["missed"] for g in gaps if not g["computer_load"])
            d = rec.detail
            if rec.kind in SAFE_ANSWER:
                ok = safe is not None
            else:
                ok = row["missed_hops_server"] == 0
            if rec.kind == "reconnect_units":
                row["units"] = d.get("units")
                row["foreign_units_refused"] = d.get("foreign_units", {}).get("refused")
                row["foreign_units_answer"] = d.get("foreign_units", {}).get("answer")
                ok = ok and bool(row["foreign_units_refused"]) and nxt is not None
            elif rec.kind == "misscaled_units":
                reasons = {m["reason"] for t, m in after if m["safe"] and t < end}
                row["refused_as"] = sorted(reasons & {"amplitude", "artifact", "checking_amplitude"})
                decided = [m for t, m in after if m["type"] == "decision" and t < end]
                row["decisions_on_misscaled"] = len(decided)
                ok = ok and not decided and bool(reasons & {"amplitude", "artifact"})
            elif rec.kind == "estop_resume":
                for key in ("estop", "resume_unconfirmed", "resume"):
                    row[key] = {k: d.get(key, {}).get(k) for k in ("ok", "status", "message", "ms")}
                ok = (ok and d.get("estop", {}).get("ok") and not d.get("resume_unconfirmed", {}).get("ok", True)
                      and d.get("resume", {}).get("ok") and nxt is not None)
            elif rec.kind == "sse_clients":
                row.update({k: d.get(k) for k in ("opened", "vanished_frozen", "fresh_client_first_event_s")})
                ok = ok and d.get("opened") == 2 and d.get("fresh_client_first_event_s") is not None
            elif rec.kind == "log_start_stop":
                for key in ("log_start", "log_stop"):
                    row[key] = {k: d.get(key, {}).get(k) for k in ("ok", "status", "message", "ms")}
                row["log_rows"], row["log_path"] = d.get("log_rows"), d.get("log_path")
                ok = (ok and d.get("log_start", {}).get("ok") and d.get("log_stop", {}).get("ok")
                      and (d.get("log_rows") or 0) > 0)
            if d.get("errors"):
                row["errors"] = d["errors"]
                ok = False
            row["answered"] = bool(ok)
            rows.append(row)
        return rows

    def report(self) -> dict[str, Any]:
        a = self.analyse()
        bad_moves, bad_decisions, late_sent, late_any, bad_list = a["bad"]
        missed, excused, gaps = a["missed"]
        rows = self.fault_rows(a)
        block_s = self.args.block_minutes * 60.0
        n_blocks = max(1, int(np.ceil(self.seconds / block_s - 1e-9)))
        blocks = []
        lat = a["latencies"]
        for b in range(n_blocks):
            lo, hi = self.t0 + b * block_s, self.t0 + min((b + 1) * block_s, self.seconds)
            e2e = np.array([ms for t, ms, _, _ in lat if lo <= t < hi])
            at_send = np.array([ms for t, _, ms, _ in lat if lo <= t < hi])
            srv = np.array([s for t, _, _, s in lat if lo <= t < hi and s is not None], dtype=float)
            pct = lambda v, q: None if not len(v) else round(float(np.percentile(v, q)), 3)  # noqa: E731
            within = lambda t_s: lo - self.t0 <= t_s < hi - self.t0  # noqa: E731
            blocks.append({
                "block": b, "from_s": round(lo - self.t0, 1), "to_s": round(hi - self.t0, 1),
                "decisions": int(len(e2e)),
                "movement_commands": sum(1 for t, m, _ in a["decisions"] if lo <= t < hi and m["action"] in MOVEMENTS),
                "latency_ms": {"p50": pct(e2e, 50), "p99": pct(e2e, 99), "max": pct(e2e, 100)},
                "latency_at_send_ms": {"p50": pct(at_send, 50), "p99": pct(at_send, 99), "max": pct(at_send, 100)},
                "server_processing_ms": {"p50": pct(srv, 50), "p99": pct(srv, 99), "max": pct(srv, 100)},
                "missed_hops": sum(g["missed"] for g in gaps if within(g["t_s"])),
                "missed_hops_server": sum(g["missed"] for g in gaps if within(g["t_s"]) and not g["computer_load"]),
                "bad_moves": sum(1 for x in bad_list if within(x["t_s"])),
                "faults": sum(1 for r in rows if r.get("onset_s") is not None and within(r["onset_s"])),
                "server_rss_mib": [m["server_mib"] for m in self.memory  # the last block: the final sample too
                                   if within(m["t_s"]) or (b == n_blocks - 1 and m["t_s"] >= hi - self.t0)]})
        growth = {}
        for key in ("server_mib", "console_mib"):
            pts = [(m["t_s"], m[key]) for m in self.memory if m[key] is not None and m["t_s"] >= self.args.warmup_s]
            slope = np.polyfit([p[0] / 3600 for p in pts], [p[1] for p in pts], 1)[0] \
                if len(pts) >= 2 and pts[-1][0] > pts[0][0] else None
            growth[key.replace("_mib", "")] = None if slope is None else round(float(slope), 2)
        per_type = {}
        for kind in FAULT_TYPES:
            rs = [r for r in rows if r["fault"] == kind]
            tts = [r["time_to_safe_ms"] for r in rs if r.get("time_to_safe_ms") is not None]
            rec_s = [r["recovery_s"] for r in rs if r.get("recovery_s") is not None]
            per_type[kind] = {"injected": sum(1 for r in rs if r.get("onset_s") is not None),
                              "answered": sum(1 for r in rs if r["answered"]),
                              "expected": rs[0]["expected"] if rs else None,
                              "time_to_safe_ms": {"median": float(np.median(tts)) if tts else None,
                                                  "max": float(max(tts)) if tts else None},
                              "recovery_s": {"median": float(np.median(rec_s)) if rec_s else None,
                                             "max": float(max(rec_s)) if rec_s else None},
                              "safe_reasons": sorted({r["safe_reason"] for r in rs if r.get("safe_reason")})}
        stats = self.stats
        movements = sum(1 for _, m, _ in a["decisions"] if m["action"] in MOVEMENTS)
        result = {
            "minutes": self.args.minutes, "block_minutes": self.args.block_minutes, "fault_every_s": self.every,
            "stream": {"channels": N_CHANS, "sfreq": SFREQ, "frame_ms": FRAME_S * 1000,
                       "samples_sent": self.samples_sent, "samples_received_by_server": stats.get("samples_received"),
                       "late_frames_sent": self.late_frames},
            "server": {"command": " ".join(self.server_cmd[1:]), "hop_ms": HOP_MS, "max_age_ms": MAX_AGE_MS,
                       "stale_ms": STALE_MS, "decoder": self.movement_info, "exit": self.server.returncode,
                       "crashed": self.crashed,
                       "decisions_reported": stats.get("decisions"), "withheld_hops": stats.get("withheld_hops"),
                       "events": stats.get("events"), "cpu_share": stats.get("cpu_share"),
                       "console_token_env": _console_reads_token_env()},
            "movement_commands_on_bad_data": bad_moves,
            "movement_commands_on_bad_data_list": bad_list[:50],
            "decisions_on_bad_data": bad_decisions,
            "decisions_older_than_max_age_when_sent": {"beyond_tolerance": late_sent, "any": late_any},
            "missed_hops": missed, "missed_hops_while_server_waited_for_cpu": excused,
            "missed_hops_server": missed - excused, "missed_hop_gaps": gaps[:50], "messages_lost": a["lost"],
            "decisions": len(a["decisions"]), "movement_commands": movements,
            "movements_before_dwell_after_restart": {"count": len(a["early"]), "first": a["early"][:20]},
            "memory": {"samples": self.memory, "growth_mib_per_hour": growth, "warmup_s": self.args.warmup_s},
            "blocks": blocks, "faults_by_type": per_type, "faults": rows,
            "clock_drift_ms": round((self.wall_offset_end - self.wall_offset) * 1000, 3),
        }
        result["goals"] = {
            "zero_movement_commands_on_bad_data": bad_moves == 0, "zero_missed_hops_server": missed == excused,
            "every_fault_injected": all(per_type[k]["injected"] > 0 for k in FAULT_TYPES),
            "every_fault_answered": all(r["answered"] for r in rows),
            "movement_commands_on_good_data": movements > bad_moves,
            "memory_sampled_twice": len(self.memory) >= 2,
            "server_exit_clean": self.server.returncode == 0 and self.crashed is None,
        }
        return result


def _console_reads_token_env() -> bool:
    """Whether this checkout's console takes its secret from BMI_CONSOLE_TOKEN (else it needs none on loopback)."""
    folder = ROOT / "exports" / "runtime" / "console"
    return any("BMI_CONSOLE_TOKEN" in p.read_text() for p in folder.glob("*.py"))


def print_report(r: dict[str, Any]) -> None:
    ms = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    print(f"\n{'block':>5s} {'from s':>7s} {'decisions':>9s} {'moves':>6s} {'p50 ms':>7s} {'p99 ms':>7s} "
          f"{'max ms':>7s} "
          f"{'sent p99':>8s} {'srv p99':>7s} {'missed':>6s} {'server':>6s} {'bad':>4s} {'faults':>6s}  RSS MiB")
    for b in r["blocks"]:
        lat = b["latency_ms"]
        print(f"{b['block']:>5d} {b['from_s']:>7.0f} {b['decisions']:>9d} {b['movement_commands']:>6d} "
              f"{ms(lat['p50']):>7s} "
              f"{ms(lat['p99']):>7s} {ms(lat['max']):>7s} {ms(b['latency_at_send_ms']['p99']):>8s} "
              f"{ms(b['server_processing_ms']['p99']):>7s} {b['missed_hops']:>6d} {b['missed_hops_server']:>6d} "
              f"{b['bad_moves']:>4d} {b['faults']:>6d}  {', '.join(f'{m:.1f}' for m in b['server_rss_mib'] if m)}")
    print("  (latency: acquisition of the window's last sample -> arrival at the controller; sent: -> the server's "
          "send; srv: the server's own processing; missed: all missed hops, server: those not while it waited for "
          "a CPU)")
    print(f"\n{'fault':16s} {'injected':>8s} {'answered':>8s} {'expected':>14s} {'to safe ms (med/max)':>21s} "
          f"{'recovery s (med)':>16s}  safe reasons")
    for kind, f in r["faults_by_type"].items():
        tts = f["time_to_safe_ms"]
        print(f"{kind:16s} {f['injected']:>8d} {f['answered']:>8d} {str(f['expected']):>14s} "
              f"{ms(tts['median']) + ' / ' + ms(tts['max']):>21s} {ms(f['recovery_s']['median']):>16s}  "
              f"{', '.join(f['safe_reasons'])}")
    g = r["memory"]["growth_mib_per_hour"]
    print(f"\nmovement commands on bad data: {r['movement_commands_on_bad_data']} (of {r['movement_commands']} "
          f"movement commands, {r['decisions']} decisions)")
    print(f"missed hops: {r['missed_hops_server']} ({r['missed_hops']} counting those while the server waited for a "
          f"CPU); messages lost: {r['messages_lost']}; frames this script sent late: {r['stream']['late_frames_sent']}")
    print(f"memory growth: server {g['server']} MiB/h, console {g['console']} MiB/h "
          f"({len(r['memory']['samples'])} samples, after {r['memory']['warmup_s']:g} s)")
    print(f"movements before the dwell after a restart: {r['movements_before_dwell_after_restart']['count']}")
    crashed = r["server"]["crashed"]
    print(f"server exit {r['server']['exit']}" + (f", CRASHED {crashed}" if crashed else ""))
    print(json.dumps(r["goals"]))


def docs_table(r: dict[str, Any]) -> dict[str, Any]:
    """The docs' results table of a soak: one row per block (as :func:`print_report`'s), cells as the docs show
    them (latency p50 / p99 to 0.01 ms, the maximum to 0.1 ms, whole ms from 100; RSS first -> last sample)."""
    def ms(x: float | None, digits: int = 2) -> str | None:
        return None if x is None else f"{x:.{digits}f}"

    def peak(x: float | None) -> str | None:
        return None if x is None else f"{x:.0f}" if x >= 100 else f"{x:.1f}"

    rows = []
    for b in r["blocks"]:
        lat = b["latency_ms"]
        rss = [m for m in b["server_rss_mib"] if m is not None]
        missed, server = b["missed_hops"], b["missed_hops_server"]
        rows.append([
            f"{round(b['from_s'] / 60, 2):g}-{round(b['to_s'] / 60, 2):g}", b["decisions"],
            " / ".join(results_file.MISSING if v is None else v
                       for v in (ms(lat["p50"]), ms(lat["p99"]), peak(lat["max"]))),
            ms(b["server_processing_ms"]["p99"]),
            f"{server}" if missed == server else f"{server} (+{missed - server} while it waited for a CPU)",
            b["bad_moves"],
            None if not rss else f"{rss[0]:.1f}" if len(rss) == 1 else f"{rss[0]:.1f} -> {rss[-1]:.1f}"])
    every = round(r["fault_every_s"], 1)
    return {"title": f"Soak: {r['minutes']:g} minutes of a MEG-scale stream with a fault every {every:g} s",
            "columns": [f"block ({r['block_minutes']:g} min)", "decisions", "p50 / p99 / max latency (ms)",
                        "server's own p99 (ms)", "missed hops", "movement on bad data", "server RSS (MiB)"],
            "rows": rows}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, required=True, help="length of the stream")
    parser.add_argument("--block-minutes", type=float, default=5.0, help="latency per block of this long (default 5)")
    parser.add_argument("--fault-every-s", type=float,
                        help="seconds between faults (default: the cycle spread over the run, 12 to 30 s apart)")
    parser.add_argument("--memory-every-s", type=float, default=60.0,
                        help="resident memory sampled this often (default 60)")
    parser.add_argument("--warmup-s", type=float, default=60.0,
                        help="memory samples before this are left out of the growth's fit (default 60)")
    parser.add_argument("--out", default="bench_results/soak.json")
    parser.add_argument("--server-arg", action="append", default=[], metavar="ARG",
                        help="one more argument for bmi serve (repeatable; --server-arg=--flag for dashes)")
    parser.add_argument("--keep", type=Path,
                        help="keep the model, server stats and stderr, session logs and every message received here")
    results_file.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.minutes <= 0 or args.block_minutes <= 0 or args.memory_every_s <= 0:
        parser.error("--minutes, --block-minutes and --memory-every-s must be positive")
    if args.fault_every_s is not None and args.fault_every_s < 8:
        parser.error("--fault-every-s must be at least 8 (the server needs seconds to recover from each fault)")
    from datasets.atomic import write_json

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        soak = Soak(args, folder.resolve())
        print(f"soak: {args.minutes:g} min of {N_CHANS} channels at {SFREQ:g} Hz through bmi serve, a fault every "
              f"{soak.every:.1f} s ({len(soak._schedule())} faults)", flush=True)
        try:
            soak.start()
        except BaseException:
            if soak.server is not None and soak.server.poll() is None:
                soak.server.kill()
                soak.server.wait()
            raise
        try:
            soak.run()
        finally:
            soak.finish()
        result = soak.report()
        if result["server"]["exit"] not in (0, None):
            result["server"]["stderr_tail"] = soak.stderr_path.read_text()[-3000:]
    print_report(result)
    write_json(args.out, result)
    if (docs := results_file.docs_folder(args)) is not None:
        if result["decisions"]:
            table = docs_table(result)
            path = results_file.write_table("soak", title=table["title"], columns=table["columns"], rows=table["rows"],
                                            folder=docs, source=f"scripts/soak.py (raw results: {args.out})",
                                            argv=None if argv is None else [__file__, *argv])
            print(f"docs results file: {path}")
        else:
            print("no decisions were received: no docs results file written")
    print(f"results: {args.out}")
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
