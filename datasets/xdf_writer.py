"""Write LSL recordings as XDF files (the format LabRecorder writes), atomically.

Used by the calibration recorder (:mod:`datasets.recorder`) for ``bmi calibrate --format xdf|both``. The streams'
time stamps are written as given; the recorder passes them already on this computer's clock (liblsl's clock
correction and dejitter in the inlet), so each stream's clock offsets are written as 0, and a reader that applies
them (pyxdf) leaves the stamps as they are. Layout (XDF 1.0): ``XDF:``, a FileHeader chunk, one StreamHeader per
stream, Samples chunks, ClockOffset chunks, one StreamFooter per stream.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import escape

import numpy as np

from .atomic import atomic_path

#: LSL channel formats -> little-endian numpy types
DTYPES = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2", "int32": "<i4", "int64": "<i8"}
CHUNK_SAMPLES = 1024  # samples per Samples chunk


@dataclass
class XdfStream:
    """One stream to write: its XML header (``<info>`` with at least name, type, channel_count, nominal_srate and
    channel_format), time stamps [n] and values ([n, n_channels] numbers, or [n] strings for a marker stream)."""

    header: str
    stamps: np.ndarray
    values: object
    channel_format: str

    def __post_init__(self) -> None:
        if self.channel_format != "string" and self.channel_format not in DTYPES:
            raise ValueError(f"'channel_format' ({self.channel_format!r}) must be 'string' or one of {sorted(DTYPES)}.")


def marker_header(name: str, source_id: str = "") -> str:
    """The XML header of a one-channel string marker stream."""
    return (f'<?xml version="1.0"?><info><name>{escape(name)}</name><type>Markers</type><channel_count>1'
            f"</channel_count><nominal_srate>0</nominal_srate><channel_format>string</channel_format>"
            f"<source_id>{escape(source_id)}</source_id><desc /></info>")


def _varlen(n: int) -> bytes:
    return struct.pack("<BB", 1, n) if n < 256 else struct.pack("<BI", 4, n) if n < 2**32 else struct.pack("<BQ", 8, n)


def _chunk(tag: int, content: bytes) -> bytes:
    return _varlen(len(content) + 2) + struct.pack("<H", tag) + content


def _samples(sid: int, stream: XdfStream, start: int, stop: int) -> bytes:
    stamps = np.asarray(stream.stamps[start:stop], dtype="<f8")
    head = struct.pack("<I", sid) + _varlen(len(stamps))
    if stream.channel_format == "string":
        body = bytearray()
        for stamp, value in zip(stamps, stream.values[start:stop]):
            raw = str(value).encode("utf-8")
            body += struct.pack("<Bd", 8, stamp) + _varlen(len(raw)) + raw
        return _chunk(3, head + bytes(body))
    values = np.asarray(stream.values[start:stop])
    if stream.channel_format.startswith("int"):
        values = np.round(values)
    rows = np.empty(len(stamps), dtype=[("n", "u1"), ("t", "<f8"), ("v", DTYPES[stream.channel_format], values.shape[1:])])
    rows["n"], rows["t"], rows["v"] = 8, stamps, values  # every sample with its 8-byte time stamp
    return _chunk(3, head + rows.tobytes())


def xdf_bytes(streams: list[XdfStream]) -> bytes:
    """The whole file's bytes."""
    out = bytearray(b"XDF:")
    out += _chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for sid, s in enumerate(streams, start=1):
        out += _chunk(2, struct.pack("<I", sid) + s.header.encode("utf-8"))
    for sid, s in enumerate(streams, start=1):
        for start in range(0, len(s.stamps), CHUNK_SAMPLES):
            out += _samples(sid, s, start, start + CHUNK_SAMPLES)
    for sid, s in enumerate(streams, start=1):  # stamps already on this clock: offset 0
        first = float(s.stamps[0]) if len(s.stamps) else 0.0
        out += _chunk(4, struct.pack("<Idd", sid, first, 0.0))
    for sid, s in enumerate(streams, start=1):
        first, last = (float(s.stamps[0]), float(s.stamps[-1])) if len(s.stamps) else (0.0, 0.0)
        footer = (f'<?xml version="1.0"?><info><first_timestamp>{first!r}</first_timestamp><last_timestamp>{last!r}'
                  f"</last_timestamp><sample_count>{len(s.stamps)}</sample_count><clock_offsets><offset><time>"
                  f"{first!r}</time><value>0.0</value></offset></clock_offsets></info>")
        out += _chunk(6, struct.pack("<I", sid) + footer.encode("utf-8"))
    return bytes(out)


def write_xdf(path: str | Path, streams: list[XdfStream]) -> Path:
    """Write ``streams`` to ``path`` atomically (a temporary file renamed over it); returns the path.

    Parameters
    ----------
    path : str | Path
        The ``.xdf`` file to write (its folder is created).
    streams : list of XdfStream
        The streams, numbered from 1 in this order.

    Returns
    -------
    Path
        ``path``.
    """
    if not streams:
        raise ValueError("'streams' is empty: an XDF file needs at least one stream.")
    data = xdf_bytes(streams)
    with atomic_path(path, ".xdf") as tmp:
        tmp.write_bytes(data)
    return Path(path)
