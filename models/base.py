"""The shared base of every decoder: one place that checks the signal arguments, infers the missing ones, and
records the arguments a decoder was built with (so a model describes itself, however it was built)."""

from __future__ import annotations

import functools
import inspect
import math
from typing import Any, Sequence

import torch
from torch import nn

#: the signal arguments every decoder takes (the rest of its constructor's arguments are its hyperparameters)
SIGNAL_ARGS = ("n_chans", "n_times", "n_outputs", "sfreq")
#: arguments that only serve to infer signal arguments; not recorded (the inferred values are)
INFERENCE_ARGS = ("ch_names", "input_window_seconds")


class Decoder(nn.Module):
    """Base class: takes ``[batch, n_chans, n_times]`` float32 and returns logits ``[batch, n_outputs]``.

    Like braindecode's ``EEGModuleMixin``, a decoder records its constructor's arguments itself
    (:attr:`hparams`, what :func:`models.hyperparameters` returns) and infers a missing signal argument from the
    others: ``n_chans`` from ``ch_names``, ``n_times`` from ``input_window_seconds`` and ``sfreq``, ``sfreq``
    from ``n_times`` and ``input_window_seconds``. Given both ways, they must agree.

    Parameters
    ----------
    n_chans : int or None
        Number of input channels (or give ``ch_names``).
    n_times : int or None
        Window length in samples (or give ``input_window_seconds`` and ``sfreq``).
    n_outputs : int
        Number of classes.
    sfreq : float or None
        Sampling rate of the input (Hz). Architectures whose paper gives kernel sizes in time units
        scale them with it, so one config fits 160 Hz EEG and 1 kHz MEG; None means the paper's rate
        (:attr:`reference_sfreq`) unless ``n_times`` and ``input_window_seconds`` give it.
    ch_names : sequence of str or None
        Channel names, in input order.
    input_window_seconds : float or None
        Window length in seconds.
    """

    #: rate (Hz) the paper's kernel sizes were given at; ``sfreq=None`` means this rate
    reference_sfreq: float = 128.0
    #: AdamW learning rate that ``optim.lr: auto`` uses for this decoder
    default_lr: float = 1e-3
    #: augmentation (``augment:`` keys) used when a config sets none (``augment.decoder_default``)
    default_augment: dict = {}
    #: the name the registry knows this class by (set by ``models.register``)
    registry_name: str | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__dict__["__init__"])

    def __init__(self, n_chans: int | None = None, n_times: int | None = None, n_outputs: int | None = None,
                 sfreq: float | None = None, *, ch_names: Sequence[str] | None = None,
                 input_window_seconds: float | None = None):
        super().__init__()
        n_chans, n_times, sfreq = _infer_signal(n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds)
        self.n_chans, self.n_times, self.n_outputs = n_chans, n_times, n_outputs
        self.sfreq = float(sfreq) if sfreq is not None else self.reference_sfreq
        self.ch_names = list(ch_names) if ch_names is not None else None

    @property
    def hparams(self) -> dict[str, Any]:
        """The constructor's arguments (defaults included) with the signal arguments as resolved: building the
        class again with them gives the same architecture."""
        recorded = dict(self.__dict__.get("_init_args", {}))
        for key in INFERENCE_ARGS:
            recorded.pop(key, None)
        return {**recorded, "n_chans": self.n_chans, "n_times": self.n_times, "n_outputs": self.n_outputs,
                "sfreq": self.sfreq}

    def apply_constraints(self) -> None:
        """Weight constraints, applied by the training loop after every optimiser step; none by default."""

    def inference_module(self) -> nn.Module:
        """The module to export for deployment: the decoder itself, or an equivalent faster arrangement
        (same function, checked by the export's parity test). Call in eval mode."""
        return self

    def samples(self, n_at_reference: float, minimum: int = 1) -> int:
        """A kernel or pool length given at the paper's rate, in samples at this model's rate."""
        return max(minimum, int(round(n_at_reference * self.sfreq / self.reference_sfreq)))

    def features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        """The decoder's representation of windows ``x`` (``[batch, n_chans, n_times]``) before its classifier."""
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


def _recording(init):
    """Wrap a decoder's ``__init__`` so the outermost call records its bound arguments (defaults applied)."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self, *args, **kwargs):
        if "_init_args" not in self.__dict__:  # the outermost constructor (a subclass's), not its super().__init__
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            recorded = {k: v for k, v in list(bound.arguments.items())[1:]
                        if signature.parameters[k].kind not in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)}
            object.__setattr__(self, "_init_args", {k: list(v) if isinstance(v, tuple) else v for k, v in recorded.items()})
        init(self, *args, **kwargs)

    return wrapper


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"'{name}' must be an integer, got {value!r}.")
    return value


def _infer_signal(n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds):
    """Check the signal arguments, fill in the missing ones, and refuse ones that disagree."""
    if n_outputs is None:
        raise ValueError("'n_outputs' (None) is required: the number of classes (at least 2).")
    if ch_names is not None:
        if isinstance(ch_names, str) or not all(isinstance(c, str) for c in ch_names):
            raise TypeError(f"'ch_names' must be a sequence of channel names, got {ch_names!r}.")
        if n_chans is None:
            n_chans = len(ch_names)
        elif n_chans != len(ch_names):
            raise ValueError(f"'n_chans' ({n_chans}) disagrees with the {len(ch_names)} 'ch_names'.")
    if n_chans is None:
        raise ValueError("'n_chans' (None): give the number of channels or 'ch_names'.")
    if input_window_seconds is not None:
        if not (isinstance(input_window_seconds, (int, float)) and input_window_seconds > 0):
            raise ValueError(f"'input_window_seconds' ({input_window_seconds!r}) must be a positive number of seconds.")
        if n_times is None and sfreq is not None:
            n_times = int(round(input_window_seconds * sfreq))
        elif sfreq is None and n_times is not None:
            sfreq = n_times / input_window_seconds
        elif n_times is not None and sfreq is not None and abs(n_times - input_window_seconds * sfreq) >= 1:
            raise ValueError(f"'n_times' ({n_times}) disagrees with 'input_window_seconds' ({input_window_seconds}) x "
                             f"'sfreq' ({sfreq}) = {input_window_seconds * sfreq:g} samples.")
    if n_times is None:
        raise ValueError("'n_times' (None): give the window length in samples, or 'input_window_seconds' and 'sfreq'.")
    for name, value in (("n_chans", n_chans), ("n_times", n_times), ("n_outputs", n_outputs)):
        _positive_int(name, value)
    if n_chans < 1:
        raise ValueError(f"'n_chans' ({n_chans}) must be at least 1.")
    if n_times < 1:
        raise ValueError(f"'n_times' ({n_times}) must be at least 1.")
    if n_outputs < 2:
        raise ValueError(f"'n_outputs' ({n_outputs}) must be at least 2 (classes).")
    if sfreq is not None and not (isinstance(sfreq, (int, float)) and not isinstance(sfreq, bool) and sfreq > 0
                                  and math.isfinite(sfreq)):
        raise ValueError(f"'sfreq' ({sfreq!r}) must be a positive number of Hz or None.")
    return n_chans, n_times, sfreq
