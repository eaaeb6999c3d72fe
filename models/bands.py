"""Several frequency bands of one input, stacked as channels, into any registered decoder."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from scipy import signal
from torch import nn

from .base import Decoder
from .registry import build, get, register

#: the reference studies' two views of the sensorimotor signal: slow movement-related fields and mu/beta
DEFAULT_BANDS = [[None, 5.0], [8.0, 30.0]]


def design_fir(bands: list, sfreq: float, n_taps: int) -> np.ndarray:
    """Causal linear-phase FIR filters ``[n_bands, n_taps]`` (Hamming window): ``[None, high]`` low-pass,
    ``[low, None]`` high-pass, ``[low, high]`` band-pass; edges are refused by key."""
    nyq = sfreq / 2
    out = []
    for i, band in enumerate(bands):
        if not isinstance(band, (list, tuple)) or len(band) != 2 or tuple(band) == (None, None):
            raise ValueError(f"'bands[{i}]' ({band!r}) must be [low, high] in Hz (one of them may be null).")
        low, high = band
        for edge, value in (("low", low), ("high", high)):
            if value is not None and not 0 < value < nyq:
                raise ValueError(f"'bands[{i}]' {edge} edge ({value} Hz) must lie between 0 and Nyquist ({nyq:g} Hz).")
        if low is not None and high is not None and low >= high:
            raise ValueError(f"'bands[{i}]' low edge ({low} Hz) must be below the high edge ({high} Hz).")
        if low is None:
            taps = signal.firwin(n_taps, high, fs=sfreq)
        elif high is None:
            taps = signal.firwin(n_taps, low, fs=sfreq, pass_zero=False)  # n_taps is odd
        else:
            taps = signal.firwin(n_taps, [low, high], fs=sfreq, pass_zero=False)
        out.append(taps)
    return np.asarray(out)


@register("bands")
class BandStack(Decoder):
    """Fixed causal FIR filters split every channel into ``bands``, stacked as channels, into ``decoder``.

    The reference MEG BMI read slow movement-related fields (below about 5 Hz) beside the sensorimotor rhythms;
    this feeds both to one decoder from one broadband input (e.g. ``data.bandpass: [null, 30]``): each band's
    filter is a fixed (not trained) linear-phase FIR of ``fir_seconds``, applied without padding, so the
    decoder sees ``n_chans x len(bands)`` channels (band-major: every channel in the first band, then the
    second) of ``n_times - n_taps + 1`` samples, every one of them computed from samples inside the window. The
    filters are buffers of the model: the exported ONNX file applies them, the runtime needs nothing new.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments, see :class:`models.base.Decoder`.
    bands : list of [low, high]
        Band edges in Hz (``null`` for a low-pass or high-pass). Default: slow fields (< 5 Hz) and mu/beta.
    decoder : str or dict
        The decoder of the stacked bands: a registered name or ``{name: NAME, <its parameters>}``.
    fir_seconds : float
        Length of each FIR filter (longer: sharper bands, fewer samples left for the decoder).

    References
    ----------
    Yanagisawa, T., Fukuma, R., Seymour, B., Hosomi, K., Kishima, H., Shimizu, T., Yokoi, H., Hirata, M.,
    Yoshimine, T., Kamitani, Y., & Saitoh, Y. (2016). Induced sensorimotor brain plasticity controls pain in
    phantom limb patients. Nature Communications, 7, 13209. https://doi.org/10.1038/ncomms13209
    """

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, bands=None, decoder=None,
                 fir_seconds=0.5, *, ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        bands = [list(b) if isinstance(b, (list, tuple)) else b for b in (DEFAULT_BANDS if bands is None else bands)]
        if not isinstance(bands, list) or not bands:
            raise ValueError(f"'bands' ({bands!r}) must be a non-empty list of [low, high] in Hz.")
        if isinstance(fir_seconds, bool) or not isinstance(fir_seconds, (int, float)) or fir_seconds <= 0:
            raise ValueError(f"'fir_seconds' ({fir_seconds!r}) must be a positive number of seconds.")
        n_taps = max(3, int(round(fir_seconds * self.sfreq)) | 1)  # odd: a whole-sample delay
        if n_taps >= self.n_times:
            raise ValueError(f"'fir_seconds' ({fir_seconds}) gives {n_taps} taps at {self.sfreq:g} Hz: the window "
                             f"({self.n_times} samples) must be longer.")
        spec = {"name": "logvar"} if decoder is None else ({"name": decoder} if isinstance(decoder, str) else decoder)
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise ValueError(f"'decoder' ({decoder!r}) must be a registered decoder: a name or {{name: NAME, ...}}.")
        name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
        if name in ("bands", "gated"):
            raise ValueError(f"'decoder.name' ({name!r}) must be a single-stage decoder.")
        get(name)
        taps = design_fir(bands, self.sfreq, n_taps)
        self.bands, self.n_taps = bands, n_taps
        # one depthwise filter per (band, channel): weight [n_bands * n_chans, 1, n_taps], flipped for conv1d
        weight = np.repeat(taps[:, None, ::-1], self.n_chans, axis=0).copy()
        self.register_buffer("fir", torch.tensor(weight, dtype=torch.float32))
        self.decoder = build(name, n_chans=self.n_chans * len(bands), n_times=self.n_times - n_taps + 1,
                             n_outputs=self.n_outputs, sfreq=self.sfreq, **params)

    @staticmethod
    def _decoder_name(params: dict[str, Any]) -> str:
        spec = params.get("decoder") or "logvar"
        return spec if isinstance(spec, str) else spec.get("name", "logvar")

    @classmethod
    def check_nested_params(cls, params: dict[str, Any]) -> None:
        """The inner decoder's name and parameters, before any data are read."""
        from .registry import check_params

        spec = params.get("decoder")
        if isinstance(spec, dict):
            try:
                check_params(cls._decoder_name(params), {k: v for k, v in spec.items() if k != "name"})
            except TypeError as err:
                raise TypeError(f"'decoder': {err}") from None
        else:
            get(cls._decoder_name(params))

    @classmethod
    def member_default(cls, params: dict[str, Any], key: str, fallback: Any) -> Any:
        """Training defaults (``models.default_setting``) are the inner decoder's."""
        return getattr(get(cls._decoder_name(params)), key, fallback)

    @property
    def hparams(self) -> dict[str, Any]:
        from .registry import hyperparameters

        out = super().hparams
        out["decoder"] = {k: v for k, v in hyperparameters(self.decoder).items()
                          if k not in ("n_chans", "n_times", "n_outputs", "sfreq")}
        return out

    def stack(self, x: torch.Tensor) -> torch.Tensor:
        """``[batch, n_chans, n_times]`` -> ``[batch, n_bands * n_chans, n_times - n_taps + 1]``."""
        n_bands = len(self.bands)
        x = x.repeat(1, n_bands, 1)  # band-major copies of the channels
        return nn.functional.conv1d(x, self.fir, groups=x.shape[1])

    @torch.no_grad()
    def fit_data(self, X: torch.Tensor, y: torch.Tensor | None = None) -> None:
        if hasattr(self.decoder, "fit_data"):
            self.decoder.fit_data(self.stack(X), y)

    def apply_constraints(self) -> None:
        if hasattr(self.decoder, "apply_constraints"):
            self.decoder.apply_constraints()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.stack(x))
