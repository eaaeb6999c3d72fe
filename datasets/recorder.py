"""Record a live LSL signal stream and its cue markers into FIF files that survive a crash at any moment.

The stream's description becomes the recording's :class:`mne.Info` through mne-lsl
(:meth:`mne_lsl.lsl.StreamInfo.get_channel_info`: names, types, units, positions), and its samples are put in
SI units as MNE keeps them. Markers become annotations at the sample of their timestamp (both clocks corrected
to this computer's with liblsl), with the duration given per label.

A recording can be written as XDF too (or instead): the signal and marker streams as LabRecorder would write
them (:mod:`datasets.xdf_writer`), the signal in the stream's own units and format under its own XML header, the
markers at their own times; both streams' stamps on this computer's clock.

Crash safety: every ``flush_seconds`` the whole recording so far is written to a temporary file beside the
target and renamed over it (:func:`datasets.atomic.atomic_path`), so a SIGKILL, a power cut or Ctrl-C leaves the
last complete version: a readable file holding everything up to at most ``flush_seconds`` (plus one write)
before the end.
Rewriting costs a time that grows with the file (measured in ``stats``); to keep it below about a tenth of the
wall time the interval stretches to ten times the last write's duration when that is longer.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .atomic import atomic_path


@dataclass
class FlushStats:
    count: int = 0
    seconds_total: float = 0.0
    seconds_max: float = 0.0
    interval_max: float = 0.0  # the longest stretch between two complete files on disk (the most a crash loses)
    seconds_last: float = 0.0
    bytes_last: int = 0


@dataclass
class RecordingFile:
    """One recording being written: the samples and markers so far, rewritten whole by :meth:`flush`.

    ``path`` ending in ``.xdf`` is written as XDF only, else as FIF; ``also_xdf`` writes an XDF file there too.
    XDF needs ``xdf_header`` (the signal stream's XML), ``to_si`` (per channel, stream units -> SI) and
    ``cue_stream`` (the marker stream's name)."""

    path: Path
    info: object  # mne.Info in SI units
    durations: dict[str, float] = field(default_factory=dict)  # label -> annotation duration (s)
    description: str = ""
    also_xdf: Path | None = None
    xdf_header: str | None = None
    to_si: np.ndarray | None = None
    cue_stream: str = "markers"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.xdf_path = self.path if self.path.suffix == ".xdf" else (Path(self.also_xdf) if self.also_xdf else None)
        if self.xdf_path is not None and self.xdf_header is None:
            raise ValueError(f"Writing {self.xdf_path} as XDF needs the signal stream's XML header ('xdf_header').")
        self.sfreq = float(self.info["sfreq"])
        self._data = np.empty((len(self.info["ch_names"]), int(60 * self.sfreq)))
        self._times = np.empty(self._data.shape[1])
        self.n = 0
        self._pending: list[tuple[float, str]] = []  # markers newer than the last sample
        self.annotations: list[tuple[int, str]] = []  # (sample, label)
        self.marker_times: list[tuple[float, str]] = []  # (LSL time, label) of each annotation, for XDF
        self.dropped_markers = 0  # markers from before the file's first sample
        self.wall_start: float | None = None
        self.stats = FlushStats()
        self._flushed_at = time.monotonic()
        self._written_n = -1

    def append(self, data: np.ndarray, times: np.ndarray) -> None:
        """``data`` [n_chans, n] in SI units, ``times`` [n] on the local LSL clock."""
        n = data.shape[1]
        if self.n + n > self._data.shape[1]:  # grow by doubling: appending stays linear
            grow = max(self._data.shape[1], n)
            self._data = np.concatenate([self._data, np.empty((self._data.shape[0], grow))], axis=1)
            self._times = np.concatenate([self._times, np.empty(grow)])
        if self.n == 0 and n:
            from mne_lsl.lsl import local_clock

            self.wall_start = time.time() - (local_clock() - float(times[0]))
        self._data[:, self.n : self.n + n] = data
        self._times[self.n : self.n + n] = times
        self.n += n
        self._place_markers()

    def mark(self, t: float, label: str) -> None:
        self._pending.append((t, label))
        self._place_markers()

    def _place_markers(self) -> None:
        if not self.n:
            return
        times, keep = self._times[: self.n], []
        for t, label in self._pending:
            if t < times[0] - 0.5 / self.sfreq:
                self.dropped_markers += 1
            elif t <= times[-1] + 0.5 / self.sfreq:
                self.annotations.append((int(np.argmin(np.abs(times - t))) if t <= times[-1] else self.n - 1, label))
                self.marker_times.append((t, label))
            else:
                keep.append((t, label))  # its sample has not arrived yet
        self._pending = keep

    @property
    def markers_received(self) -> int:
        return len(self.annotations) + len(self._pending)

    @property
    def seconds(self) -> float:
        return self.n / self.sfreq

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for _, label in self.annotations:
            out[label] = out.get(label, 0) + 1
        return out

    def flush(self) -> None:
        """Write everything so far: each file a temporary file, renamed over the target in one step."""
        if self.n == self._written_n or not self.n:
            return
        started = time.monotonic()
        if self.path.suffix != ".xdf":
            self._write_fif()
        if self.xdf_path is not None:
            self._write_xdf()
        done = time.monotonic()
        self.stats.count += 1
        self.stats.seconds_total += done - started
        self.stats.seconds_max = max(self.stats.seconds_max, done - started)
        self.stats.seconds_last = done - started
        self.stats.interval_max = max(self.stats.interval_max, done - self._flushed_at)
        self.stats.bytes_last = self.path.stat().st_size
        self._flushed_at, self._written_n = done, self.n

    def _write_xdf(self) -> None:
        from .xdf_writer import XdfStream, marker_header, write_xdf

        fmt = _channel_format(self.xdf_header)
        to_si = np.ones(self._data.shape[0]) if self.to_si is None else np.ravel(self.to_si)
        signal = XdfStream(self.xdf_header, self._times[: self.n], self._data[:, : self.n].T / to_si, fmt)
        stamps = np.array([t for t, _ in self.marker_times])
        cues = XdfStream(marker_header(self.cue_stream), stamps, [x for _, x in self.marker_times], "string")
        write_xdf(self.xdf_path, [signal, cues])

    def _write_fif(self) -> None:
        import mne

        raw = mne.io.RawArray(self._data[:, : self.n], self.info, verbose="error")
        raw.set_meas_date(self.wall_start)
        if self.annotations:
            onsets = np.array([s for s, _ in self.annotations]) / self.sfreq
            labels = [label for _, label in self.annotations]
            # a cue still running ends, for now, with the data
            durations = np.minimum([self.durations.get(x, 0.0) for x in labels], self.n / self.sfreq - onsets)
            raw.set_annotations(mne.Annotations(onsets, durations, labels, orig_time=raw.info["meas_date"]))
        with atomic_path(self.path, "_raw.fif") as tmp:  # MNE wants a FIF name
            raw.save(tmp, overwrite=True, verbose="error")

    def due(self, flush_seconds: float) -> bool:
        # the last write, not the longest: writes grow with the file, and one slow write (a busy disk, a
        # collection) must not stretch every later interval
        interval = max(flush_seconds, 10 * self.stats.seconds_last)
        return time.monotonic() - self._flushed_at >= interval


def _channel_format(header: str) -> str:
    """The ``channel_format`` of an LSL stream's XML header (float32 when it names none)."""
    import re

    found = re.search(r"<channel_format>\s*([a-z0-9]+)\s*</channel_format>", header)
    return found.group(1) if found else "float32"


def stream_units_to_si(info) -> np.ndarray:
    """Per channel, the factor from the stream's units to SI (mne-lsl reads them into ``unit_mul``); resets it."""
    factors = np.array([10.0 ** int(ch["unit_mul"]) for ch in info["chs"]])
    with info._unlock():
        for ch in info["chs"]:
            ch["unit_mul"] = 0
    return factors


def resolve_signal(name: str, timeout: float):
    """The one regularly sampled LSL stream called ``name``."""
    from mne_lsl.lsl import resolve_streams

    found = [s for s in resolve_streams(timeout=timeout, name=name, minimum=1) if s.sfreq > 0]
    if found:  # a moment longer: a second stream of that name may answer later
        found = [s for s in resolve_streams(timeout=0.5, name=name, minimum=len(found) + 1) if s.sfreq > 0] or found
    if not found:
        raise RuntimeError(f"No LSL signal stream named {name!r} found within {timeout:g} s (is the amplifier "
                           f"streaming? bmi amp --synthetic --name {name} simulates one).")
    unique = {s.uid: s for s in found}
    if len(unique) > 1:
        ids = ", ".join(f"{s.source_id!r} on {s.hostname}" for s in unique.values())
        raise RuntimeError(f"{len(unique)} LSL streams are named {name!r} ({ids}); stop the others or rename one.")
    return next(iter(unique.values()))


class Recorder:
    """Pulls one signal stream (and the cue markers) in a thread; :meth:`start_file` / :meth:`stop_file` choose
    which FIF file the samples go to (samples between files are not kept)."""

    def __init__(self, stream: str, cue_stream: str | None, *, durations: dict[str, float] | None = None,
                 flush_seconds: float = 2.0, resolve_timeout: float = 10.0):
        from mne_lsl.lsl import StreamInlet

        from .lsl_markers import MarkerListener

        if flush_seconds <= 0:
            raise ValueError(f"'flush_seconds' ({flush_seconds}) must be positive.")
        self.stream, self.flush_seconds, self.durations = stream, flush_seconds, dict(durations or {})
        sinfo = resolve_signal(stream, resolve_timeout)
        self.inlet = StreamInlet(sinfo, max_buffered=120, processing_flags=["clocksync", "dejitter"])
        self.inlet.open_stream(timeout=resolve_timeout)
        sinfo_full = self.inlet.get_sinfo(timeout=resolve_timeout)
        self.info = sinfo_full.get_channel_info()
        self.xml = sinfo_full.as_xml  # the stream's own header, for XDF files
        self.to_si = stream_units_to_si(self.info)[:, None]
        self.sfreq = float(self.info["sfreq"])
        self.markers = MarkerListener(cue_stream) if cue_stream else None
        self.cue_stream = cue_stream or "markers"
        self.current: RecordingFile | None = None
        self.last_sample_at = time.monotonic()  # when the last sample arrived (a stalled amplifier shows here)
        self.error: BaseException | None = None
        self._lock = threading.Lock()
        self._stop_at: float | None = None  # a file's end requested: pull until this LSL time, then write it
        self._stopped = threading.Event()
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)
        self._thread.start()

    def start_file(self, path: str | Path, description: str = "", also_xdf: str | Path | None = None) -> RecordingFile:
        """Record into ``path`` (``.xdf``: XDF only, else FIF) and, with ``also_xdf``, into that XDF file too."""
        if self.current is not None:
            raise RuntimeError(f"Already recording to {self.current.path}; stop it first.")
        rec = RecordingFile(Path(path), self.info.copy(), self.durations, description, also_xdf=also_xdf,
                            xdf_header=self.xml, to_si=self.to_si, cue_stream=self.cue_stream)
        with self.info._unlock():
            rec.info["description"] = description or None
        if self.markers is not None:
            self.markers.drain()  # markers from before the file belong to no file
        with self._lock:
            self.current = rec
        return rec

    def stop_file(self, timeout: float = 5.0) -> RecordingFile:
        """Take the samples up to now, write the file a last time and return it."""
        from mne_lsl.lsl import local_clock

        rec = self.current
        if rec is None:
            raise RuntimeError("Not recording.")
        self._stopped.clear()
        self._stop_at = local_clock()
        if not self._stopped.wait(timeout) or self.error is not None:  # the thread is gone: write from here
            with self._lock:
                self.current, self._stop_at = None, None
                rec.flush()
        return rec

    @property
    def seconds_since_data(self) -> float:
        return time.monotonic() - self.last_sample_at

    def _run(self) -> None:
        try:
            while not self._closing.is_set():
                data, stamps = self.inlet.pull_chunk(timeout=0.02, max_samples=max(1, int(self.sfreq)))
                if len(stamps):
                    self.last_sample_at = time.monotonic()
                with self._lock:
                    rec = self.current
                    if rec is not None:
                        if len(stamps):
                            rec.append(np.array(data, dtype=np.float64).T * self.to_si, np.array(stamps))
                        for t, label in (self.markers.drain() if self.markers else []):
                            rec.mark(t, label)
                        if self._stop_at is not None and (rec.n and rec._times[rec.n - 1] >= self._stop_at
                                                          or time.monotonic() - self.last_sample_at > 1.0):
                            rec.flush()
                            self.current, self._stop_at = None, None
                            self._stopped.set()
                        elif rec.due(self.flush_seconds):
                            rec.flush()
        except BaseException as err:  # reported by the next stop_file / the caller's checks
            self.error = err
            self._stopped.set()

    def close(self) -> None:
        self._closing.set()
        self._thread.join(timeout=5.0)
        if self.markers is not None:
            self.markers.close()
        try:
            self.inlet.close_stream()
        except Exception:
            pass
