"""Scoring online decisions against the cues of a session (``bmi serve --cues lsl:NAME``).

Cues arrive as an LSL marker stream recorded beside the amplifier: string markers (the cue's name), or
mne-lsl's annotation stream (one channel per description, the value the duration). Names go through the
model's training event mapping (``T1`` -> ``left``), so the stream that trained the model scores it.

Two scores, as the offline test would count them:

- *cue period*: every decision whose window ended between cue + tmin and cue + tmax of the training
  window (what the hand did while the patient was cued);
- *training window*: for each cue, the decision whose window ended closest to cue + tmax, within one hop,
  scored by the model's own output (argmax of its probabilities, before smoothing) -- the same window the
  offline test scores, so the two must agree.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np


def balanced_accuracy(y_true: list[int], y_pred: list[int], n_classes: int) -> float | None:
    """Mean recall over the classes present (None without any trial)."""
    if not y_true:
        return None
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    recalls = [float(np.mean(y_pred[y_true == c] == c)) for c in range(n_classes) if np.any(y_true == c)]
    return float(np.mean(recalls))


def score_cues(decisions: list[tuple[float, int, str]], cues: list[tuple[float, float, str]], classes: list[str],
               tmin: float, tmax: float, hop_s: float) -> dict[str, Any]:
    """``decisions``: (window end time, argmax class index, command); ``cues``: (onset, duration, class), all
    times on one clock."""
    ends = np.array([d[0] for d in decisions]) if decisions else np.zeros(0)
    period_true, period_pred, window_true, window_pred = [], [], [], []
    for onset, _duration, name in cues:
        y = classes.index(name)
        inside = np.flatnonzero((ends >= onset + tmin) & (ends <= onset + tmax))
        period_true += [y] * len(inside)
        period_pred += [classes.index(decisions[i][2]) if decisions[i][2] in classes else -1 for i in inside]
        if len(ends):
            i = int(np.argmin(np.abs(ends - (onset + tmax))))
            if abs(ends[i] - (onset + tmax)) <= hop_s:
                window_true.append(y)
                window_pred.append(decisions[i][1])
    n = len(classes)
    return {
        "n_cues": len(cues),
        "cue_period": {"n_decisions": len(period_true), "balanced_accuracy": balanced_accuracy(period_true, period_pred, n),
                       "accuracy": float(np.mean(np.equal(period_true, period_pred))) if period_true else None},
        "training_window": {"n_trials": len(window_true), "balanced_accuracy": balanced_accuracy(window_true, window_pred, n),
                            "accuracy": float(np.mean(np.equal(window_true, window_pred))) if window_true else None},
        "window": {"tmin": tmin, "tmax": tmax, "tolerance_s": hop_s},
    }


class CueInlet:
    """An LSL marker stream of cues, its timestamps put on the local clock (time correction in a thread, as
    for the signal stream: the decoding loop never waits on it)."""

    def __init__(self, name: str, event_map: dict[str, str], classes: list[str], resolve_timeout: float = 10.0):
        import pylsl

        from .inputs import resolve_lsl

        found = resolve_lsl(name, None, resolve_timeout)
        self.inlet = pylsl.StreamInlet(found, max_buflen=360, recover=True)
        info = self.inlet.info(timeout=resolve_timeout)
        self.labels = info.get_channel_labels() or [f"ch{i}" for i in range(info.channel_count())]
        self.strings = info.channel_format() == pylsl.cf_string
        self.map, self.classes = event_map, classes
        self.cues: list[tuple[float, float, str]] = []
        self.unmatched: dict[str, int] = {}
        self.inlet.open_stream(timeout=resolve_timeout)
        self.clock_offset = self.inlet.time_correction(timeout=resolve_timeout)
        self._closing = threading.Event()
        self._sync = threading.Thread(target=self._track_clock, name="lsl-cue-clock", daemon=True)
        self._sync.start()

    def _track_clock(self) -> None:
        while not self._closing.wait(1.0):
            try:
                self.clock_offset = self.inlet.time_correction(timeout=2.0)
            except Exception:
                pass

    def _add(self, t: float, label: str, duration: float) -> None:
        name = self.map.get(label, label)
        if name in self.classes:
            self.cues.append((t + self.clock_offset, duration, name))
        else:
            self.unmatched[label] = self.unmatched.get(label, 0) + 1

    def pull(self) -> None:
        samples, stamps = self.inlet.pull_chunk(timeout=0.0)
        for sample, t in zip(samples, stamps):
            if self.strings:
                self._add(t, str(sample[0]), 0.0)
            else:  # mne-lsl annotations: one channel per description, the value its duration (-1: none)
                for label, value in zip(self.labels, sample):
                    if value != 0:
                        self._add(t, label, max(0.0, float(value)))

    def close(self) -> None:
        self._closing.set()
        self._sync.join(timeout=3.0)
        self.inlet.close_stream()
