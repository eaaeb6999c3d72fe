"""``bmi rig``: a simulated prosthetic hand driven by the command stream.

The hand's aperture runs from 0 (closed) to 1 (open) and moves at most ``speed`` per second. It acts on
each message's ``action``: ``grasp`` closes it, ``open`` opens it, ``hold`` (rest, the safe state) holds it
still. Any other action also holds it still, and is reported loudly (stderr, the status line and the
summary): a hand that silently ignores its commands looks like a decoder that does not work. With
proportional control (a ``level`` in [-1, 1] from P(grasp) - P(open)) the speed scales with |level|. Every
message is logged with its arrival time; the aperture is plotted against time.

It listens on loopback unless given ``--allow-remote`` and a ``--token``, which every message must then
carry (as ``bmi serve``'s TCP input does for its clients).

It keeps the controller contract of ``outputs.py`` (:class:`Link`): no message for the timeout (the one the
messages announce, else ``--timeout-ms``) -> the hand holds (counted in ``timeouts``, each in
``timeout_events``, and said on stderr); a message whose ``seq`` is not newer than the newest of its session,
or that comes from a session already left behind, is dropped (``out_of_order``); a new session starts afresh.
"""

from __future__ import annotations

import csv
import json
import math
import signal
import socket
import sys
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from .actions import DEFAULT_ACTIONS
from .inputs import check_bind_address, same_token
from .outputs import DEFAULT_TIMEOUT_MS

TARGETS = {"grasp": 0.0, "open": 1.0, "hold": None}
RIG_FIELDS = ["t_arrival", "seq", "type", "command", "action", "level", "safe", "aperture", "latency_ms", "t_window_end",
              "session"]
MAX_TIMEOUT_EVENTS = 1000  # the summary keeps the first ones: a flapping link must not grow it without bound


def _positive_ms(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{what} ({value!r}) must be a positive number of milliseconds (the silence after which "
                         f"the hand holds).")
    return float(value)


class Link:
    """The controller's half of the contract in ``outputs.py``: the seq rule per session and the dead man."""

    def __init__(self, timeout_ms: float = DEFAULT_TIMEOUT_MS):
        self.timeout_ms = _positive_ms(timeout_ms, "'--timeout-ms'")
        self.session: str | None = None
        self.last_seq: int | None = None
        self.left: deque = deque(maxlen=8)  # sessions left behind: a late message of theirs is old
        self.heard_at: float | None = None  # monotonic time of the last message; None: no timeout armed
        self.timeouts = self.out_of_order = 0

    def admit(self, msg: dict[str, Any], now: float) -> bool:
        """Whether an authenticated message is new enough to act on; ValueError for a bad seq/timeout_ms."""
        seq, session, announced = msg.get("seq"), msg.get("session"), msg.get("timeout_ms")
        if seq is not None and (isinstance(seq, bool) or not isinstance(seq, int)):
            raise ValueError(f"'seq' ({seq!r}) must be an integer")
        if announced is not None:
            announced = _positive_ms(announced, "'timeout_ms'")
        if session != self.session:
            if session is not None and session in self.left:
                self.out_of_order += 1
                return False
            if self.session is not None:
                self.left.append(self.session)
            self.session, self.last_seq = session, None  # a new server run: its seq starts at 1 again
        if seq is not None:
            if self.last_seq is not None and seq <= self.last_seq:
                self.out_of_order += 1
                return False
            self.last_seq = seq
        if announced is not None:
            self.timeout_ms = announced
        self.heard_at = None if msg.get("type") == "stop" else now  # after the server's last word silence is fine
        return True

    def expired(self, now: float) -> dict[str, Any] | None:
        """Once per silence, when it has just outlasted the timeout: what was heard last (else None)."""
        if self.heard_at is None or (now - self.heard_at) * 1000 <= self.timeout_ms:
            return None
        event = {"silent_ms": round((now - self.heard_at) * 1000, 1), "timeout_ms": self.timeout_ms,
                 "last_seq": self.last_seq, "session": self.session}
        self.heard_at = None
        self.timeouts += 1
        if self.session is None:  # no session to tell a restarted sender by: the silence ends this one
            self.last_seq = None
        return event


class Hand:
    def __init__(self, speed: float = 1.0, proportional: bool = False):
        self.aperture, self.speed, self.proportional = 0.5, speed, proportional
        self.action, self.level, self._t = "hold", 0.0, time.monotonic()

    def apply(self, action: str, level: float) -> None:
        self.advance()
        self.action, self.level = action, level

    def advance(self) -> float:
        now = time.monotonic()
        dt, self._t = now - self._t, now
        target = TARGETS.get(self.action)
        if target is not None:
            rate = self.speed * (min(1.0, abs(self.level)) if self.proportional else 1.0)
            step = rate * dt
            self.aperture += max(-step, min(step, target - self.aperture))
        return self.aperture


def parse_message(line: bytes, mapping: dict[str, str], token: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """One line from a sender -> (the message with its ``command``, ``action`` and ``level`` resolved, None), or
    (None, why it is refused: ``malformed`` or ``bad_token``). A message without an ``action`` takes its command's
    from ``mapping``."""
    try:
        msg = json.loads(line)
        command = str(msg["command"])
        action = str(msg["action"]) if "action" in msg else mapping.get(command, command)
        level = float(msg.get("level") or 0.0)
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, "malformed"
    if not same_token(msg.get("token"), token):
        return None, "bad_token"
    return {**msg, "command": command, "action": action, "level": level}, None


class Listener:
    """The lines senders write to ``udp://`` (one datagram, one or more lines) or ``tcp://`` (newline-framed,
    several connections), read without blocking for more than 20 ms."""

    def __init__(self, scheme: str, host: str, port: int):
        self.tcp = scheme == "tcp"
        if self.tcp:
            self.sock = socket.create_server((host, port))
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.sock.bind((host, port))
        self.sock.settimeout(0.02)
        self.conns: list[socket.socket] = []
        self.buffers: dict[socket.socket, bytes] = {}

    def lines(self) -> list[bytes]:
        try:
            return self._tcp_lines() if self.tcp else self.sock.recv(65536).splitlines()
        except socket.timeout:
            return []

    def _tcp_lines(self) -> list[bytes]:
        try:
            conn, _ = self.sock.accept()
            conn.settimeout(0.0)
            self.conns.append(conn)
        except (socket.timeout, BlockingIOError):
            pass
        out: list[bytes] = []
        for conn in list(self.conns):
            try:
                data = conn.recv(65536)
            except (BlockingIOError, socket.timeout):
                continue
            if not data:
                self.conns.remove(conn)
                continue
            *lines, self.buffers[conn] = (self.buffers.get(conn, b"") + data).split(b"\n")
            out += lines
        if not self.conns:
            time.sleep(0.005)
        return out

    def close(self) -> None:
        self.sock.close()
        for conn in self.conns:
            conn.close()


class Rig:
    """Acts on the senders' messages: the hand, the dead man's link, the counts and the log."""

    def __init__(self, hand: Hand, link: Link, mapping: dict[str, str], token: str | None, log: Path | None):
        self.hand, self.link, self.mapping, self.token = hand, link, mapping, token
        self.rows: list[dict[str, Any]] = []
        self.counts = {"messages": 0, "malformed": 0, "bad_token": 0, "unknown_action": 0}
        self.unknown: Counter = Counter()
        self.timeout_events: list[dict[str, Any]] = []
        self._log = log.open("w", newline="") if log else None
        self._writer = csv.DictWriter(self._log, fieldnames=RIG_FIELDS) if self._log else None
        if self._writer:
            self._writer.writeheader()

    def handle(self, line: bytes) -> None:
        t = time.time()
        msg, refused = parse_message(line, self.mapping, self.token)
        if refused:
            self.counts[refused] += 1
            return
        try:
            if not self.link.admit(msg, time.monotonic()):
                return  # out of order: counted by the link
        except ValueError:
            self.counts["malformed"] += 1
            return
        command, action = msg["command"], msg["action"]
        if action not in TARGETS:
            self.counts["unknown_action"] += 1
            self.unknown[action] += 1
            if self.unknown[action] == 1:
                sys.stderr.write(f"\nbmi rig: unknown action {action!r} (class {command!r}): the hand holds still. "
                                 f"It knows {sorted(TARGETS)}; map the model's classes with bmi serve --action.\n")
        self.hand.apply(action, msg["level"])
        self.counts["messages"] += 1
        row = {"t_arrival": t, "seq": msg.get("seq"), "type": msg.get("type"), "command": command, "action": action,
               "level": msg["level"], "safe": int(bool(msg.get("safe"))), "aperture": round(self.hand.aperture, 5),
               "latency_ms": msg.get("latency_ms"), "t_window_end": msg.get("t_window_end"),
               "session": msg.get("session")}
        self.rows.append(row)
        if self._writer:
            self._writer.writerow(row)
            self._log.flush()

    def tick(self) -> None:
        """Move the hand; hold it when the sender has gone silent for its timeout."""
        self.hand.advance()
        event = self.link.expired(time.monotonic())
        if event is None:
            return
        self.hand.apply("hold", 0.0)
        if len(self.timeout_events) < MAX_TIMEOUT_EVENTS:
            self.timeout_events.append({"t_wall": time.time(), **event, "aperture": self.hand.aperture})
        sys.stderr.write(f"\nbmi rig: no message for {event['silent_ms']:.0f} ms (timeout {event['timeout_ms']:.0f} "
                         f"ms, last seq {event['last_seq']}): the hand holds.\n")
        sys.stderr.flush()

    def status_line(self, elapsed: float) -> str:
        ignored = f" | UNKNOWN ACTIONS {dict(self.unknown)}" if self.unknown else ""
        ignored += f" | timeouts {self.link.timeouts}" if self.link.timeouts else ""
        ignored += f" | out of order {self.link.out_of_order}" if self.link.out_of_order else ""
        return (f"\r[rig {elapsed:6.1f} s] aperture {self.hand.aperture:4.2f} | {self.hand.action:5s} | "
                f"messages {self.counts['messages']}{ignored}   ")

    def close(self) -> None:
        if self._log:
            self._log.close()

    def summary(self) -> dict[str, Any]:
        link = self.link
        return {"final_aperture": self.hand.aperture, **self.counts, "unknown_actions": dict(self.unknown),
                "timeouts": link.timeouts, "out_of_order": link.out_of_order, "timeout_ms": link.timeout_ms,
                "session": link.session, "timeout_events": self.timeout_events}


def run_rig(listen: str, log: Path | None, plot: Path | None, duration: float | None, speed: float,
            proportional: bool = False, *, allow_remote: bool = False, token: str | None = None,
            status: bool = True, actions: dict[str, str] | None = None,
            timeout_ms: float = DEFAULT_TIMEOUT_MS) -> dict[str, Any]:
    """``actions`` maps classes to hand actions for senders whose messages carry no ``action`` (``bmi serve``'s
    always do), on top of the defaults (grasp/close -> grasp, open -> open, rest/hold -> hold). ``timeout_ms``:
    the dead man's timeout until a message announces the sender's."""
    url = urlparse(listen)
    if url.scheme not in ("udp", "tcp") or url.port is None:
        raise ValueError(f"'--listen' ({listen!r}) must be udp://127.0.0.1:PORT or tcp://127.0.0.1:PORT.")
    host = url.hostname or "127.0.0.1"
    check_bind_address(host, allow_remote, token, "Listening")
    mapping = {**DEFAULT_ACTIONS, **(actions or {})}
    bad = sorted({a for a in mapping.values() if a not in TARGETS})
    if bad:
        raise ValueError(f"'--action' maps to {bad}; hand actions are {sorted(TARGETS)}.")
    link = Link(timeout_ms)
    stop = {"flag": False}
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.update(flag=True))
    listener = Listener(url.scheme, host, url.port)  # a port in use fails here, before the log is opened
    try:
        rig = Rig(Hand(speed, proportional), link, mapping, token, log)
    except BaseException:
        listener.close()
        raise
    started = time.monotonic()
    next_status = started + 1.0
    try:
        while not stop["flag"] and (duration is None or time.monotonic() - started < duration):
            rig.tick()
            if status and time.monotonic() >= next_status:
                sys.stderr.write(rig.status_line(time.monotonic() - started))
                sys.stderr.flush()
                next_status += 1.0
            for line in listener.lines():
                rig.handle(line)
    finally:
        listener.close()
        rig.close()
        if status:
            sys.stderr.write("\n")
    if plot is not None:
        plot_aperture(rig.rows, plot)
    if rig.unknown:
        sys.stderr.write(f"bmi rig: {rig.counts['unknown_action']} messages carried actions the hand does not know "
                         f"({dict(rig.unknown)}); it held still for them.\n")
    return rig.summary()


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
    others = iter(["tab:orange", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"])
    for name in dict.fromkeys(name for _start, _end, name in cues or []):  # each other class a colour of its own
        if name not in colors:
            colors[name] = next(others, "tab:orange")
    for start, end, name in cues or []:
        ax.axvspan(start, end, alpha=0.15, color=colors[name], label=f"cue: {name}")
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
