"""Stream sources: ``lsl:NAME[?source_id=ID]``, ``tcp://127.0.0.1:PORT`` and ``replay:FILE``.

Each has ``description`` (a :class:`~.layout.StreamDescription`: channels, rate, declared units; None until
a TCP client has been accepted), ``connection`` (a counter that grows with every new stream connection:
the server restarts its pipeline on a new one), ``clock`` (the local clock), ``pull()``, which returns
what has arrived without waiting: ``([n_chans, n] float32, acquisition time of the last sample on the
local clock, or None)``, and ``wait(timeout)``, which blocks until something arrives (or the timeout), so
the server sleeps on its input instead of polling it; ``wakes_on_arrival`` says whether that wait ends when data
arrive (a stream) or when a clock says (a replay), i.e. whether polling just before a chunk is due can gain
anything (:mod:`.pacing`).

Streams also have ``clock_offset`` (local minus sender time, as estimated now), which the server watches: a jump
of it beyond the freshness limit is a clock fault; a TCP input's ``clock_settled`` says when that check starts
(:mod:`.clock`). A replay stamps samples on the local clock itself, never ahead of it and with no offset.
"""

from __future__ import annotations

import hmac
import json
import select
import socket
import threading
import time
from collections import deque
from pathlib import Path
from typing import Callable
from urllib.parse import parse_qs, urlparse

import numpy as np

from .clock import ArrivalClock
from .layout import StreamDescription
from .protocol import DATA, HELLO, FrameParser, ProtocolError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def check_bind_address(host: str, allow_remote: bool, token: str | None, what: str) -> None:
    """The address policy for every listening socket: loopback, or a flag and a shared token."""
    if host not in LOOPBACK and not (allow_remote and token):
        raise ValueError(f"{what} on {host} (not loopback) needs --allow-remote and a shared --token.")


def same_token(got, expected: str | None) -> bool:
    """Constant-time token comparison (no timing side channel)."""
    if expected is None:
        return True
    return isinstance(got, str) and hmac.compare_digest(got.encode(), expected.encode())


# liblsl channel formats -> numpy dtypes (cf_float32=1, cf_double64=2, cf_int32=4, cf_int16=5, cf_int8=6, cf_int64=7)
_LSL_DTYPES = {1: np.float32, 2: np.float64, 4: np.int32, 5: np.int16, 6: np.int8, 7: np.int64}


def resolve_lsl(name: str, source_id: str | None, timeout: float):
    """The one LSL stream called ``name`` (and ``source_id`` when given); several of that name are refused."""
    import pylsl

    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    if found:  # look a moment longer: a second stream of that name may answer later
        found = pylsl.resolve_byprop("name", name, minimum=len(found) + 1, timeout=0.5) or found
    if source_id is not None:
        found = [s for s in found if s.source_id() == source_id]
    if not found:
        which = f" with source_id {source_id!r}" if source_id is not None else ""
        raise RuntimeError(f"No LSL stream named {name!r}{which} found within {timeout:g} s.")
    unique = {s.uid(): s for s in found}
    if len(unique) > 1:
        listing = "; ".join(f"source_id {s.source_id()!r} on {s.hostname()} ({s.type()}, {s.channel_count()} ch, "
                            f"{s.nominal_srate():g} Hz)" for s in unique.values())
        raise RuntimeError(f"{len(unique)} LSL streams are named {name!r}: {listing}. Choose one with "
                           f"lsl:{name}?source_id=ID.")
    return next(iter(unique.values()))


class LSLInput:
    """A Lab Streaming Layer inlet, its timestamps clock-corrected to this computer's clock.

    The clock offset comes from liblsl's ``time_correction`` (its NTP-like exchange with the outlet's
    computer), queried by a background thread as LabRecorder does: liblsl's own ``proc_clocksync`` flag
    would run that query inside ``pull_chunk`` and block the decoding loop (0.1-0.6 s measured here at
    start and after a reconnect). liblsl recovers a lost stream by itself when an outlet with the same
    source id comes back; the watchdog covers the gap.
    """

    wakes_on_arrival = True

    def __init__(self, name: str, source_id: str | None = None, resolve_timeout: float = 10.0):
        import pylsl

        found = resolve_lsl(name, source_id, resolve_timeout)
        self.inlet = pylsl.StreamInlet(found, max_buflen=30, recover=True)
        info = self.inlet.info(timeout=resolve_timeout)
        sfreq = float(info.nominal_srate())
        if sfreq <= 0:
            raise ValueError(f"LSL stream {name!r} has an irregular rate; a regularly sampled signal stream is needed.")
        labels = info.get_channel_labels() or []
        ch_names = [str(c) for c in labels] if labels and all(labels) else [f"ch{i}" for i in range(info.channel_count())]
        units = info.get_channel_units()
        dtype = _LSL_DTYPES.get(info.channel_format())
        if dtype is None:
            raise ValueError(f"LSL stream {name!r} carries {info.channel_format()!r} samples; a numeric stream is needed.")
        self.description = StreamDescription(ch_names, sfreq, list(units) if units else None,
                                             f"lsl:{name} (source_id {found.source_id()!r} on {found.hostname()})")
        self.connection = 1
        self._buf = np.zeros((max(1, int(sfreq)), info.channel_count()), dtype=dtype)
        self._waited: tuple[np.ndarray, float] | None = None
        self.inlet.open_stream(timeout=resolve_timeout)
        self.clock = pylsl.local_clock
        self.clock_offset = self.inlet.time_correction(timeout=resolve_timeout)  # first estimate before decoding
        self._closing = threading.Event()
        self._sync = threading.Thread(target=self._track_clock, name="lsl-clock", daemon=True)
        self._sync.start()

    def _track_clock(self) -> None:
        while not self._closing.wait(1.0):
            try:
                self.clock_offset = self.inlet.time_correction(timeout=2.0)
            except Exception:  # lost stream or timeout: keep the last estimate
                pass

    def wait(self, timeout: float) -> None:
        """Block until a sample arrives or ``timeout`` passes (liblsl wakes us; no polling)."""
        if self._waited is None and timeout > 0:
            sample, stamp = self.inlet.pull_sample(timeout=timeout)
            if stamp is not None:
                self._waited = (np.asarray(sample, dtype=np.float32)[:, None], stamp)

    def pull(self) -> tuple[np.ndarray, float | None]:
        """What has arrived, without waiting: ``([n_chans, n] float32, the last sample's LSL timestamp plus the
        current clock offset, i.e. on this computer's clock)``; ``n`` may be 0 (then the time is None)."""
        _, stamps = self.inlet.pull_chunk(timeout=0.0, max_samples=len(self._buf), dest_obj=self._buf)
        n = len(stamps)
        first, self._waited = self._waited, None
        if not n:
            if first is None:
                return self._buf[:0].T, None
            return first[0], first[1] + self.clock_offset
        chunk = self._buf[:n].T.astype(np.float32)
        if first is not None:  # the sample that woke us comes first
            chunk = np.concatenate([first[0], chunk], axis=1)
        return chunk, float(stamps[-1]) + self.clock_offset

    def close(self) -> None:
        """Stop the clock-offset thread (waits up to 3 s for it) and close the inlet's stream."""
        self._closing.set()
        self._sync.join(timeout=3.0)
        self.inlet.close_stream()


class _Client:
    def __init__(self, sock: socket.socket, peer, max_payload: int, deadline: float):
        self.sock, self.peer, self.parser, self.deadline = sock, peer, FrameParser(max_payload), deadline
        self.n_chans: int | None = None


class TCPInput:
    """Listens for amplifier clients speaking the protocol in :mod:`.protocol`; one feeds the server.

    A new connection must send a valid hello within ``hello_timeout`` (else it is dropped); its hello is
    checked by ``validate`` (channels, rate, units against the model) and the token, and a refused client
    gets one JSON line with the reason before the connection closes. A client that passes replaces the
    current one (a reconnecting amplifier), and the server restarts its pipeline for it. A client that
    sends a malformed or oversized frame is dropped and counted; the server keeps running.
    """

    wakes_on_arrival = True

    MAX_PENDING = 4

    def __init__(self, host: str, port: int, *, validate: Callable[[StreamDescription], str | None],
                 token: str | None = None, hello_timeout: float = 2.0, max_payload: int = 4 << 20, events=None):
        self.token, self.validate, self.hello_timeout, self.max_payload = token, validate, hello_timeout, max_payload
        self.events = events if events is not None else {}
        self.server = socket.create_server((host, port))
        self.server.setblocking(False)
        self.description: StreamDescription | None = None
        self.connection = 0
        self.notices: deque[str] = deque(maxlen=50)  # refusals etc., for the operator
        self.clock = time.monotonic
        self._active: _Client | None = None
        self._pending: list[_Client] = []
        self._samples: list[np.ndarray] = []
        self._last_ts: float | None = None
        self._arrival = ArrivalClock()

    def _count(self, event: str) -> None:
        self.events[event] = self.events.get(event, 0) + 1

    def _close(self, client: _Client, event: str | None, reason: str | None = None) -> None:
        if event:
            self._count(event)
        if reason:
            self.notices.append(f"TCP client {client.peer[0]}:{client.peer[1]} refused: {reason}")
            try:
                client.sock.send((json.dumps({"error": reason}) + "\n").encode())
            except OSError:
                pass
        client.sock.close()
        if client is self._active:
            self._active = None
        elif client in self._pending:
            self._pending.remove(client)

    def _accept(self) -> None:
        while True:
            try:
                sock, peer = self.server.accept()
            except (BlockingIOError, InterruptedError):
                return
            sock.setblocking(False)
            self._pending.append(_Client(sock, peer, self.max_payload, time.monotonic() + self.hello_timeout))
            if len(self._pending) > self.MAX_PENDING:  # connections that never say hello cannot pile up
                self._close(self._pending[0], "tcp_too_many_pending")

    def _hello(self, client: _Client, frame) -> bool:
        """Check a hello; the client becomes the active one when it passes. False when it was dropped."""
        try:
            info = frame.hello()
        except ProtocolError as err:
            self._close(client, "malformed_frame", str(err))
            return False
        if not same_token(info.get("token"), self.token):
            self._close(client, "bad_token", "wrong or missing token")
            return False
        units = info.get("units")
        if isinstance(units, str):
            units = [units] * len(info["ch_names"])
        if units is not None and (not isinstance(units, list) or len(units) != len(info["ch_names"])):
            self._close(client, "malformed_frame", "'units' must be one string or one per channel")
            return False
        desc = StreamDescription([str(c) for c in info["ch_names"]], float(info["sfreq"]), units,
                                 f"tcp client {client.peer[0]}:{client.peer[1]}")
        problem = self.validate(desc) if frame.n_chans == len(desc.ch_names) else "n_chans disagrees with ch_names"
        if problem:
            self._close(client, "tcp_client_refused", problem)
            return False
        if client in self._pending:
            self._pending.remove(client)
            if self._active is not None:
                self._close(self._active, "tcp_client_replaced")
            self._active = client
        client.n_chans = len(desc.ch_names)
        self.description, self.connection = desc, self.connection + 1
        self._samples, self._last_ts = [], None
        self._arrival.reset()
        return True

    def _read(self, client: _Client, now: float) -> None:
        try:
            data = client.sock.recv(1 << 20)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._close(client, "tcp_client_error")
            return
        if not data:
            self._close(client, "tcp_client_closed")
            return
        try:
            frames = client.parser.feed(data)
        except ProtocolError as err:
            self._close(client, "malformed_frame", str(err))
            return
        for frame in frames:
            if frame.kind == HELLO:
                if not self._hello(client, frame):
                    return
            elif client is not self._active or frame.n_chans != client.n_chans:
                self._close(client, "malformed_frame", "data before a hello, or with another channel count")
                return
            elif frame.n_samples:
                self._samples.append(frame.samples())
                self._last_ts = frame.timestamp
                self._arrival.observe(frame.timestamp, now)

    def _poll(self) -> None:
        now = time.monotonic()
        self._accept()
        for client in list(self._pending):
            if now > client.deadline:
                self._close(client, "tcp_hello_timeout", f"no hello within {self.hello_timeout:g} s")
            else:
                self._read(client, now)
        if self._active is not None:
            self._read(self._active, now)

    def pull(self) -> tuple[np.ndarray, float | None]:
        """Accept and read the sockets without blocking, then return the active client's samples since the last
        pull: ``([n_chans, n] float32, the last frame's timestamp mapped to the local clock, or None)``.

        New connections, hellos, refusals, replacements and dropped clients are all handled here; none of them
        raises (each is counted in ``events``, and refusals are added to ``notices``).
        """
        self._poll()
        if not self._samples:
            n = len(self.description.ch_names) if self.description else 0
            return np.zeros((n, 0), dtype=np.float32), None
        chunk = np.concatenate(self._samples, axis=1) if len(self._samples) > 1 else self._samples[0]
        self._samples = []
        return chunk, self._arrival.to_local(self._last_ts)

    def wait(self, timeout: float) -> None:
        """Block until a socket has something to read or ``timeout`` passes."""
        if self._samples:
            return
        sockets = [self.server] + [c.sock for c in self._pending] + ([self._active.sock] if self._active else [])
        select.select(sockets, [], [], max(0.0, timeout))

    @property
    def clock_offset(self) -> float | None:
        """Local minus sender clock (s), plus the smallest transport delay: the kept lower envelope of arrival
        time minus frame timestamp (:class:`~.clock.ArrivalClock`); None before a connection's first data frame."""
        return self._arrival.offset

    @property
    def clock_settled(self) -> bool:
        """Whether the offset estimate is established, so that a jump of it is a fault (:mod:`.clock`)."""
        return self._arrival.settled

    def close(self) -> None:
        """Close every client connection and the listening socket."""
        for client in [self._active, *self._pending]:
            if client is not None:
                client.sock.close()
        self.server.close()


class ReplayInput:
    """A recording played at real-time pace (for rehearsals), read without MNE.

    Formats: ``.npz`` with ``data`` ([n_chans, n_samples]), ``ch_names``, ``sfreq`` and optionally
    ``units`` (one string, or one per channel; absent = the model's), or EDF/BDF through edfio (physical
    dimensions converted to volts). FIF needs MNE: replay it over LSL with ``mne_lsl.player.PlayerLSL``
    and serve ``lsl:NAME`` instead.
    """

    wakes_on_arrival = False

    def __init__(self, path: str | Path, speed: float = 1.0):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Replay file not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            with np.load(path) as f:
                self.data = np.asarray(f["data"], dtype=np.float32)
                ch_names = [str(c) for c in f["ch_names"]]
                sfreq = float(f["sfreq"])
                units = [str(u) for u in np.atleast_1d(f["units"])] if "units" in f.files else None
            if units is not None and len(units) == 1:
                units = units * len(ch_names)
        elif suffix in (".edf", ".bdf"):
            self.data, ch_names, sfreq, units = _read_edf(path)
        else:
            raise ValueError(f"Replay supports .npz, .edf and .bdf files, not {suffix!r} ({path}); "
                             "for FIF, replay over LSL (mne_lsl.player.PlayerLSL) and serve lsl:NAME.")
        self.description = StreamDescription(ch_names, sfreq, units, f"replay:{path}")
        self.connection = 1
        self.speed = speed
        self._t0: float | None = None
        self._sent = 0
        self.clock = time.monotonic

    def pull(self) -> tuple[np.ndarray, float | None]:
        """The samples due by now at ``speed`` x real time since the first pull: ``([n_chans, n] float32, the
        time the last of them was due on the local monotonic clock, or None when none are due)``."""
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        sfreq = self.description.sfreq
        due = min(self.data.shape[1], int((now - self._t0) * sfreq * self.speed))
        chunk = self.data[:, self._sent : due]
        self._sent = max(self._sent, due)
        ts = self._t0 + self._sent / (sfreq * self.speed) if chunk.shape[1] else None
        return chunk, ts

    def wait(self, timeout: float) -> None:
        """Sleep until the next sample is due (or ``timeout``)."""
        if self._t0 is None:
            return
        due = self._t0 + (self._sent + 1) / (self.description.sfreq * self.speed)
        time.sleep(max(0.0, min(timeout, due - time.monotonic())))

    @property
    def finished(self) -> bool:
        """Whether every sample of the recording has been pulled."""
        return self._sent >= self.data.shape[1]

    def close(self) -> None:
        """Nothing to release (the recording was read whole at construction)."""


_TO_VOLTS = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "µv": 1e-6, "nv": 1e-9}


def _read_edf(path: Path) -> tuple[np.ndarray, list[str], float, list[str | None]]:
    import edfio

    edf = edfio.read_bdf(path) if path.suffix.lower() == ".bdf" else edfio.read_edf(path)
    signals = [s for s in edf.signals if s.label != "EDF Annotations"]
    rates = {s.sampling_frequency for s in signals}
    if len(rates) != 1:
        raise ValueError(f"{path} has signals at several rates {sorted(rates)}; replay needs one rate.")
    dims = [s.physical_dimension.strip().lower() for s in signals]
    data = np.stack([s.data * _TO_VOLTS.get(d, 1.0) for s, d in zip(signals, dims)]).astype(np.float32)
    units = ["V" if d in _TO_VOLTS else (d or None) for d in dims]
    return data, [s.label.strip() for s in signals], float(rates.pop()), units


def open_input(spec: str, *, validate: Callable[[StreamDescription], str | None], allow_remote: bool = False,
               token: str | None = None, resolve_timeout: float = 10.0, hello_timeout: float = 2.0, events=None):
    """Parse ``lsl:NAME[?source_id=ID]``, ``tcp://HOST:PORT`` or ``replay:FILE`` and connect.

    ``validate`` checks a TCP client's hello (the other inputs are checked by the caller at start)."""
    if spec.startswith("lsl:"):
        name, _, query = spec[4:].partition("?")
        params = parse_qs(query)
        unknown = sorted(set(params) - {"source_id"})
        if unknown or not name:
            raise ValueError(f"Input {spec!r}: use lsl:NAME or lsl:NAME?source_id=ID.")
        return LSLInput(name, params.get("source_id", [None])[0], resolve_timeout)
    if spec.startswith("replay:"):
        return ReplayInput(spec[7:])
    if spec.startswith("tcp://"):
        url = urlparse(spec)
        if url.port is None:
            raise ValueError(f"Input {spec!r} needs a port: tcp://127.0.0.1:PORT.")
        host = url.hostname or "127.0.0.1"
        check_bind_address(host, allow_remote, token, "Listening")
        return TCPInput(host, url.port, validate=validate, token=token, hello_timeout=hello_timeout, events=events)
    raise ValueError(f"Unknown input {spec!r}; use lsl:NAME, tcp://127.0.0.1:PORT or replay:FILE.")


__all__ = ["LOOPBACK", "LSLInput", "TCPInput", "ReplayInput", "check_bind_address", "open_input", "same_token"]
