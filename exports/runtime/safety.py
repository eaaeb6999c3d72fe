"""Input checks that put the controller into its safe state: stale stream, non-finite, flat or saturated data,
and an amplitude implausible for the model (wrong units or gain)."""

from __future__ import annotations

import math
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
        """Leave the safe state (decoding allowed); the event counts are kept."""
        self.safe, self.reason = False, ""


def check_chunk(chunk: np.ndarray, cfg: SafetyConfig) -> str | None:
    """Problem with a raw input chunk, or None."""
    if not math.isfinite(chunk.sum(dtype=np.float64)):  # any NaN or inf makes the sum so; float32 never overflows it
        return "nonfinite"
    if cfg.saturation is not None and saturated_channels(chunk, cfg.saturation).any():
        return "saturated"
    return None


def saturated_channels(chunk: np.ndarray, limit: float | None) -> np.ndarray:
    """Which channels of ``chunk`` (``[n_chans, n]``) reach the amplifier's range ``limit`` (none when None)."""
    if limit is None or not chunk.shape[1]:
        return np.zeros(chunk.shape[0], dtype=bool)
    return np.abs(chunk).max(axis=1) >= limit


class FlatDetector:
    """A flat channel (a stuck amplifier, a lost electrode): peak-to-peak at most ``threshold`` over
    ``flat_samples``, watched as each chunk arrives so that a decision costs nothing.

    The stream is cut into blocks of a quarter of ``flat_samples`` whose minimum and maximum are kept; each
    time a block completes, the newest whole blocks that fit in ``flat_samples`` are checked together. A
    flat stretch is caught once it is ``flat_samples`` plus one block long, wherever it starts.
    """

    def __init__(self, n_chans: int, flat_samples: int, threshold: float):
        self.block = max(1, flat_samples // 4)
        self.blocks = flat_samples // self.block  # blocks per checked stretch (at most flat_samples long)
        self.threshold = threshold
        self._lo = np.zeros((self.blocks, n_chans))
        self._hi = np.zeros((self.blocks, n_chans))
        self.reset()

    def reset(self) -> None:
        """Forget the blocks seen (a restart): a flat stretch is then caught only within samples fed after it."""
        self._whole = 0  # whole blocks held (at most self.blocks)
        self._fill = 0  # samples in the block being filled
        self._slot = 0  # the slot of the block being filled

    def add(self, chunk: np.ndarray) -> bool:
        """Feed raw samples ``[n_chans, n]``; True when a flat stretch completed within them."""
        samples = np.ascontiguousarray(chunk.T)  # [n, n_chans]: numpy reduces fast over the outer axis
        flat, i, n = False, 0, len(samples)
        while i < n:
            part = samples[i : i + self.block - self._fill]
            lo, hi, k = part.min(axis=0), part.max(axis=0), self._slot
            if self._fill:
                np.minimum(self._lo[k], lo, out=self._lo[k])
                np.maximum(self._hi[k], hi, out=self._hi[k])
            else:
                self._lo[k], self._hi[k] = lo, hi
            self._fill += len(part)
            i += len(part)
            if self._fill == self.block:
                self._fill, self._slot = 0, (k + 1) % self.blocks
                self._whole = min(self.blocks, self._whole + 1)
                if self._whole == self.blocks:
                    flat |= bool(self.flat_channels().any())
        return flat

    def flat_channels(self) -> np.ndarray:
        """Which channels are flat over the newest whole blocks held (none until ``flat_samples`` have come)."""
        if self._whole < self.blocks:
            return np.zeros(self._lo.shape[1], dtype=bool)
        return self._hi.max(axis=0) - self._lo.min(axis=0) <= self.threshold


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
        """Check again from the next sample (a new connection): not passed, no failures, no partial block."""
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

    Chunks are added as they arrive (the largest and the summed change per channel); :meth:`check` at each
    hop compares the largest change since the last check with ``ratio`` x the running mean change, then
    updates that mean with the hop's. On the PhysioNet S001 recordings the largest change within a hop is
    35 times the running mean change (runs 3-13), so the default ratio of 100 leaves a margin of about
    three; a 1 mV step on EEG is several hundred times the mean change.
    """

    def __init__(self, ratio: float, alpha: float = 0.05):
        self.ratio, self.alpha = ratio, alpha
        self.reset()

    def reset(self) -> None:
        """Forget the typical change and the last sample (a restart): the first hop after it sets the scale and
        cannot itself count as a jump."""
        self.scale: np.ndarray | None = None
        self._last: np.ndarray | None = None  # the previous sample (none after a reset)
        self._sum: np.ndarray | float = 0.0
        self._max: np.ndarray | float = 0.0
        self._n = 0

    def add(self, chunk: np.ndarray) -> None:
        """Feed raw samples ``[n_chans, n]``."""
        if not chunk.shape[1]:
            return
        samples = chunk.T if self._last is None else np.concatenate([self._last, chunk.T])  # [n, n_chans]
        samples = np.ascontiguousarray(samples)  # numpy reduces fast over the outer axis
        self._last = samples[-1:].copy()
        if len(samples) < 2:
            return
        change = np.abs(np.diff(samples, axis=0))
        self._sum = self._sum + change.sum(axis=0, dtype=np.float64)
        self._max = np.maximum(self._max, change.max(axis=0))
        self._n += len(change)

    def check(self) -> bool:
        """True when a change since the last check is a jump."""
        if not self._n:
            return False
        mean, peak = self._sum / self._n, self._max
        self._sum, self._max, self._n = 0.0, 0.0, 0
        if self.scale is None:
            self.scale = mean
            return False
        if (peak > self.ratio * np.maximum(self.scale, 1e-30)).any():
            return True
        self.scale += self.alpha * (mean - self.scale)
        return False
