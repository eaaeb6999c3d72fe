"""Command outputs: ``udp://HOST:PORT``, ``tcp://HOST:PORT``, ``serial:DEVICE?baud=N``, ``lsl:NAME``.

UDP and TCP carry one JSON object per line (the command schema in the README). Serial carries one ASCII
line per decision for a real robotic hand::

    C,<seq>,<command>,<level with sign, 3 decimals>,<D|S>\\n      e.g.  C,42,grasp,+0.613,D

(``D`` a decoded command, ``S`` the safe state). LSL is a string marker outlet with the JSON, so the
decoder's output is recorded in sync with the amplifier data. A controller that goes away never stops
the server: sends fail silently into a counter, TCP reconnects with backoff.
"""

from __future__ import annotations

import json
import socket
import time
from typing import Any
from urllib.parse import parse_qs, urlparse


class UDPOutput:
    def __init__(self, host: str, port: int, events):
        self.addr, self.events = (host, port), events
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        try:
            self.sock.sendto(line, self.addr)
        except OSError:
            self.events["output_error_udp"] += 1

    def close(self) -> None:
        self.sock.close()


class TCPOutput:
    """Connects to a controller listening on HOST:PORT; reconnects with exponential backoff."""

    def __init__(self, host: str, port: int, events):
        self.addr, self.events = (host, port), events
        self.sock: socket.socket | None = None
        self._next_try, self._backoff = 0.0, 0.1

    def _connect(self) -> None:
        now = time.monotonic()
        if now < self._next_try:
            return
        try:
            self.sock = socket.create_connection(self.addr, timeout=0.05)
            self.sock.settimeout(0.05)
            self._backoff = 0.1
        except OSError:
            self.sock = None
            self._next_try = now + self._backoff
            self._backoff = min(2.0, self._backoff * 2)

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        if self.sock is None:
            self._connect()
            if self.sock is None:
                self.events["output_down_tcp"] += 1
                return
        try:
            self.sock.sendall(line)
        except OSError:
            self.events["output_error_tcp"] += 1
            self.sock.close()
            self.sock = None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()


class SerialOutput:
    def __init__(self, device: str, baud: int, events):
        import serial

        self.events = events
        try:
            self.port = serial.serial_for_url(device, baudrate=baud, timeout=0, write_timeout=0.02)
        except (serial.SerialException, ValueError) as err:
            raise RuntimeError(f"Cannot open serial device {device!r} at {baud} baud: {err}") from None

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        text = f"C,{msg['seq']},{msg['command']},{msg['level']:+.3f},{'S' if msg['safe'] else 'D'}\n"
        try:
            self.port.write(text.encode("ascii"))
        except Exception:  # pyserial raises SerialTimeoutException / SerialException / OSError
            self.events["output_error_serial"] += 1

    def close(self) -> None:
        self.port.close()


class LSLMarkerOutput:
    def __init__(self, name: str, events):
        import pylsl

        info = pylsl.StreamInfo(name, "Markers", 1, pylsl.IRREGULAR_RATE, "string", f"bmi-serve-{name}")
        self.outlet, self.events = pylsl.StreamOutlet(info), events

    def send(self, msg: dict[str, Any], line: bytes) -> None:
        self.outlet.push_sample([line.decode().strip()])

    def close(self) -> None:
        del self.outlet


def open_output(spec: str, events, *, allow_remote: bool = False):
    if spec.startswith("lsl:"):
        return LSLMarkerOutput(spec[4:], events)
    if spec.startswith("serial:"):
        url = urlparse(spec[len("serial:"):])
        baud = int(parse_qs(url.query).get("baud", ["115200"])[0])
        return SerialOutput(url.path or url.netloc, baud, events)
    url = urlparse(spec)
    if url.scheme in ("udp", "tcp"):
        if url.port is None:
            raise ValueError(f"Output {spec!r} needs a port, e.g. {url.scheme}://127.0.0.1:9000.")
        host = url.hostname or "127.0.0.1"
        if host not in ("127.0.0.1", "localhost", "::1") and not allow_remote:
            raise ValueError(f"Sending commands to {host} (not loopback) needs --allow-remote.")
        return (UDPOutput if url.scheme == "udp" else TCPOutput)(host, url.port, events)
    raise ValueError(f"Unknown output {spec!r}; use udp://HOST:PORT, tcp://HOST:PORT, serial:DEVICE?baud=N or lsl:NAME.")


def encode(msg: dict[str, Any]) -> bytes:
    return (json.dumps(msg, separators=(",", ":")) + "\n").encode()
