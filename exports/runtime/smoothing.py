"""From per-window probabilities to a steady command: EMA or majority vote, hysteresis and minimum dwell.

Dwell is counted in stream time (the stream's sample clock at each window's end), never in windows or
wall time: a burst of windows decoded within a millisecond cannot cross it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np


@dataclass
class SmoothingConfig:
    """``method``: "ema" (exponential moving average of probabilities, weight ``alpha`` on the newest),
    "vote" (majority of the last ``k`` argmax decisions) or "none". A new command must beat the current
    one by ``hysteresis`` in (smoothed) probability and the current command must have been held for
    ``dwell_s`` seconds of stream time before it may change."""

    method: str = "ema"
    alpha: float = 0.3
    k: int = 5
    hysteresis: float = 0.1
    dwell_s: float = 0.2

    def __post_init__(self) -> None:
        if self.method not in ("ema", "vote", "none"):
            raise ValueError(f"'smoothing' ({self.method!r}) must be one of ema, vote, none.")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"'ema-alpha' ({self.alpha}) must be in (0, 1].")
        if self.k < 1:
            raise ValueError(f"'vote-k' ({self.k}) must be at least 1.")
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"'hysteresis' ({self.hysteresis}) must be in [0, 1).")
        if self.dwell_s < 0:
            raise ValueError(f"'dwell' ({self.dwell_s * 1000:g} ms) must be >= 0.")


class Smoother:
    def __init__(self, classes: list[str], cfg: SmoothingConfig, level_pair: tuple[str, str] | None = None):
        self.classes, self.cfg = classes, cfg
        self.level_idx = tuple(classes.index(c) for c in level_pair) if level_pair else None
        self.reset()

    def reset(self) -> None:
        self._ema: np.ndarray | None = None
        self._votes: deque[int] = deque(maxlen=self.cfg.k)
        self.command: int | None = None
        self._since = 0.0  # stream time the current command began

    def update(self, probs: np.ndarray, t: float) -> tuple[str, float, float, np.ndarray]:
        """Probabilities of the window ending at stream time ``t`` (s) -> (command, confidence, level,
        smoothed probabilities)."""
        probs = np.asarray(probs, dtype=np.float64)
        if self.cfg.method == "ema":
            self._ema = probs if self._ema is None else self.cfg.alpha * probs + (1 - self.cfg.alpha) * self._ema
            smooth = self._ema
        elif self.cfg.method == "vote":
            self._votes.append(int(probs.argmax()))
            counts = Counter(self._votes)
            smooth = np.array([counts.get(i, 0) / len(self._votes) for i in range(len(probs))])
        else:
            smooth = probs
        best = int(smooth.argmax())
        if self.command is None:
            self.command, self._since = best, t
        elif best != self.command:
            margin = smooth[best] - smooth[self.command]
            if margin > self.cfg.hysteresis and t - self._since >= self.cfg.dwell_s - 1e-9:
                self.command, self._since = best, t
        level = 0.0
        if self.level_idx is not None:
            level = float(smooth[self.level_idx[0]] - smooth[self.level_idx[1]])
        return self.classes[self.command], float(smooth[self.command]), level, smooth
