"""Fault injection on the rig: what reaches the hand when the stream, the data or an output goes wrong.

A decoder is trained on synthetic recordings and exported; then, for each fault, a real `bmi serve` process
decodes a TCP stream that this script sends in real time (20 ms frames, stamped with this computer's
clock), and this script is also the hand controller (UDP). Six seconds into each session the fault is
injected. For every fault the table gives

- time to safe: from the fault's onset to the first safe message the controller receives;
- movement commands on bad data (must be 0): decisions the controller received whose window holds bad
  data (see each fault's note) or, for timing faults, whose window ended more than --max-age-ms before
  the decision arrived (the age measured by the controller from the true acquisition times it sent);
- hops withheld: hop boundaries after the onset that produced no decision (the cost of the fault);
- recovery: from the fault's end (clean data flowing again) to the next decision.

    .venv/bin/python scripts/bench_faults.py [--out bench_results/faults.json] [--faults a,b] [--docs-table] [--docs-dir DIR]

``--docs-table`` also writes the docs' results file ``faults`` (scripts/results_file.py), one row per fault run.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import results_file  # noqa: E402  (scripts/, beside this file)
from exports.runtime.protocol import encode_data, encode_hello  # noqa: E402

FRAME_S, ONSET_S, SESSION_S, MAX_AGE_MS, HOP_MS = 0.02, 6.0, 14.0, 150.0, 50.0


@dataclass
class Fault:
    name: str
    note: str  # what counts as bad data
    end_s: float  # when clean data flow again (stream seconds after start)
    flags: tuple[str, ...] = ()


FAULTS = [
    Fault("stall", "no samples for 2 s (amplifier paused), then new samples", ONSET_S),
    Fault("backlog", "2 s of buffered samples arrive at once with their acquisition times (network stall)", ONSET_S + 2.0),
    Fault("nan_burst", "0.2 s of NaN; windows holding any of it", ONSET_S + 0.2),
    Fault("flat_line", "1.5 s constant (stuck amplifier); windows holding >= flat-ms + one hop of it", ONSET_S + 1.5),
    Fault("saturation", "0.3 s at +/-2 mV with --saturation 1e-3; windows holding any of it", ONSET_S + 0.3,
          ("--saturation", "1e-3")),
    Fault("dc_step", "+20 mV on every channel from the onset on; windows holding the band-pass's settling after it",
          ONSET_S),
    Fault("clock_jump", "the sender's clock steps back 1 s (its timestamps; the data stay good)", ONSET_S),
    Fault("reconnect", "the amplifier client drops and reconnects at once; windows spanning both connections",
          ONSET_S + 0.05),
    Fault("output_loss", "a second controller (TCP) crashes at the onset and returns 3 s later; UDP messages lost",
          ONSET_S + 3.0),
    Fault("sigterm", "SIGTERM 2 s after the onset; decisions after the final stop message", ONSET_S + 2.0),
]


#: each fault's row label in the docs' table (output_loss's is completed with the UDP messages lost)
DOCS_LABELS = {
    "stall": "stall: no samples for 2 s, then new samples",
    "backlog": "backlog: 2 s of buffered samples arrive at once with their acquisition times",
    "nan_burst": "NaN burst, 0.2 s",
    "flat_line": "flat line, 1.5 s (windows holding >= 100 ms + one hop of it count as bad)",
    "saturation": "saturation, 0.3 s at ±2 mV (`--saturation 1e-3`)",
    "dc_step": "DC step, +20 mV from the onset on (windows holding the filters' settling after it count as bad)",
    "clock_jump": "clock jump: the sender's clock steps back 1 s",
    "reconnect": "reconnect: the client drops and reconnects at once",
    "output_loss": "output loss: a second (TCP) controller crashes, returns 3 s later (UDP messages lost: {lost})",
    "sigterm": "SIGTERM (time to the final stop message)",
}


def docs_rows(rows: list[dict]) -> list[list]:
    """The docs' table of the faults run: time to safe (ms), movement commands on bad data, hops withheld,
    recovery (s); None where a fault has no such time."""
    table = []
    for r in rows:
        safe = r["time_to_safe_ms"]
        label = DOCS_LABELS[r["fault"]].format(lost=r["udp_messages_lost"])
        table.append([label, None if safe is None else f"{safe:.1f}" if safe < 10 else f"{safe:.0f}",
                      r["movement_commands_on_bad_data"], r["hops_withheld_after_onset"],
                      None if r["recovery_s"] is None else f"{r['recovery_s']:.2f}"])
    return table


def train_model(folder: Path) -> tuple[Path, list[Path]]:
    """A small real decoder: EEGNet trained on synthetic EEG (64 ch, 250 Hz), exported with its metadata."""
    import yaml

    from datasets.synthetic import write_synthetic
    from exports.onnx import export_run
    from pipeline.record.config import load_config
    from pipeline.train import run_training

    files = write_synthetic(folder / "rec", n_subjects=1, n_runs=3, trials_per_class=6, seed=3)
    config = folder / "train.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"files": [str(f) for f in files], "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
                 "tmin": 0.5, "tmax": 1.5, "bandpass": [8.0, 30.0], "resample": 125.0,
                 "split": {"method": "holdout", "by": "run", "test": ["03"]}, "cache_dir": str(folder / "cache")},
        "model": {"name": "eegnet"}, "trainer": {"max_epochs": 5, "enable_progress_bar": False},
        "tracking": {"mode": "disabled"}, "runs_dir": str(folder / "runs")}))
    cfg, config_dir = load_config(config)
    summary = run_training(cfg, config_dir, progress=False)
    return export_run(summary["run_dir"], out=folder / "decoder.onnx").path, files


class Controller:
    """The hand controller: receives every message over UDP, with its arrival time on the local clock."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.received: list[tuple[float, dict]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                continue
            self.received.append((time.monotonic(), json.loads(data)))

    def close(self) -> list[tuple[float, dict]]:
        time.sleep(0.3)
        self._stop.set()
        self._thread.join()
        self.sock.close()
        return self.received


class TCPController:
    """A second controller on TCP that can crash (close) and come back on the same port."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        self.server.settimeout(0.05)
        while not self._stop.is_set():
            try:
                conn, _ = self.server.accept()
                conn.settimeout(0.05)
                self._conns.append(conn)
            except (socket.timeout, OSError):
                pass
            for conn in list(self._conns):
                try:
                    conn.recv(65536)
                except (socket.timeout, OSError):
                    pass

    def crash(self) -> None:
        self._stop.set()
        self._thread.join()
        for conn in self._conns:
            conn.close()
        self.server.close()

    def restart(self) -> None:
        self.server = socket.create_server(("127.0.0.1", self.port))
        self._conns, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()


def stream_session(fault: Fault, data: np.ndarray, ch_names: list[str], sfreq: float, port: int,
                   server: subprocess.Popen, tcp_controller: TCPController | None) -> tuple[np.ndarray, dict]:
    """Send the session in real time with the fault; returns each sample's true acquisition time and markers."""
    frame = int(FRAME_S * sfreq)
    n_total = int(SESSION_S * sfreq)
    onset, end = int(ONSET_S * sfreq), int(fault.end_s * sfreq)
    x = data[:, :n_total].astype(np.float32).copy()
    if fault.name == "nan_burst":
        x[:, onset:end] = np.nan
    elif fault.name == "flat_line":
        x[:, onset:end] = x[:, onset - 1 : onset]
    elif fault.name == "saturation":
        x[:, onset:end] = np.where(np.arange(end - onset) % 2, 2e-3, -2e-3)
    elif fault.name == "dc_step":
        x[:, onset:] += 20e-3
    acquired = np.full(n_total, np.nan)
    marks: dict[str, float] = {}
    sock = _connect(port)
    sock.sendall(encode_hello(ch_names, sfreq, units="V"))
    t0, k, clock_shift, pending_from = time.monotonic() + 0.1, 0, 0.0, None
    while k < n_total:
        n = min(frame, n_total - k)
        time.sleep(max(0.0, t0 + (k + n) / sfreq - time.monotonic()))
        if k >= onset and "onset" not in marks:
            marks["onset"] = time.monotonic()
            if fault.name == "stall":  # the amplifier pauses: no samples are acquired for 2 s
                time.sleep(2.0)
                t0 += 2.0
                marks["end"] = time.monotonic()
            elif fault.name == "clock_jump":
                clock_shift = -1.0
            elif fault.name == "reconnect":
                sock.close()
                time.sleep(0.05)
                sock = _connect(port)
                sock.sendall(encode_hello(ch_names, sfreq, units="V"))
                marks["reconnect_index"] = k
            elif fault.name == "output_loss":
                tcp_controller.crash()
        if fault.name == "output_loss" and k >= end and "restarted" not in marks:
            tcp_controller.restart()
            marks["restarted"] = time.monotonic()
        if fault.name == "sigterm" and k >= end and "sigterm" not in marks:
            server.send_signal(signal.SIGTERM)
            marks["sigterm"] = time.monotonic()
        due = t0 + (k + n) / sfreq
        acquired[k : k + n] = due - (n - 1 - np.arange(n)) / sfreq
        if fault.name == "backlog" and onset <= k < end:  # acquired, held up in the network
            pending_from = k if pending_from is None else pending_from
            k += n
            continue
        if pending_from is not None:  # the backlog arrives at once, with the acquisition time of its last sample
            sock.sendall(encode_data(x[:, pending_from:k], acquired[k - 1] + clock_shift))
            pending_from = None
        if k >= end and "end" not in marks:
            marks["end"] = time.monotonic()
        try:
            sock.sendall(encode_data(x[:, k : k + n], acquired[k + n - 1] + clock_shift))
        except OSError:
            break  # the server stopped (SIGTERM)
        k += n
    marks.setdefault("end", time.monotonic())
    sock.close()
    return acquired, marks


def _connect(port: int) -> socket.socket:
    deadline = time.monotonic() + 20
    while True:
        try:
            sock = socket.create_connection(("127.0.0.1", port), timeout=2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return sock
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def bad_windows(fault: Fault, idx: int, window_in: int, settle_in: int, flat_in: int, hop_in: int, sfreq: float,
                marks: dict) -> bool:
    """Does the window ending at stream sample ``idx`` hold the fault's bad data?"""
    onset, end = int(ONSET_S * sfreq), int(fault.end_s * sfreq)
    start = idx - window_in
    if fault.name in ("nan_burst", "saturation"):
        return start < end and idx > onset
    if fault.name == "flat_line":  # detectable once flat-ms of it is in the newest samples, checked every hop
        return start < end and idx > onset + flat_in + hop_in
    if fault.name == "dc_step":
        return start < onset + settle_in and idx > onset
    if fault.name == "reconnect":
        return start < marks.get("reconnect_index", -1) < idx
    return False


def run_fault(fault: Fault, model: Path, data, ch_names, sfreq, meta, folder: Path) -> dict:
    controller, tcp = Controller(), TCPController() if fault.name == "output_loss" else None
    port = _free_port()
    stats_path = folder / f"{fault.name}.json"
    outputs = ["--output", f"udp://127.0.0.1:{controller.port}"]
    if tcp is not None:
        outputs += ["--output", f"tcp://127.0.0.1:{tcp.port}"]
    server = subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", "serve", str(model), "--input", f"tcp://127.0.0.1:{port}", *outputs,
         "--hop-ms", str(HOP_MS), "--max-age-ms", str(MAX_AGE_MS), "--duration", str(SESSION_S + 3), "--stats",
         str(stats_path), "--no-status", *fault.flags], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    acquired, marks = stream_session(fault, data, ch_names, sfreq, port, server, tcp)
    if fault.name != "sigterm":
        server.send_signal(signal.SIGINT)
    _, err = server.communicate(timeout=60)
    received = controller.close()
    if tcp is not None:
        tcp.crash()
    stats = json.loads(stats_path.read_text()) if stats_path.is_file() else {}
    spec = meta["preprocessing"]
    window_in, hop_in = meta["window"]["n_times"] * spec["decim"], stats.get("hop_samples", 12)
    settle_in, flat_in = int(spec["settle_seconds"] * sfreq), int(0.1 * sfreq)
    onset_t, end_t = marks["onset"], marks["end"]
    decisions = [(t, m) for t, m in received if m["type"] == "decision"]
    bad = 0
    for t, m in decisions:
        idx = int(m["sample_index"])
        true_age = (t - acquired[idx - 1]) * 1000 if 0 < idx <= len(acquired) and not np.isnan(acquired[idx - 1]) else 0.0
        if true_age > MAX_AGE_MS + 5 or bad_windows(fault, idx, window_in, settle_in, flat_in, hop_in, sfreq, marks):
            bad += 1  # +5 ms: the controller's own reading of the message
    lost = None
    if fault.name == "output_loss":  # messages the healthy (UDP) controller never got while the other crashed
        seqs = [m["seq"] for _, m in received]
        lost = len(set(range(1, max(seqs) + 1)) - set(seqs))
    if fault.name == "sigterm":
        stop_at = next((t for t, m in received if m["type"] == "stop"), None)
        bad = sum(1 for t, _ in decisions if stop_at is None or t > stop_at)
    safe_after = [t for t, m in received if m["safe"] and t >= onset_t]
    after_end = [t for t, _ in decisions if t >= end_t]
    onset_index = int(ONSET_S * sfreq)
    last_index = max((int(m["sample_index"]) for _, m in received), default=onset_index)
    hops_after = max(0, (last_index - onset_index) // hop_in)
    decided_after = sum(1 for _, m in decisions if int(m["sample_index"]) > onset_index)
    row = {
        "fault": fault.name, "note": fault.note,
        "time_to_safe_ms": round((safe_after[0] - onset_t) * 1000, 1) if safe_after else None,
        "movement_commands_on_bad_data": bad,
        "udp_messages_lost": lost,
        "hops_withheld_after_onset": int(max(0, hops_after - decided_after)),
        "recovery_s": round(after_end[0] - end_t, 3) if after_end and fault.name != "sigterm" else None,
        "decisions": len(decisions),
        "server_withheld_hops": stats.get("withheld_hops"),
        "server_exit": server.returncode,
    }
    if fault.name == "sigterm":
        stop_at = next((t for t, m in received if m["type"] == "stop"), None)
        row["time_to_safe_ms"] = round((stop_at - marks["sigterm"]) * 1000, 1) if stop_at else None
    if fault.name == "output_loss":  # nothing unsafe reaches the hand: the server must keep decoding
        row["time_to_safe_ms"] = None
    if fault.name == "output_loss":
        tcp_stat = next((o for o in stats.get("outputs", []) if o["output"].startswith("tcp")), {})
        row["tcp_controller"] = {k: tcp_stat.get(k) for k in ("sent", "failed")}
    if server.returncode != 0:
        row["server_error"] = err[-500:]
    return row


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench_results/faults.json")
    parser.add_argument("--faults", help="comma-separated subset of: " + ", ".join(f.name for f in FAULTS))
    results_file.add_arguments(parser)
    args = parser.parse_args()
    unknown = sorted(set(args.faults.split(",")) - {f.name for f in FAULTS}) if args.faults else []
    if unknown:
        parser.error(f"--faults: unknown {unknown}; choose from {', '.join(f.name for f in FAULTS)}")
    chosen = [f for f in FAULTS if not args.faults or f.name in args.faults.split(",")]
    import mne

    from exports.onnx import read_model_metadata

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model, files = train_model(folder)
        meta = read_model_metadata(model)
        raw = mne.io.read_raw(files[2], preload=True, verbose="error")
        data, ch_names, sfreq = raw.get_data(), raw.ch_names, raw.info["sfreq"]
        print(f"{'fault':12s} {'to safe ms':>10s} {'bad moves':>9s} {'withheld':>8s} {'recovery s':>10s}  decisions")
        for fault in chosen:
            row = run_fault(fault, model, data, ch_names, sfreq, meta, folder)
            rows.append(row)
            print(f"{row['fault']:12s} {row['time_to_safe_ms'] if row['time_to_safe_ms'] is not None else '-':>10} "
                  f"{row['movement_commands_on_bad_data']:>9d} {row['hops_withheld_after_onset']:>8d} "
                  f"{row['recovery_s'] if row['recovery_s'] is not None else '-':>10}  {row['decisions']}"
                  + (f"  SERVER EXIT {row['server_exit']}: {row.get('server_error', '')[-200:]}" if row["server_exit"] else ""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    result = {"max_age_ms": MAX_AGE_MS, "hop_ms": HOP_MS, "onset_s": ONSET_S, "faults": rows,
              "all_zero_bad_moves": all(r["movement_commands_on_bad_data"] == 0 for r in rows)}
    out.write_text(json.dumps(result, indent=2))
    if (docs := results_file.docs_folder(args)) is not None:
        path = results_file.write_table(
            "faults", title="Fault injection: time to safe and recovery per fault",
            columns=["fault", "time to safe (ms)", "movement commands on bad data", "hops withheld", "recovery (s)"],
            rows=docs_rows(rows), folder=docs, source=f"scripts/bench_faults.py (raw results: {args.out})")
        print(f"docs results file: {path}")
    print(f"movement commands on bad data, all faults: {sum(r['movement_commands_on_bad_data'] for r in rows)}")
    print(f"results: {out}")
    return 0 if result["all_zero_bad_moves"] else 1


if __name__ == "__main__":
    sys.exit(main())
