"""Cue markers from LSL: string markers of every stream of one name, on this computer's clock.

The paradigm's cues come as string markers on an LSL stream (``bmi-cues`` by default: the operator console's
cue page, or ``bmi calibrate``'s terminal display). The simulated amplifier answers them and the recorder
writes them as annotations; both listen with :class:`MarkerListener`, which picks up a stream that starts
later or comes back (a restarted console), and puts every marker's timestamp on the local clock with liblsl's
time correction, so a marker lands on the right sample whichever computer sent it.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class MarkerListener:
    """Markers of every LSL stream called ``name``, read by background threads; take them with :meth:`drain`."""

    def __init__(self, name: str, resolve_every: float = 1.0):
        if not name:
            raise ValueError("'name' of the cue marker stream must not be empty (e.g. bmi-cues).")
        self.name = name
        self._inlets: dict[str, list] = {}  # uid -> [inlet, clock offset, source id]
        self._lock = threading.Lock()
        self._markers: deque[tuple[float, str]] = deque()
        self._seen: deque[tuple[str, float, str]] = deque(maxlen=256)  # (source id, stamp, label) of recent markers
        self._closing = threading.Event()
        self.received = 0
        self.refused: list[str] = []  # streams of that name that are not string markers
        self._resolver = threading.Thread(target=self._resolve_loop, args=(resolve_every,), name="cue-resolve", daemon=True)
        self._puller = threading.Thread(target=self._pull_loop, name="cue-pull", daemon=True)
        self._resolver.start()
        self._puller.start()

    @property
    def n_streams(self) -> int:
        return len(self._inlets)

    def _resolve_loop(self, every: float) -> None:
        from mne_lsl.lsl import StreamInlet, resolve_streams

        while not self._closing.is_set():
            try:
                # a large minimum: look for the whole timeout, so a second stream of that name is found too
                found = resolve_streams(timeout=0.5, name=self.name, minimum=1024)
            except Exception:  # a network hiccup must not end the listener
                found = []
            for sinfo in found:
                if sinfo.uid in self._inlets or sinfo.uid in self.refused:
                    continue
                if sinfo.dtype != "string" or sinfo.sfreq != 0:  # not an irregular string-marker stream
                    self.refused.append(sinfo.uid)
                    continue
                try:
                    inlet = StreamInlet(sinfo, max_buffered=360, recover=True)
                    inlet.open_stream(timeout=2.0)
                    offset = inlet.time_correction(timeout=2.0)
                except Exception:
                    continue  # gone again; the next pass may find it
                with self._lock:
                    self._inlets[sinfo.uid] = [inlet, offset, sinfo.source_id]
            self._closing.wait(every)

    def _pull_loop(self) -> None:
        next_sync = time.monotonic() + 2.0
        while not self._closing.wait(0.005):
            with self._lock:
                inlets = list(self._inlets.values())
            sync = time.monotonic() >= next_sync
            for entry in inlets:
                inlet = entry[0]
                try:
                    if sync:
                        entry[1] = inlet.time_correction(timeout=0.5)
                    samples, stamps = inlet.pull_chunk(timeout=0.0)
                except Exception:  # a lost stream: liblsl recovers it, or the resolver finds its successor
                    continue
                for sample, stamp in zip(samples, stamps):
                    # liblsl recovers a lost inlet onto a new outlet with the same source id (a restarted console)
                    # while the resolver opens one for it too: the same marker then arrives twice
                    key = (entry[2], float(stamp), str(sample[0]))
                    if entry[2] and key in self._seen:
                        continue
                    self._seen.append(key)
                    self._markers.append((float(stamp) + entry[1], str(sample[0])))
                    self.received += 1
            if sync:
                next_sync = time.monotonic() + 2.0

    def drain(self) -> list[tuple[float, str]]:
        """Markers received since the last call: (time on the local LSL clock, label), oldest first."""
        out = []
        while self._markers:
            out.append(self._markers.popleft())
        return sorted(out)

    def wait_for_stream(self, timeout: float) -> bool:
        """True as soon as one stream of that name is connected (False after ``timeout`` s)."""
        deadline = time.monotonic() + timeout
        while not self._inlets and time.monotonic() < deadline:
            time.sleep(0.02)
        return bool(self._inlets)

    def close(self) -> None:
        self._closing.set()
        self._resolver.join(timeout=3.0)
        self._puller.join(timeout=3.0)
        with self._lock:
            for inlet, *_ in self._inlets.values():
                try:
                    inlet.close_stream()
                except Exception:
                    pass
            self._inlets.clear()
