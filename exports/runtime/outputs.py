"""Command outputs: ``udp://HOST:PORT``, ``tcp://HOST:PORT``, ``serial:DEVICE?baud=N``, ``lsl:NAME``.

UDP and TCP carry one JSON object per line (its fields: docs/reference/messages.rst); every one of them also carries
``"session"`` (16 random hex digits, new for each run of ``bmi serve``) and ``"timeout_ms"`` (the controller
timeout below). Serial carries one ASCII line per message for a real robotic hand::

    C,<seq>,<action>,<level with sign, 3 decimals>,<D|S>\\n      e.g.  C,42,grasp,+0.613,D

(``D`` a decoded command, ``S`` the safe state). LSL is a string marker outlet with the JSON, so the
decoder's output is recorded in sync with the amplifier data. UDP and TCP outputs add ``"token"`` to
every message when the spec carries ``?token=...`` (a rig listening beyond loopback requires one).

THE CONTROLLER CONTRACT: what every hand controller must do (``bmi rig`` does; tests/exports/runtime/test_deadman.py)
======================================================================================================================

1. **Dead man: no message for ``timeout_ms`` -> hold**, at once, whatever the last command was. A live server
   is never silent that long (:func:`controller_timeout_ms`): silence means the server, its computer or the
   link died, and the hand must not go on closing. The next message takes control again.
2. **seq: drop a message whose ``seq`` is not newer than the newest seen in its session** (a duplicate, or a
   datagram overtaken by a newer one). ``seq`` only grows within a session; it may skip numbers.
3. **session: a new ``session`` is a new server run, whose ``seq`` starts again at 1**: track seq afresh for it
   (never drop a new server's messages as old), and drop messages of a session already left behind. Every
   message carries ``session`` and ``timeout_ms``, so a controller that starts after the server, reconnects,
   or loses a datagram needs nothing else: there is no handshake to miss.
4. **``stop``** (safe, ``action: hold``) is the server's last message: hold; silence after it is expected.

The serial line has no room for ``session`` or ``timeout_ms`` (its five fields are what the firmware parses):
a serial controller holds after the default timeout, :data:`DEFAULT_TIMEOUT_MS` (450 ms; stale_ms + 2 hops +
100 ms with other settings), and after a timeout accepts the next ``seq`` whatever it is (a restarted server
is silent far longer than that while it loads its model; a serial link neither reorders nor duplicates).

Outputs never block the decoding loop: sockets and the serial port are non-blocking, a controller that
is down or not reading loses messages (counted) instead of queueing stale ones, and TCP reconnects with
backoff. :class:`OutputSet` isolates them from each other: a failing output is counted and never stops
another, and the final safe message is attempted on every output, each given a short time to flush.
"""

from __future__ import annotations

import errno
import json
import math
import secrets
import select
import socket
import time
from collections import Counter
from typing import Any
from urllib.parse import parse_qs, urlparse

from .inputs import LOOPBACK

MAX_PENDING = 64 * 1024  # bytes a controller may leave unread before it counts as stuck
SCHEDULING_MARGIN_MS = 100.0  # a loaded rig computer's scheduling delay (the server's own stale test allows this)


def controller_timeout_ms(stale_ms: float, hop_ms: float) -> int:
    """The silence after which a controller holds: longer than a live server is ever silent. It sends a decision
    every hop while decoding and a heartbeat every hop while safe, so its longest silence is a stalled stream: no
    decisions until the watchdog declares the stream stale after ``stale_ms`` and sends the safe message. Two hops
    cover the hop phase and the heartbeat period, the margin a loaded machine's scheduling. A message every hop
    during a stall would allow ~200 ms instead of 450, at the price of a new message kind that every controller
    must understand mid-decoding; a stall is already bounded, so the contract uses that bound."""
    for name, value in (("stale_ms", stale_ms), ("hop_ms", hop_ms)):
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"'{name}' ({value!r}) must be a positive number of milliseconds.")
    return int(math.ceil(stale_ms + 2 * hop_ms + SCHEDULING_MARGIN_MS))


DEFAULT_TIMEOUT_MS = controller_timeout_ms(250.0, 50.0)  # SafetyConfig.stale_ms and ServeConfig.hop_ms defaults


def fields_tail(fields: dict[str, Any]) -> bytes:
    """The bytes that add ``fields`` to an encoded line (see :func:`add_fields`)."""
    return b"," + json.dumps(fields, separators=(",", ":"))[1:].encode() + b"\n"


def add_fields(line: bytes, tail: bytes) -> bytes:
    """``line`` (one object from :func:`encode`) with the fields of ``tail`` spliced in: the decoding loop's
    hot path encodes each message once, never twice."""
    return line[:-2] + tail


class OutputDown(OSError):
    """The controller is not reachable right now (the message was dropped)."""


class _Pending:
    """Bytes written to a non-blocking device: a line is sent whole or the rest waits, never a backlog."""

    def __init__(self):
        self.buf = bytearray()

    def push(self, line: bytes, write) -> None:
        if self.buf:
            self.drain(write)
        if self.buf:  # the controller is not keeping up: drop this message rather than queue a stale one
            if len(self.buf) > MAX_PENDING:
                raise OutputDown("controller stuck (not reading)")
            raise OutputDown("controller busy: message dropped")
        self.buf += line
        self.drain(write)

    def drain(self, write) -> None:
        n = write(bytes(self.buf))
        del self.buf[: n or 0]


class UDPOutput:
    """One datagram per message to ``HOST:PORT``, from a non-blocking socket: a controller that is down or slow
    loses messages, never receives a queue of stale ones.

    Parameters
    ----------
    host, port : str, int
        The controller's address (IPv6 when ``host`` holds a colon).
    token : str, optional
        Added to every message as ``"token"`` (a controller beyond loopback requires one).
    """

    kind = "udp"

    def __init__(self, host: str, port: int, token: str | None = None):
        self.addr, self.token = (host, port), token
        self._token = fields_tail({"token": token}) if token else None
        self.sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        """Send ``line`` (the encoded message; ``msg`` is not used) with the token. A full socket buffer raises
        OSError, which :class:`OutputSet` counts."""
        self.sock.sendto(add_fields(line, self._token) if self._token else line, self.addr)

    def flush(self, deadline: float) -> None:
        """Nothing to flush: a datagram is sent whole or not at all."""

    def close(self) -> None:
        """Close the socket."""
        self.sock.close()


class TCPOutput:
    """Connects to a controller listening on HOST:PORT (non-blocking); reconnects with exponential backoff."""

    kind = "tcp"

    def __init__(self, host: str, port: int, token: str | None = None):
        self.addr, self.token = (host, port), token
        self._token = fields_tail({"token": token}) if token else None
        self.sock: socket.socket | None = None
        self._connected = False
        self._pending = _Pending()
        self._next_try, self._backoff, self._connect_deadline = 0.0, 0.1, 0.0

    def _drop(self) -> None:
        if self.sock is not None:
            self.sock.close()
        self.sock, self._connected, self._pending = None, False, _Pending()
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(2.0, self._backoff * 2)

    def _ready(self) -> bool:
        """Start or finish a non-blocking connect; True once connected."""
        now = time.monotonic()
        if self.sock is None:
            if now < self._next_try:
                return False
            self.sock = socket.socket(socket.AF_INET6 if ":" in self.addr[0] else socket.AF_INET, socket.SOCK_STREAM)
            self.sock.setblocking(False)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            code = self.sock.connect_ex(self.addr)
            if code not in (0, errno.EINPROGRESS, errno.EWOULDBLOCK):
                self._drop()
                return False
            self._connected, self._connect_deadline = code == 0, now + 1.0
        if not self._connected:
            if select.select([], [self.sock], [], 0)[1]:
                if self.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    self._drop()
                    return False
                self._connected, self._backoff = True, 0.1
            elif now > self._connect_deadline:
                self._drop()
        return self._connected

    def _write(self, data: bytes) -> int:
        try:
            return self.sock.send(data)
        except (BlockingIOError, InterruptedError):
            return 0

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        """Send ``line`` (the encoded message; ``msg`` is not used) with the token, or drop it.

        Raises :class:`OutputDown` while there is no connection (a connect is started, or retried after the
        backoff), or when the controller has not yet taken the previous line: this one is dropped, and a
        controller more than ``MAX_PENDING`` bytes behind is disconnected. Any other socket error disconnects
        and is raised; a later send reconnects, after the backoff (0.1 s, doubling up to 2 s).
        """
        if not self._ready():
            raise OutputDown(f"no controller connection to {self.addr[0]}:{self.addr[1]}")
        try:
            self._pending.push(add_fields(line, self._token) if self._token else line, self._write)
        except OutputDown:
            if len(self._pending.buf) > MAX_PENDING:
                self._drop()
            raise
        except OSError:
            self._drop()
            raise

    def flush(self, deadline: float) -> None:
        """Write what is pending until it is sent or ``deadline`` (``time.monotonic()`` seconds) passes."""
        while self.sock is not None and self._connected and self._pending.buf and time.monotonic() < deadline:
            select.select([], [self.sock], [], max(0.0, deadline - time.monotonic()))
            self._pending.drain(self._write)

    def close(self) -> None:
        """Close the connection, if any."""
        if self.sock is not None:
            self.sock.close()


class SerialOutput:
    """A robotic hand's serial line: one ASCII line ``C,<seq>,<action>,<level>,<D|S>`` per message (see the
    module's docstring), written without blocking (``write_timeout=0``).

    Parameters
    ----------
    device : str
        A device path (``/dev/ttyUSB0``, ``COM3``) or a pyserial URL (``loop://`` for tests).
    baud : int
        The line's rate.

    Raises
    ------
    RuntimeError
        The device cannot be opened at that rate.
    """

    kind = "serial"

    def __init__(self, device: str, baud: int):
        import serial

        try:  # write_timeout=0: non-blocking, write() returns what the driver took
            self.port = serial.serial_for_url(device, baudrate=baud, timeout=0, write_timeout=0)
        except (serial.SerialException, ValueError) as err:
            raise RuntimeError(f"Cannot open serial device {device!r} at {baud} baud: {err}") from None
        self._pending = _Pending()

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        """Write the serial line made from ``msg`` (the JSON ``line`` is not used). Raises :class:`OutputDown`
        when the driver has not taken the previous line yet: this one is dropped, never queued."""
        text = f"C,{msg['seq']},{msg['action']},{msg['level']:+.3f},{'S' if msg['safe'] else 'D'}\n"
        self._pending.push(text.encode("ascii"), self.port.write)

    def flush(self, deadline: float) -> None:
        """Write what is pending until the driver has taken it or ``deadline`` (``time.monotonic()`` s) passes."""
        while self._pending.buf and time.monotonic() < deadline:
            self._pending.drain(self.port.write)
            if self._pending.buf:
                time.sleep(0.002)

    def close(self) -> None:
        """Close the port."""
        self.port.close()


class LSLMarkerOutput:
    """An LSL string marker outlet named ``name`` (type ``Markers``, irregular rate, source id
    ``bmi-serve-NAME``) carrying each message's JSON, so a recorder stores the decoder's output in sync with
    the amplifier's stream. The console's event marks go only here (:meth:`OutputSet.send_markers`)."""

    kind = "lsl"

    def __init__(self, name: str):
        import pylsl

        info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", f"bmi-serve-{name}")
        self.outlet = pylsl.StreamOutlet(info)

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        """Push ``line`` (the JSON, without its newline) as one marker; ``msg`` is not used."""
        self.outlet.push_sample([line.decode().strip()])

    def flush(self, deadline: float) -> None:
        """Nothing to flush: liblsl sends from its own thread."""

    def close(self) -> None:
        """Drop the outlet (liblsl closes it when it is released)."""
        del self.outlet


class OutputSet:
    """Every controller output, isolated: one that fails is counted (per output and in ``events``) and
    never keeps a message from the others."""

    def __init__(self, specs: list[str], events: Counter, *, allow_remote: bool = False):
        self.events = events
        self.specs = list(specs)
        self.session = secrets.token_hex(8)  # a restarted server starts seq at 1 again: this tells its runs apart
        self.timeout_ms: int | None = None
        self._tail = fields_tail({"session": self.session})
        self.outputs = []
        try:
            for spec in specs:
                self.outputs.append(open_output(spec, allow_remote=allow_remote))
        except BaseException:
            self.close()
            raise
        self.stats = [{"output": s, "sent": 0, "failed": 0, "last_error": ""} for s in specs]

    def announce(self, stale_ms: float, hop_ms: float) -> int:
        """From now on every message carries the controller timeout for these settings (the contract above)."""
        self.timeout_ms = controller_timeout_ms(stale_ms, hop_ms)
        self._tail = fields_tail({"session": self.session, "timeout_ms": self.timeout_ms})
        return self.timeout_ms

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        """Send one message to every output, ``line`` (:func:`encode` of ``msg``) with ``session`` and, once
        announced, ``timeout_ms`` added. Never raises: a failing output is counted in :attr:`stats`
        (``failed``, ``last_error``) and in ``events`` (``output_down_KIND`` or ``output_error_KIND``)."""
        line = add_fields(line, self._tail)  # serial sends from msg: its line has no room for them
        for out, stat in zip(self.outputs, self.stats):
            try:
                out.send(msg, line)
                stat["sent"] += 1
            except Exception as err:  # any failure of one device stays with that device
                stat["failed"] += 1
                stat["last_error"] = f"{type(err).__name__}: {err}"[:200]
                self.events[f"output_{'down' if isinstance(err, OutputDown) else 'error'}_{out.kind}"] += 1

    def send_markers(self, msg: dict[str, Any], line: bytes) -> None:
        """An event mark: only to the LSL marker outlets (recorded with the data), never to a hand."""
        for out, stat in zip(self.outputs, self.stats):
            if out.kind == "lsl":
                try:
                    out.send(msg, line)
                    stat["sent"] += 1
                except Exception as err:
                    stat["failed"] += 1
                    stat["last_error"] = f"{type(err).__name__}: {err}"[:200]
                    self.events["output_error_lsl"] += 1

    def final(self, msg: dict[str, Any], line: bytes, timeout: float = 0.5) -> None:
        """The last (safe) message: attempted on every output, each flushed for up to ``timeout`` s."""
        self.send(msg, line)
        for out in self.outputs:
            try:
                out.flush(time.monotonic() + timeout)
            except Exception:
                self.events[f"output_error_{out.kind}"] += 1

    def close(self) -> None:
        """Close every output; an error closing one does not keep the others open."""
        for out in self.outputs:
            try:
                out.close()
            except Exception:
                pass


def _token(url) -> str | None:
    return parse_qs(url.query).get("token", [None])[0]


def open_output(spec: str, *, allow_remote: bool = False):
    """Open one output from its spec.

    Parameters
    ----------
    spec : str
        ``udp://HOST:PORT[?token=T]``, ``tcp://HOST:PORT[?token=T]``, ``serial:DEVICE[?baud=N]`` (115200 by
        default) or ``lsl:NAME``.
    allow_remote : bool
        Allow a UDP or TCP controller that is not on this computer (loopback only otherwise).

    Returns
    -------
    UDPOutput, TCPOutput, SerialOutput or LSLMarkerOutput

    Raises
    ------
    ValueError
        An unknown scheme, a missing port, or a non-loopback host without ``allow_remote``.
    RuntimeError
        A serial device that cannot be opened.
    """
    if spec.startswith("lsl:"):
        return LSLMarkerOutput(spec[4:])
    if spec.startswith("serial:"):
        url = urlparse(spec[len("serial:"):])
        baud = int(parse_qs(url.query).get("baud", ["115200"])[0])
        return SerialOutput(url.path or url.netloc, baud)
    url = urlparse(spec)
    if url.scheme in ("udp", "tcp"):
        if url.port is None:
            raise ValueError(f"Output {spec!r} needs a port, e.g. {url.scheme}://127.0.0.1:9000.")
        host = url.hostname or "127.0.0.1"
        if host not in LOOPBACK and not allow_remote:
            raise ValueError(f"Sending commands to {host} (not loopback) needs --allow-remote.")
        return (UDPOutput if url.scheme == "udp" else TCPOutput)(host, url.port, _token(url))
    raise ValueError(f"Unknown output {spec!r}; use udp://HOST:PORT, tcp://HOST:PORT, serial:DEVICE?baud=N or lsl:NAME.")


def encode(msg: dict[str, Any]) -> bytes:
    """A message as its wire line: compact JSON and a newline, UTF-8. Encoded once per message; the outputs
    splice their own fields in (:func:`add_fields`) instead of encoding again."""
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()
