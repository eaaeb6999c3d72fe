"""The TCP input's framed binary protocol (little-endian), and an incremental parser that never trusts
its input.

Every frame is a 24-byte header followed by a payload::

    offset size  field
    0      4     magic b"BMI1"
    4      1     type: b"H" hello (payload: UTF-8 JSON) or b"D" data (payload: float32 samples)
    5      1     reserved, 0
    6      2     n_chans    uint16
    8      4     n_samples  uint32
    12     8     timestamp  float64 (sender's clock, seconds, of the LAST sample in the frame)
    20     4     payload_len uint32 (bytes)

A client first sends one hello frame whose JSON holds ``{"ch_names": [...], "sfreq": float}`` (plus
``"token"`` when the server requires one, and optionally ``"units"``: one unit for every channel or a
list, e.g. ``"uV"``), within the server's hello timeout, then data frames whose payload is
``n_samples x n_chans`` float32 values, sample-major (``payload_len == 4 * n_chans * n_samples``), each
stamped with the sender's clock at its last sample (any clock: the server estimates the offset, see
:mod:`.clock`). Frames larger than ``max_payload`` bytes, a wrong magic, type or length are protocol
errors: the server drops that client (and counts it) and keeps running. A hello the server refuses
(channels, rate, units, token) is answered with one line of JSON, ``{"error": reason}``, before the
connection closes. A new hello restarts the server's pipeline (filters settle again).
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import numpy as np

MAGIC = b"BMI1"
HEADER = struct.Struct("<4sBBHIdI")
HELLO, DATA = ord("H"), ord("D")
DEFAULT_MAX_PAYLOAD = 4 * 1024 * 1024


class ProtocolError(ValueError):
    """A malformed or oversized frame."""


@dataclass
class Frame:
    kind: int
    n_chans: int
    n_samples: int
    timestamp: float
    payload: bytes

    def samples(self) -> np.ndarray:
        """Data as ``[n_chans, n_samples]`` float32."""
        return np.frombuffer(self.payload, dtype="<f4").reshape(self.n_samples, self.n_chans).T

    def hello(self) -> dict[str, Any]:
        """A hello frame's JSON (``ch_names``, ``sfreq``, optional ``token`` and ``units``); ProtocolError if not."""
        try:
            info = json.loads(self.payload.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise ProtocolError(f"hello frame is not UTF-8 JSON: {err}") from None
        if not isinstance(info, dict) or not isinstance(info.get("ch_names"), list) or not isinstance(info.get("sfreq"), (int, float)):
            raise ProtocolError("hello frame must hold {'ch_names': [...], 'sfreq': number}")
        return info


def encode_hello(ch_names: list[str], sfreq: float, token: str | None = None, units: str | list[str] | None = None) -> bytes:
    """The hello frame a TCP client sends first.

    Parameters
    ----------
    ch_names : list of str
        The channels, in the order of every data frame's samples.
    sfreq : float
        The sampling rate in Hz.
    token : str, optional
        The shared token, when the server requires one.
    units : str or list of str, optional
        One unit for every channel (``"uV"``) or one per channel.

    Returns
    -------
    bytes
        The frame: the 24-byte header and its UTF-8 JSON payload.
    """
    body: dict[str, Any] = {"ch_names": list(ch_names), "sfreq": float(sfreq)}
    if token is not None:
        body["token"] = token
    if units is not None:
        body["units"] = units
    payload = json.dumps(body).encode()
    return HEADER.pack(MAGIC, HELLO, 0, len(ch_names), 0, 0.0, len(payload)) + payload


def encode_data(samples: np.ndarray, timestamp: float) -> bytes:
    """``samples`` is ``[n_chans, n_samples]``."""
    data = np.ascontiguousarray(np.asarray(samples, dtype="<f4").T)
    n_samples, n_chans = data.shape
    return HEADER.pack(MAGIC, DATA, 0, n_chans, n_samples, float(timestamp), data.nbytes) + data.tobytes()


class FrameParser:
    """Feed it bytes as they arrive; it returns complete frames or raises :class:`ProtocolError`."""

    def __init__(self, max_payload: int = DEFAULT_MAX_PAYLOAD):
        self.max_payload = max_payload
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[Frame]:
        """Add ``data`` (bytes as they arrived, any split); returns the frames now complete, in order.

        Raises :class:`ProtocolError` on a bad magic, type, length or timestamp, or a payload over ``max_payload``.
        """
        self._buf += data
        frames = []
        while len(self._buf) >= HEADER.size:
            magic, kind, _reserved, n_chans, n_samples, ts, length = HEADER.unpack_from(self._buf)
            if magic != MAGIC:
                raise ProtocolError(f"bad magic {bytes(magic)!r} (expected {MAGIC!r})")
            if kind not in (HELLO, DATA):
                raise ProtocolError(f"unknown frame type {kind}")
            if length > self.max_payload:
                raise ProtocolError(f"frame payload of {length} bytes exceeds the maximum {self.max_payload}")
            if kind == DATA and length != 4 * n_chans * n_samples:
                raise ProtocolError(f"data frame length {length} != 4 x {n_chans} channels x {n_samples} samples")
            if kind == DATA and not np.isfinite(ts):
                raise ProtocolError("data frame timestamp is not finite")
            if len(self._buf) < HEADER.size + length:
                break
            payload = bytes(self._buf[HEADER.size : HEADER.size + length])
            del self._buf[: HEADER.size + length]
            frames.append(Frame(kind, n_chans, n_samples, ts, payload))
        return frames
