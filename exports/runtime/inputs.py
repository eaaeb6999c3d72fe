"""Stream sources: ``lsl:NAME``, ``tcp://127.0.0.1:PORT`` and ``replay:FILE``.

Each gives ``ch_names`` and ``sfreq`` once connected, and ``pull()`` returns what has arrived,
``([n_chans, n] float32, timestamp of the last sample or None)``, without waiting.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from .protocol import DATA, HELLO, FrameParser, ProtocolError

LOOPBACK = ("127.0.0.1", "localhost", "::1")


# liblsl channel formats -> numpy dtypes (cf_float32=1, cf_double64=2, cf_int32=4, cf_int16=5, cf_int8=6, cf_int64=7)
_LSL_DTYPES = {1: np.float32, 2: np.float64, 4: np.int32, 5: np.int16, 6: np.int8, 7: np.int64}


class LSLInput:
    """A Lab Streaming Layer inlet resolved by stream name. liblsl recovers a lost stream by itself when
    an outlet with the same source id comes back; the watchdog covers the gap."""

    def __init__(self, name: str, resolve_timeout: float = 10.0):
        import pylsl

        streams = pylsl.resolve_byprop("name", name, timeout=resolve_timeout)
        if not streams:
            raise RuntimeError(f"No LSL stream named {name!r} found within {resolve_timeout:g} s.")
        self.inlet = pylsl.StreamInlet(streams[0], max_buflen=30, recover=True)
        info = self.inlet.info(timeout=resolve_timeout)
        self.sfreq = float(info.nominal_srate())
        labels = info.get_channel_labels() or []
        self.ch_names = [str(c) for c in labels] if labels and all(labels) else [f"ch{i}" for i in range(info.channel_count())]
        dtype = _LSL_DTYPES.get(info.channel_format())
        if dtype is None:
            raise ValueError(f"LSL stream {name!r} carries {info.channel_format()!r} samples; a numeric stream is needed.")
        self._buf = np.zeros((max(1, int(self.sfreq)), info.channel_count()), dtype=dtype)
        self.inlet.open_stream(timeout=resolve_timeout)
        self.clock = pylsl.local_clock

    def pull(self) -> tuple[np.ndarray, float | None]:
        _, stamps = self.inlet.pull_chunk(timeout=0.0, max_samples=len(self._buf), dest_obj=self._buf)
        n = len(stamps)
        if not n:
            return self._buf[:0].T, None
        return self._buf[:n].T.astype(np.float32), float(stamps[-1])

    def close(self) -> None:
        self.inlet.close_stream()


class TCPInput:
    """Listens for one amplifier client at a time speaking the protocol in :mod:`.protocol`.

    A client that sends a malformed or oversized frame, the wrong token or another channel set is
    dropped and counted; the server keeps running and accepts the next one.
    """

    def __init__(self, host: str, port: int, *, token: str | None = None, max_payload: int = 4 << 20,
                 connect_timeout: float = 30.0, events=None):
        self.token, self.max_payload, self.events = token, max_payload, events
        self.server = socket.create_server((host, port))
        self.server.setblocking(False)
        self.conn: socket.socket | None = None
        self.parser = FrameParser(max_payload)
        self.ch_names: list[str] | None = None
        self.sfreq: float | None = None
        self._pending: list[np.ndarray] = []
        self._last_ts: float | None = None
        deadline = time.monotonic() + connect_timeout
        while self.ch_names is None:  # the first hello tells the channels and the rate
            if time.monotonic() > deadline:
                raise RuntimeError(f"No TCP client sent a hello frame on {host}:{port} within {connect_timeout:g} s.")
            self._poll()
            time.sleep(0.005)
        self.clock = time.monotonic

    def _count(self, event: str) -> None:
        if self.events is not None:
            self.events[event] += 1

    def _drop(self, event: str) -> None:
        self._count(event)
        if self.conn is not None:
            self.conn.close()
        self.conn, self.parser = None, FrameParser(self.max_payload)

    def _poll(self) -> None:
        if self.conn is None:
            try:
                self.conn, _ = self.server.accept()
                self.conn.setblocking(False)
                self._hello_done = False
            except BlockingIOError:
                return
        try:
            data = self.conn.recv(1 << 20)
        except BlockingIOError:
            return
        except OSError:
            self._drop("tcp_client_error")
            return
        if not data:
            self._drop("tcp_client_closed")
            return
        try:
            frames = self.parser.feed(data)
        except ProtocolError:
            self._drop("malformed_frame")
            return
        for frame in frames:
            if frame.kind == HELLO:
                try:
                    info = frame.hello()
                except ProtocolError:
                    self._drop("malformed_frame")
                    return
                if self.token is not None and info.get("token") != self.token:
                    self._drop("bad_token")
                    return
                if self.ch_names is None:
                    self.ch_names, self.sfreq = [str(c) for c in info["ch_names"]], float(info["sfreq"])
                elif info["ch_names"] != self.ch_names or float(info["sfreq"]) != self.sfreq:
                    self._drop("client_channel_mismatch")
                    return
                self._hello_done = True
            elif frame.kind == DATA:
                if not self._hello_done or frame.n_chans != len(self.ch_names):
                    self._drop("malformed_frame")
                    return
                self._pending.append(frame.samples())
                self._last_ts = frame.timestamp

    def pull(self) -> tuple[np.ndarray, float | None]:
        self._poll()
        if not self._pending:
            return np.zeros((len(self.ch_names), 0), dtype=np.float32), None
        chunk = np.concatenate(self._pending, axis=1) if len(self._pending) > 1 else self._pending[0]
        self._pending = []
        return chunk, self._last_ts

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.server.close()


class ReplayInput:
    """A recording played at real-time pace (for rehearsals), read without MNE.

    Formats: ``.npz`` with ``data`` ([n_chans, n_samples], volts/tesla), ``ch_names`` and ``sfreq``, or
    EDF/BDF through edfio (physical units converted to volts). FIF needs MNE: replay it over LSL with
    ``mne_lsl.player.PlayerLSL`` and serve ``lsl:NAME`` instead.
    """

    def __init__(self, path: str | Path, speed: float = 1.0):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"Replay file not found: {path}")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            with np.load(path) as f:
                self.data = np.asarray(f["data"], dtype=np.float32)
                self.ch_names = [str(c) for c in f["ch_names"]]
                self.sfreq = float(f["sfreq"])
        elif suffix in (".edf", ".bdf"):
            self.data, self.ch_names, self.sfreq = _read_edf(path)
        else:
            raise ValueError(f"Replay supports .npz, .edf and .bdf files, not {suffix!r} ({path}); "
                             "for FIF, replay over LSL (mne_lsl.player.PlayerLSL) and serve lsl:NAME.")
        self.speed = speed
        self._t0: float | None = None
        self._sent = 0
        self.clock = time.monotonic

    def pull(self) -> tuple[np.ndarray, float | None]:
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        due = min(self.data.shape[1], int((now - self._t0) * self.sfreq * self.speed))
        chunk = self.data[:, self._sent : due]
        self._sent = max(self._sent, due)
        ts = self._t0 + self._sent / (self.sfreq * self.speed) if chunk.shape[1] else None
        return chunk, ts

    @property
    def finished(self) -> bool:
        return self._sent >= self.data.shape[1]

    def close(self) -> None:
        pass


_UNITS = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "µv": 1e-6, "nv": 1e-9}


def _read_edf(path: Path) -> tuple[np.ndarray, list[str], float]:
    import edfio

    edf = edfio.read_bdf(path) if path.suffix.lower() == ".bdf" else edfio.read_edf(path)
    signals = [s for s in edf.signals if s.label != "EDF Annotations"]
    rates = {s.sampling_frequency for s in signals}
    if len(rates) != 1:
        raise ValueError(f"{path} has signals at several rates {sorted(rates)}; replay needs one rate.")
    data = np.stack([s.data * _UNITS.get(s.physical_dimension.strip().lower(), 1.0) for s in signals]).astype(np.float32)
    names = [s.label.strip() for s in signals]
    return data, names, float(rates.pop())


def open_input(spec: str, *, allow_remote: bool = False, token: str | None = None, resolve_timeout: float = 10.0,
               events=None):
    """Parse ``lsl:NAME``, ``tcp://HOST:PORT`` or ``replay:FILE`` and connect."""
    if spec.startswith("lsl:"):
        return LSLInput(spec[4:], resolve_timeout)
    if spec.startswith("replay:"):
        return ReplayInput(spec[7:])
    if spec.startswith("tcp://"):
        url = urlparse(spec)
        if url.port is None:
            raise ValueError(f"Input {spec!r} needs a port: tcp://127.0.0.1:PORT.")
        host = url.hostname or "127.0.0.1"
        if host not in LOOPBACK and not (allow_remote and token):
            raise ValueError(f"Listening on {host} (not loopback) needs --allow-remote and a shared --token.")
        return TCPInput(host, url.port, token=token, connect_timeout=resolve_timeout, events=events)
    raise ValueError(f"Unknown input {spec!r}; use lsl:NAME, tcp://127.0.0.1:PORT or replay:FILE.")


__all__ = ["LSLInput", "TCPInput", "ReplayInput", "open_input"]
