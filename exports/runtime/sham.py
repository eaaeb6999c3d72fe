"""Sham decoding for blinded control sessions: commands independent of the brain signal, with the same
timing (one per hop) and the same class and dwell-time statistics as the real decoder.

With a session log of a real decoder session (``--sham-source``), the sham replays that session's
command segments (a run of one command = one dwell) in a shuffled order, each with its recorded
probability vectors, so classes, dwell times and the messages' look all match. Without one, classes are
drawn uniformly with exponential dwell times of ``mean_dwell_s``. The wire format is identical; only
the session log says it was sham.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np


class ShamDecoder:
    def __init__(self, classes: list[str], hop_s: float, source: str | Path | None = None, mean_dwell_s: float = 1.5,
                 seed: int | None = None, level_pair: tuple[str, str] | None = None, hold: str = "hold",
                 hold_s: float = 0.0):
        """``hold`` for ``hold_s`` after every :meth:`reset`, as the real decoder's smoothing starts from hold."""
        self.classes, self.hold, self.hold_s = classes, hold, hold_s
        self.level_idx = tuple(classes.index(c) for c in level_pair) if level_pair else None
        self.rng = np.random.default_rng(seed)
        self.segments: list[list[dict]] = []
        if source is not None:
            self.segments = self._segments_from_log(Path(source))
        self.hop_s, self.mean_dwell_s = hop_s, mean_dwell_s
        self._queue: list[dict] = []
        self.reset()

    def reset(self) -> None:
        """A (re)start: hold for the dwell, then a fresh segment."""
        self._queue = []
        self._hold_left = int(np.ceil(self.hold_s / self.hop_s - 1e-9))

    def _segments_from_log(self, path: Path) -> list[list[dict]]:
        if not path.is_file():
            raise FileNotFoundError(f"Sham source log not found: {path}")
        segments: list[list[dict]] = []
        last = None
        with path.open() as fh:
            for row in csv.DictReader(fh):
                if row.get("type") != "decision" or row.get("sham") == "1":
                    continue
                probs = json.loads(row["probabilities"])
                if sorted(probs) != sorted(self.classes):
                    raise ValueError(f"Sham source {path} has classes {sorted(probs)}; the model has {self.classes}.")
                if row["command"] != last:
                    segments.append([])
                    last = row["command"]
                segments[-1].append({"command": row["command"], "probabilities": np.array([probs[c] for c in self.classes]),
                                     "confidence": float(row["confidence"]), "level": float(row["level"])})
        if not segments:
            raise ValueError(f"Sham source {path} holds no decisions of a real decoder session.")
        return segments

    def next(self) -> dict:
        """The next decision: command, probabilities, confidence, level."""
        if not self._queue:
            if self.segments:
                self._queue = list(self.segments[self.rng.integers(len(self.segments))])
            else:
                n = max(1, int(round(self.rng.exponential(self.mean_dwell_s) / self.hop_s)))
                peak = int(self.rng.integers(len(self.classes)))
                probs = self.rng.dirichlet(np.ones(len(self.classes)), size=n) * 0.4
                probs[:, peak] += 0.6
                for p in probs:
                    level = float(p[self.level_idx[0]] - p[self.level_idx[1]]) if self.level_idx else 0.0
                    self._queue.append({"command": self.classes[peak], "probabilities": p,
                                        "confidence": float(p[peak]), "level": level})
        decision = self._queue.pop(0)
        if self._hold_left > 0:
            self._hold_left -= 1
            held = self.classes.index(self.hold) if self.hold in self.classes else None
            return dict(decision, command=self.hold, level=0.0, holding=True,
                        confidence=float(decision["probabilities"][held]) if held is not None else 0.0)
        return decision
