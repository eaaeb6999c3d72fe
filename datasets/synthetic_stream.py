"""The simulated brain of :mod:`datasets.synthetic`, generated chunk by chunk for a live stream (``bmi amp``).

Same head (sensors, sources, subject and session traits), same class patterns (:func:`~datasets.synthetic.cue_effect`),
same rhythms (the Gaussian band around the mu and beta frequencies, here as its FIR impulse response) and line
noise as the recordings written to files; only the generation is causal, with the filters' state carried from
chunk to chunk, so the stream can run for any length and a cue can start its pattern at any sample.

The 1/f background comes from an IIR pink-noise filter (the file writer shapes a whole run's spectrum at once,
which a stream cannot); it is scaled so that its power in the decoding band (8-30 Hz) matches a
:data:`REFERENCE_SECONDS` file's, which keeps a stream as hard to decode as a recording at the same ``snr``.
"""

from __future__ import annotations

import numpy as np
from scipy import signal

from .synthetic import (BETA_AMPLITUDE, LINE_AMPLITUDE, LINE_FREQ, MU_AMPLITUDE, SIDES, CueEffect, Head, cue_effect,
                        rhythm_kernel)

# Pink (1/f power) noise filter of J. O. Smith / P. Kellet: within 0.3 dB of 1/f over 4 decades below Nyquist
_PINK_B = np.array([0.049922035, -0.095993537, 0.050612699, -0.004408786])
_PINK_A = np.array([1.0, -2.494956002, 2.017265875, -0.522189400])
REFERENCE_SECONDS = 150.0  # the file length whose background the stream matches in the decoding band
_BAND = (8.0, 30.0)


def _pink_gain(sfreq: float) -> float:
    """Factor that gives the IIR pink noise (unit white input) the decoding-band power of a file's background.

    A file's background (:func:`datasets.synthetic._pink`, unit variance) has power 1/k in FFT bin k >= 1 and
    1 at DC, so a fraction ln(f2/f1) / (1 + gamma + ln(N/2)) of it lies in the band [f1, f2] (N samples)."""
    n_ref = REFERENCE_SECONDS * sfreq
    target = np.log(_BAND[1] / _BAND[0]) / (1 + np.euler_gamma + np.log(n_ref / 2))
    freqs = np.linspace(_BAND[0], _BAND[1], 512)
    _, response = signal.freqz(_PINK_B, _PINK_A, worN=freqs, fs=sfreq)
    band_power = 2 * np.trapezoid(np.abs(response) ** 2, freqs) / sfreq  # one-sided, unit-variance white input
    return float(np.sqrt(target / band_power))


class SyntheticStream:
    """Signals of one simulated head, generated in consecutive chunks; :meth:`cue` starts a class pattern.

    ``generate(n)`` returns the next ``n`` samples ``[n_chans, n]`` in SI units (V, T, T/m).
    """

    def __init__(self, sfreq: float, head: Head, snr: float = 1.0, seed=None):
        if sfreq <= 2 * LINE_FREQ:
            raise ValueError(f"'sfreq' ({sfreq}) must be above {2 * LINE_FREQ:g} Hz (the line noise must be sampled).")
        if snr < 0:
            raise ValueError(f"'snr' ({snr}) must be >= 0.")
        self.sfreq, self.head, self.snr = float(sfreq), head, float(snr)
        # one generator per noise source, drawn sample-major: the signal does not depend on how it is chunked
        pink_seed, line_seed, *rhythm_seeds = np.random.SeedSequence(seed).spawn(2 + 2 * len(SIDES))
        self._pink_rng = np.random.default_rng(pink_seed)
        n_chans = len(head.positions)
        self.n_chans = n_chans
        self.n = 0  # samples generated so far
        # background: unit-variance (after mixing) pink noise per channel, filter state per channel
        mixed_std = np.sqrt(np.mean(np.sum(head.mixing**2, axis=1)))
        self._pink_zi = np.zeros((n_chans, len(_PINK_A) - 1))
        self._pink_scale = _pink_gain(self.sfreq) / mixed_std
        # rhythms: one mu and one beta per hemisphere, FIR state = the kernel's last samples of white noise
        self._kernels = {"mu": rhythm_kernel(self.sfreq, head.mu_freq), "beta": rhythm_kernel(self.sfreq, head.beta_freq)}
        keys = [(side, k) for side in SIDES for k in self._kernels]
        self._fir_zi = {key: np.zeros(len(self._kernels[key[1]]) - 1) for key in keys}
        self._rhythm_rng = {key: np.random.default_rng(s) for key, s in zip(keys, rhythm_seeds)}
        self._line_phase = np.random.default_rng(line_seed).uniform(0, 2 * np.pi)
        self._effects: list[tuple[int, CueEffect]] = []  # (onset sample, pattern) still running

    def cue(self, label: str, onset_sample: int) -> bool:
        """Start ``label``'s pattern at ``onset_sample`` (a sample already generated is skipped: the pattern stays
        time-locked to the onset). False for a class without a pattern (rest)."""
        effect = cue_effect(label, self.sfreq, self.snr)
        if effect is None:
            return False
        self._effects.append((int(onset_sample), effect))
        return True

    def _modulation(self, n: int) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """Per hemisphere, the rhythm's gain (1 - desynchronisation) and the slow potential over the next n samples."""
        env = {side: np.ones(n) for side in SIDES}
        slow = {side: np.zeros(n) for side in SIDES}
        start, stop = self.n, self.n + n
        running = []
        for onset, effect in self._effects:
            length = len(effect.erd)
            a, b = max(start, onset), min(stop, onset + length)
            if a < b:
                env[effect.side][a - start : b - start] -= effect.erd[a - onset : b - onset]
                m = min(b, onset + len(effect.mrp))
                if a < m:
                    slow[effect.side][a - start : m - start] += effect.mrp[a - onset : m - onset]
            if onset + length > stop:
                running.append((onset, effect))
        self._effects = running
        return env, slow

    def generate(self, n: int) -> np.ndarray:
        if n <= 0:
            return np.zeros((self.n_chans, 0))
        head = self.head
        white = self._pink_rng.standard_normal((n, self.n_chans)).T
        pink, self._pink_zi = signal.lfilter(_PINK_B, _PINK_A, white, axis=1, zi=self._pink_zi)
        data = self._pink_scale * (head.mixing @ pink)
        env, slow = self._modulation(n)
        for side in SIDES:
            rhythm = np.zeros(n)
            for name, amplitude in (("mu", MU_AMPLITUDE), ("beta", BETA_AMPLITUDE)):
                white = self._rhythm_rng[side, name].standard_normal(n)
                out, self._fir_zi[side, name] = signal.lfilter(self._kernels[name], 1.0, white,
                                                               zi=self._fir_zi[side, name])
                rhythm += amplitude * out
            data += np.outer(head.sources[side], env[side] * rhythm + slow[side])
        t = (self.n + np.arange(n)) / self.sfreq
        data += LINE_AMPLITUDE * np.sin(2 * np.pi * LINE_FREQ * t + self._line_phase)
        data *= head.channel_gain[:, None]
        data *= head.gain * head.scale
        self.n += n
        return data
