"""The shared base of every decoder: one place that checks the signal arguments."""

from __future__ import annotations

import torch
from torch import nn


class Decoder(nn.Module):
    """Base class: takes ``[batch, n_chans, n_times]`` float32 and returns logits ``[batch, n_outputs]``.

    Parameters
    ----------
    n_chans : int
        Number of input channels.
    n_times : int
        Window length in samples.
    n_outputs : int
        Number of classes.
    sfreq : float or None
        Sampling rate of the input (Hz). Architectures whose paper gives kernel sizes in time units
        scale them with it, so one config fits 160 Hz EEG and 1 kHz MEG.
    """

    #: rate (Hz) the paper's kernel sizes were given at; ``sfreq=None`` means this rate
    reference_sfreq: float = 128.0
    #: AdamW learning rate that ``optim.lr: auto`` uses for this decoder
    default_lr: float = 1e-3
    #: augmentation (``augment:`` keys) used when a config sets none (``augment.decoder_default``)
    default_augment: dict = {}

    def __init__(self, n_chans: int, n_times: int, n_outputs: int, sfreq: float | None = None):
        super().__init__()
        for name, value in (("n_chans", n_chans), ("n_times", n_times), ("n_outputs", n_outputs)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"'{name}' must be an integer, got {value!r}.")
        if n_chans < 1:
            raise ValueError(f"'n_chans' ({n_chans}) must be at least 1.")
        if n_times < 1:
            raise ValueError(f"'n_times' ({n_times}) must be at least 1.")
        if n_outputs < 2:
            raise ValueError(f"'n_outputs' ({n_outputs}) must be at least 2 (classes).")
        if sfreq is not None and not (isinstance(sfreq, (int, float)) and sfreq > 0):
            raise ValueError(f"'sfreq' ({sfreq!r}) must be a positive number of Hz or None.")
        self.n_chans, self.n_times, self.n_outputs = n_chans, n_times, n_outputs
        self.sfreq = float(sfreq) if sfreq is not None else self.reference_sfreq

    def inference_module(self) -> nn.Module:
        """The module to export for deployment: the decoder itself, or an equivalent faster arrangement
        (same function, checked by the export's parity test). Call in eval mode."""
        return self

    def samples(self, n_at_reference: float, minimum: int = 1) -> int:
        """A kernel or pool length given at the paper's rate, in samples at this model's rate."""
        return max(minimum, int(round(n_at_reference * self.sfreq / self.reference_sfreq)))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise TypeError(f"{type(self).__name__} must define features()")

    def feature_shape(self) -> torch.Size:
        """Shape of ``features`` for one window; a window too short for the pooling is a clear error."""
        was_training = self.training
        self.eval()  # BatchNorm refuses a single window in training mode
        try:
            shape = self.features(torch.zeros(1, self.n_chans, self.n_times)).shape if self._fits(self.n_times) else None
            minimum = self._minimum_times() if shape is None else 0
        finally:
            self.train(was_training)
        if shape is None:
            raise ValueError(
                f"'n_times' ({self.n_times}) is too short for {type(self).__name__}'s pooling at {self.sfreq:g} Hz: "
                f"the minimum is {minimum} samples ({minimum / self.sfreq:.3f} s)."
            )
        return shape

    def _fits(self, n: int) -> bool:
        try:
            with torch.no_grad():
                return 0 not in self.features(torch.zeros(1, self.n_chans, n)).shape
        except RuntimeError:
            return False

    def _minimum_times(self) -> int:
        fits = self._fits
        hi = max(2, self.n_times)
        while not fits(hi):
            hi *= 2
            if hi > 1_000_000:
                return hi
        lo = 1
        while lo < hi:
            mid = (lo + hi) // 2
            lo, hi = (mid + 1, hi) if not fits(mid) else (lo, mid)
        return lo
