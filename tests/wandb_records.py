"""Read the records of an offline W&B run file (``run-*.wandb``), so tests of any package can check what a run logged.

The file is W&B's LevelDB-style log: a 7-byte header (``:W&B``, key, version), then 32 KiB blocks of chunks,
each with a 7-byte header (CRC32, little-endian length, type FULL=1 / FIRST=2 / MIDDLE=3 / LAST=4) carrying
protobuf ``Record`` messages.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

BLOCK = 32768
FULL, LAST = 1, 4


def read_records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    if data[:4] != b":W&B":
        raise ValueError(f"{path} is not a W&B run file (header {data[:4]!r})")
    pos, pending, records = 7, b"", []
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:  # block trailer: the next chunk starts in the next block
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0:  # zero padding up to the next block
            pos += left
            continue
        if pos + 7 + length > len(data):  # the writer has not finished this chunk yet
            break
        pending += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (FULL, LAST):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def complete_records(path: Path, timeout: float = 20.0) -> list:
    """The records of a finished run: W&B's service process writes the file after ``wandb.finish()`` returns,
    so read until its ``exit`` record is there."""
    deadline = time.monotonic() + timeout
    while True:
        records = read_records(path)
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.05)


def history(records: list) -> list[dict]:
    """The logged rows (``run.log`` calls) among run records, flat keys with JSON-decoded values."""
    rows = []
    for record in records:
        if record.WhichOneof("record_type") == "history":
            rows.append({item.key or "/".join(item.nested_key): json.loads(item.value_json)
                         for item in record.history.item})
    return rows
