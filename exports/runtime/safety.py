"""Input checks that put the controller into its safe state: stale stream, non-finite, flat or saturated data,
and an amplitude implausible for the model (wrong units or gain)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class SafetyConfig:
    """``stale_ms``: no new samples for longer than this is unsafe. ``flat_threshold``: a channel whose
    peak-to-peak amplitude over the newest ``flat_ms`` is at most this is flat (0 = exactly constant; real
    EEG never is: the PhysioNet S001 recordings hold at most 5 equal samples in a row, 31 ms, outside the
    file's end padding). ``saturation``: absolute amplitude at or above which input counts as saturated
    (None = off; set it to the amplifier's range in the stream's units)."""

    stale_ms: float = 250.0
    flat_threshold: float = 0.0
    saturation: float | None = None
    safe_command: str | None = None  # None: "rest" when the model has that class, else "hold"
    flat_ms: float = 100.0

    def __post_init__(self) -> None:
        if self.stale_ms <= 0:
            raise ValueError(f"'stale-ms' ({self.stale_ms}) must be positive.")
        if self.flat_ms <= 0:
            raise ValueError(f"'flat-ms' ({self.flat_ms}) must be positive.")


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
    """Problem with the newest raw samples (the last ``flat_ms``): a flat channel, or None."""
    if raw_window.shape[1] > 1 and (np.ptp(raw_window, axis=1) <= cfg.flat_threshold).any():
        return "flat"
    return None


class AmplitudeCheck:
    """Compares each channel's RMS after the band-pass with the training data's, block by block.

    A DC offset is normal and does not count (the band-pass removes it). A channel more than
    ``max_ratio`` times larger or smaller than in training means wrong units, a wrong gain or a broken
    electrode: decoding is refused until a whole block passes.
    """

    def __init__(self, train_rms: list[float], ch_names: list[str], block_samples: int, max_ratio: float):
        self.train_rms = np.asarray(train_rms, dtype=np.float64)
        self.ch_names, self.block, self.max_ratio = ch_names, max(1, block_samples), max_ratio
        self.restart()

    def restart(self) -> None:
        self.passed = False
        self.failures = 0
        self.last_ratio: np.ndarray | None = None
        self._sumsq, self._n = np.zeros(len(self.train_rms)), 0

    def add(self, data: np.ndarray) -> str | None:
        """Feed preprocessed samples ``[n_chans, n]``; returns a message when a block just failed."""
        if self.passed:
            return None
        self._sumsq += np.square(data, dtype=np.float64).sum(axis=1)
        self._n += data.shape[1]
        if self._n < self.block:
            return None
        rms = np.sqrt(self._sumsq / self._n)
        self._sumsq[:], self._n = 0, 0
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(self.train_rms > 0, rms / self.train_rms, 1.0)
        self.last_ratio = ratio
        bad = np.flatnonzero(~((ratio <= self.max_ratio) & (ratio >= 1 / self.max_ratio)))
        if not len(bad):
            self.passed = True
            return None
        self.failures += 1
        worst = bad[np.argsort(-np.abs(np.log(np.maximum(ratio[bad], 1e-300))))][:3]
        listing = ", ".join(f"{self.ch_names[i]} {ratio[i]:.3g}x (RMS {rms[i]:.3g} vs {self.train_rms[i]:.3g})" for i in worst)
        return (f"amplitude check failed on {len(bad)} of {len(ratio)} channels: {listing}; allowed 1/{self.max_ratio:g}x"
                f" to {self.max_ratio:g}x the training data's. Wrong units or gain (--units), or a broken electrode? "
                "Decisions withheld until the amplitude is plausible.")


class JumpDetector:
    """A step in the raw signal (an electrode pop, a DC jump): a sample-to-sample change far beyond the
    channel's running typical change. Caught at the first hop that holds it, before the band-pass rings.

    On the PhysioNet S001 recordings the largest change within a hop is 35 times the running mean change
    (runs 3-13), so the default ratio of 100 leaves a margin of about three; a 1 mV step on EEG is several
    hundred times the mean change.
    """

    def __init__(self, ratio: float, alpha: float = 0.05):
        self.ratio, self.alpha = ratio, alpha
        self.scale: np.ndarray | None = None

    def reset(self) -> None:
        self.scale = None

    def check(self, recent: np.ndarray) -> bool:
        """``recent``: the newest raw samples ``[n_chans, n]`` (one hop and the sample before it)."""
        change = np.abs(np.diff(recent, axis=1))
        mean = change.mean(axis=1)
        if self.scale is None:
            self.scale = mean
            return False
        if (change.max(axis=1) > self.ratio * np.maximum(self.scale, 1e-30)).any():
            return True
        self.scale += self.alpha * (mean - self.scale)
        return False
