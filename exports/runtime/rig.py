"""``bmi rig``: a simulated prosthetic hand driven by the command stream.

The hand's aperture runs from 0 (closed) to 1 (open) and moves at most ``speed`` per second:
``grasp`` closes it, ``open`` opens it, any other command (``rest``, ``hold``, the safe state) holds it
still. With proportional control (a ``level`` in [-1, 1] from P(grasp) - P(open)) the speed scales with
|level|. Every message is logged with its arrival time; the aperture is plotted against time.
"""

from __future__ import annotations

import csv
import json
import signal
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

TARGETS = {"grasp": 0.0, "close": 0.0, "open": 1.0}
RIG_FIELDS = ["t_arrival", "seq", "type", "command", "level", "safe", "aperture", "latency_ms", "t_window_end"]


class Hand:
    def __init__(self, speed: float = 1.0, proportional: bool = False):
        self.aperture, self.speed, self.proportional = 0.5, speed, proportional
        self.command, self.level, self._t = "rest", 0.0, time.monotonic()

    def apply(self, command: str, level: float) -> None:
        self.advance()
        self.command, self.level = command, level

    def advance(self) -> float:
        now = time.monotonic()
        dt, self._t = now - self._t, now
        target = TARGETS.get(self.command)
        if target is not None:
            rate = self.speed * (min(1.0, abs(self.level)) if self.proportional else 1.0)
            step = rate * dt
            self.aperture += max(-step, min(step, target - self.aperture))
        return self.aperture


def run_rig(listen: str, log: Path | None, plot: Path | None, duration: float | None, speed: float,
            proportional: bool = False) -> dict[str, Any]:
    url = urlparse(listen)
    if url.scheme not in ("udp", "tcp") or url.port is None:
        raise ValueError(f"'--listen' ({listen!r}) must be udp://127.0.0.1:PORT or tcp://127.0.0.1:PORT.")
    host = url.hostname or "127.0.0.1"
    hand = Hand(speed, proportional)
    stop = {"flag": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(flag=True))
    if url.scheme == "udp":
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((host, url.port))
        sock.settimeout(0.02)
        conns: list[socket.socket] = []
    else:
        sock = socket.create_server((host, url.port))
        sock.settimeout(0.02)
        conns = []
    rows: list[dict[str, Any]] = []
    counts = {"messages": 0, "malformed": 0, "unknown_command": 0}
    log_fh = log.open("w", newline="") if log else None
    writer = csv.DictWriter(log_fh, fieldnames=RIG_FIELDS) if log_fh else None
    if writer:
        writer.writeheader()
    started = time.monotonic()
    buffers: dict[socket.socket, bytes] = {}

    def handle(line: bytes) -> None:
        t = time.time()
        try:
            msg = json.loads(line)
            command = str(msg["command"])
            level = float(msg.get("level") or 0.0)
        except (ValueError, KeyError, TypeError):
            counts["malformed"] += 1
            return
        if command not in TARGETS and command not in ("rest", "hold"):
            counts["unknown_command"] += 1
        hand.apply(command, level)
        counts["messages"] += 1
        row = {"t_arrival": t, "seq": msg.get("seq"), "type": msg.get("type"), "command": command, "level": level,
               "safe": int(bool(msg.get("safe"))), "aperture": round(hand.aperture, 5),
               "latency_ms": msg.get("latency_ms"), "t_window_end": msg.get("t_window_end")}
        rows.append(row)
        if writer:
            writer.writerow(row)
            log_fh.flush()

    try:
        while not stop["flag"] and (duration is None or time.monotonic() - started < duration):
            hand.advance()
            try:
                if url.scheme == "udp":
                    data = sock.recv(65536)
                    for line in data.splitlines():
                        handle(line)
                else:
                    try:
                        conn, _ = sock.accept()
                        conn.settimeout(0.0)
                        conns.append(conn)
                    except (socket.timeout, BlockingIOError):
                        pass
                    for conn in list(conns):
                        try:
                            data = conn.recv(65536)
                        except (BlockingIOError, socket.timeout):
                            continue
                        if not data:
                            conns.remove(conn)
                            continue
                        buf = buffers.get(conn, b"") + data
                        *lines, buffers[conn] = buf.split(b"\n")
                        for line in lines:
                            handle(line)
                    if not conns:
                        time.sleep(0.005)
            except socket.timeout:
                continue
    finally:
        sock.close()
        for conn in conns:
            conn.close()
        if log_fh:
            log_fh.close()
    if plot is not None:
        plot_aperture(rows, plot)
    return {"final_aperture": hand.aperture, **counts}


def plot_aperture(rows: list[dict[str, Any]], path: Path, cues: list[tuple[float, float, str]] | None = None) -> Path:
    """Aperture against time (and, given ``cues`` as (start, end, class) in the same seconds, the cues)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 3.5))
    if rows:
        t0 = rows[0]["t_arrival"]
        t = [r["t_arrival"] - t0 for r in rows]
        ax.step(t, [r["aperture"] for r in rows], where="post", color="k", label="aperture")
        safe = [r["t_arrival"] - t0 for r in rows if r["safe"]]
        if safe:
            ax.plot(safe, [1.05] * len(safe), "|", color="tab:red", label="safe state")
    colors = {"grasp": "tab:blue", "open": "tab:green", "rest": "tab:gray"}
    for start, end, name in cues or []:
        ax.axvspan(start, end, alpha=0.15, color=colors.get(name, "tab:orange"), label=f"cue: {name}")
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    ax.legend(unique.values(), unique.keys(), loc="upper right", fontsize=8)
    ax.set_ylim(-0.05, 1.1)
    ax.set_xlabel("time (s)")
    ax.set_ylabel("hand aperture (0 closed, 1 open)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
