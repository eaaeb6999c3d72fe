"""An XDF writer for the tests, written from the XDF 1.0 specification chunk by chunk (github.com/sccn/xdf wiki,
"Specifications"), independent of the project's reader (``datasets.xdf``) and of its writer
(``datasets.xdf_writer``): the files the reader is tested on come from here.

Layout: the magic ``XDF:``, then chunks, each ``[NumLengthBytes: 1, 4 or 8][Length][Tag: uint16][Content]`` with
Length counting the tag and the content. Tags: 1 FileHeader (XML), 2 StreamHeader, 3 Samples, 4 ClockOffset,
5 Boundary, 6 StreamFooter; every stream chunk's content begins with the uint32 stream id. A Samples chunk holds
``[NumSamples as a variable-length int]`` and per sample ``[TimeStampBytes: 0 or 8][TimeStamp: double][values]``,
values little-endian in the channel format, strings each ``[variable-length int length][bytes]``.
"""

from __future__ import annotations

import struct
from xml.sax.saxutils import escape

import numpy as np

FORMATS = {"float32": "<f4", "double64": "<f8", "int8": "<i1", "int16": "<i2", "int32": "<i4", "int64": "<i8"}
BOUNDARY_UUID = bytes([0x43, 0xA5, 0x46, 0xDC, 0xCB, 0xF5, 0x41, 0x0F, 0xB3, 0x0E, 0xD5, 0x46, 0x73, 0x83, 0xCB, 0xE4])


def varlen(n: int) -> bytes:
    """A variable-length integer: one byte telling the width (1, 4 or 8), then the value."""
    if n < 256:
        return struct.pack("<BB", 1, n)
    if n < 2**32:
        return struct.pack("<BI", 4, n)
    return struct.pack("<BQ", 8, n)


def chunk(tag: int, content: bytes) -> bytes:
    return varlen(len(content) + 2) + struct.pack("<H", tag) + content


def stream_xml(name: str, stype: str, n_channels: int, rate: float, fmt: str, channels: list[dict] | None = None) -> str:
    desc = ""
    if channels:
        desc = "<channels>" + "".join(
            "<channel>" + "".join(f"<{k}>{escape(str(v))}</{k}>" for k, v in ch.items()) + "</channel>" for ch in channels
        ) + "</channels>"
    return (f'<?xml version="1.0"?><info><name>{escape(name)}</name><type>{escape(stype)}</type>'
            f"<channel_count>{n_channels}</channel_count><nominal_srate>{rate}</nominal_srate>"
            f"<channel_format>{fmt}</channel_format><source_id>{escape(name)}-src</source_id>"
            f"<created_at>0</created_at><uid>{escape(name)}-uid</uid><desc>{desc}</desc></info>")


class SpecStream:
    """One stream: its samples on its own clock, and its clock offsets (collection time, offset) as LabRecorder
    measures them: recorder time = stream time + offset."""

    def __init__(self, sid: int, name: str, stype: str, rate: float, fmt: str, n_channels: int,
                 channels: list[dict] | None = None):
        self.sid, self.name, self.rate, self.fmt, self.n = sid, name, rate, fmt, n_channels
        self.header = stream_xml(name, stype, n_channels, rate, fmt, channels)
        self.samples: list[tuple[float, object]] = []
        self.offsets: list[tuple[float, float]] = []

    def samples_chunk(self, items: list[tuple[float, object]]) -> bytes:
        body = bytearray(struct.pack("<I", self.sid) + varlen(len(items)))
        for stamp, values in items:
            body += struct.pack("<Bd", 8, stamp)
            if self.fmt == "string":
                for value in values:
                    raw = str(value).encode("utf-8")
                    body += varlen(len(raw)) + raw
            else:
                body += np.asarray(values, dtype=FORMATS[self.fmt]).tobytes()
        return chunk(3, bytes(body))

    def footer(self) -> str:
        stamps = [t for t, _ in self.samples]
        offsets = "".join(f"<offset><time>{t!r}</time><value>{v!r}</value></offset>" for t, v in self.offsets)
        return (f'<?xml version="1.0"?><info><first_timestamp>{min(stamps, default=0)!r}</first_timestamp>'
                f"<last_timestamp>{max(stamps, default=0)!r}</last_timestamp><sample_count>{len(stamps)}"
                f"</sample_count><clock_offsets>{offsets}</clock_offsets></info>")


def write_spec_xdf(path, streams: list[SpecStream], chunk_samples: int = 50) -> None:
    """Write the streams as LabRecorder lays them out: headers, then samples interleaved in chunks with clock
    offsets and a boundary chunk, then the footers."""
    out = bytearray(b"XDF:")
    out += chunk(1, b'<?xml version="1.0"?><info><version>1.0</version></info>')
    for s in streams:
        out += chunk(2, struct.pack("<I", s.sid) + s.header.encode("utf-8"))
    longest = max(len(s.samples) for s in streams)
    for start in range(0, max(longest, 1), chunk_samples):
        for s in streams:
            part = s.samples[start : start + chunk_samples]
            if part:
                out += s.samples_chunk(part)
        if start == 0:
            out += chunk(5, BOUNDARY_UUID)
    for s in streams:
        for t, v in s.offsets:
            out += chunk(4, struct.pack("<Idd", s.sid, t, v))
    for s in streams:
        out += chunk(6, struct.pack("<I", s.sid) + s.footer().encode("utf-8"))
    with open(path, "wb") as fh:
        fh.write(bytes(out))
