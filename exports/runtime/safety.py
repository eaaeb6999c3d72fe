"""Input checks that put the controller into its safe state: stale stream, non-finite, flat or saturated data."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SafetyConfig:
    """``stale_ms``: no new samples for longer than this is unsafe. ``flat_threshold``: a channel whose
    peak-to-peak amplitude over the last window is at most this is flat (0 = exactly constant).
    ``saturation``: absolute amplitude at or above which input counts as saturated (None = off; set it
    to the amplifier's range in the stream's units)."""

    stale_ms: float = 250.0
    flat_threshold: float = 0.0
    saturation: float | None = None
    safe_command: str | None = None  # None: "rest" when the model has that class, else "hold"

    def __post_init__(self) -> None:
        if self.stale_ms <= 0:
            raise ValueError(f"'stale-ms' ({self.stale_ms}) must be positive.")


@dataclass
class SafetyState:
    """Whether decoding is allowed, why not, and how often each event happened."""

    safe: bool = True  # in the safe state until clean data has filled a window
    reason: str = "starting"
    events: Counter = field(default_factory=Counter)

    def enter(self, reason: str) -> bool:
        """Enter the safe state; True when this is a new event (not already safe for that reason)."""
        new = not self.safe or self.reason != reason
        if new:
            self.events[reason] += 1
        self.safe, self.reason = True, reason
        return new

    def clear(self) -> None:
        self.safe, self.reason = False, ""


def check_chunk(chunk: np.ndarray, cfg: SafetyConfig) -> str | None:
    """Problem with a raw input chunk, or None."""
    if not np.isfinite(chunk).all():
        return "nonfinite"
    if cfg.saturation is not None and chunk.size and np.abs(chunk).max() >= cfg.saturation:
        return "saturated"
    return None


def check_window(raw_window: np.ndarray, cfg: SafetyConfig) -> str | None:
    """Problem with the newest raw window (flat channels), or None."""
    if raw_window.shape[1] > 1 and (np.ptp(raw_window, axis=1) <= cfg.flat_threshold).any():
        return "flat"
    return None
