"""The session log (CSV of every message), written by a background thread.

The decoding loop only puts a row on a queue: a slow disk never delays a decision, and a failing one
(full, removed, read-only) is reported once and counted while decoding goes on.
"""

from __future__ import annotations

import csv
import queue
import sys
import threading
from pathlib import Path
from typing import Any


class SessionLog:
    def __init__(self, path: Path, fields: list[str], open_now: bool = True):
        """``open_now``: open the file here, so a path that cannot be opened is refused at once (the server's
        start); else the writer thread opens it (a log started from the console: the decoding loop never waits on
        a disk) and a failure is reported in :attr:`error`."""
        self.path, self.fields = path, fields
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self.rows_written = 0
        self.error: str | None = None
        self._fh = None
        if open_now:
            self._open(refuse=True)
        self._thread = threading.Thread(target=self._run, name="session-log", daemon=True)
        self._thread.start()

    def _open(self, refuse: bool = False) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fh = self.path.open("w", newline="")
        except OSError as err:
            if refuse:
                raise
            self._fail(err)
            return
        self._writer = csv.DictWriter(self._fh, fieldnames=self.fields, extrasaction="ignore")
        try:
            self._writer.writeheader()
            self._fh.flush()
        except OSError as err:
            self._fail(err)

    def write(self, row: dict[str, Any]) -> None:
        if self.error is None:
            self._queue.put(row)

    def _run(self) -> None:
        if self._fh is None and self.error is None:
            self._open()
        while True:
            row = self._queue.get()
            if row is None:
                self._close_file()
                return
            if self.error is not None:
                continue
            try:
                self._writer.writerow(row)
                self.rows_written += 1
                if self._queue.empty():
                    self._fh.flush()
            except (OSError, ValueError) as err:  # ValueError: the file was closed under us
                self._fail(err)

    def _fail(self, err: Exception) -> None:
        self.error = f"{type(err).__name__}: {err}"
        sys.stderr.write(f"\nbmi serve: the session log {self.path} failed ({self.error}); decoding goes on without it.\n")

    def close(self, wait: bool = True, timeout: float = 5.0) -> None:
        """Write what is queued and close the file; ``wait=False`` returns at once (the decoding loop never
        waits on a disk) and the writer thread finishes on its own."""
        self._queue.put(None)
        if wait:
            self._thread.join(timeout)

    def _close_file(self) -> None:
        if self._fh is None:
            return
        try:
            self._fh.close()
        except OSError as err:  # the last buffered rows could not be written
            if self.error is None:
                self._fail(err)
