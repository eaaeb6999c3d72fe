"""Data augmentation for small data, applied to whole training batches on the accelerator (torch only).

Each transform takes a batch ``x`` ``[batch, n_chans, n_times]`` and a ``torch.Generator`` living on the
batch's device, and returns a batch of the same shape; each is applied to a random ``probability`` share of
the windows. :class:`BatchAugment` chains the enabled ones in a fixed order, then mixup (which also mixes the
labels, so it returns the partner labels and weights for the loss). Configured by the ``augment:`` section
(:class:`AugmentConfig`); every transform is off unless configured.

References (one per transform):

- time shift: Schirrmeister et al. (2017), cropped training, https://doi.org/10.1002/hbm.23730
- channel dropout: Saeed et al. (2021), https://doi.org/10.1109/ICASSP39728.2021.9413712
- Gaussian noise: Wang, Zhong, Peng, Jiang & Liu (2018), https://doi.org/10.1007/978-3-319-73600-6_8
- amplitude scaling: Rommel, Paillard, Moreau & Gramfort (2022), systematic comparison of EEG augmentations,
  https://doi.org/10.1088/1741-2552/aca220
- frequency shift: Rommel, Moreau, Paillard & Gramfort (2022), CADDA, https://doi.org/10.48550/arXiv.2106.13695
- Fourier-transform surrogate: Schwabedal, Snyder, Cakmak, Nemati & Clifford (2019),
  https://doi.org/10.48550/arXiv.1806.08675
- mixup: Zhang, Cisse, Dauphin & Lopez-Paz (2018), https://doi.org/10.48550/arXiv.1710.09412
"""

from __future__ import annotations

import math

import torch

from .config import AugmentConfig

__all__ = ["AugmentConfig", "BatchAugment", "amplitude_scale", "channel_dropout", "frequency_shift", "ft_surrogate",
           "gaussian_noise", "time_shift"]


def _chosen(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """A ``[batch, 1, 1]`` mask of the windows a transform applies to."""
    return (torch.rand(x.shape[0], 1, 1, generator=gen, device=x.device) < p).to(x.dtype)


def time_shift(x: torch.Tensor, max_samples: int, gen: torch.Generator) -> torch.Tensor:
    """Move each window by a random whole number of samples in [-max, max], zero-filling the gap."""
    if max_samples < 1:
        return x
    n = x.shape[-1]
    shifts = torch.randint(-max_samples, max_samples + 1, (x.shape[0],), generator=gen, device=x.device)
    src = torch.arange(n, device=x.device)[None, :] - shifts[:, None]  # out[t] = x[t - shift]
    valid = ((src >= 0) & (src < n)).to(x.dtype)
    idx = src.clamp(0, n - 1)[:, None, :].expand(-1, x.shape[1], -1)
    return torch.gather(x, 2, idx) * valid[:, None, :]


def channel_dropout(x: torch.Tensor, p: float, gen: torch.Generator) -> torch.Tensor:
    """Zero each channel of each window with probability ``p``."""
    keep = (torch.rand(x.shape[0], x.shape[1], 1, generator=gen, device=x.device) >= p).to(x.dtype)
    return x * keep


def gaussian_noise(x: torch.Tensor, std: float, gen: torch.Generator) -> torch.Tensor:
    """Add white Gaussian noise of standard deviation ``std``."""
    return x + std * torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype)


def amplitude_scale(x: torch.Tensor, max_change: float, gen: torch.Generator) -> torch.Tensor:
    """Multiply each window by a random factor in [1 - max_change, 1 + max_change]."""
    factor = 1 + max_change * (2 * torch.rand(x.shape[0], 1, 1, generator=gen, device=x.device, dtype=x.dtype) - 1)
    return x * factor


def _analytic(x: torch.Tensor) -> torch.Tensor:
    """The analytic signal (Hilbert transform) along the last axis."""
    n = x.shape[-1]
    spec = torch.fft.fft(x, dim=-1)
    h = torch.zeros(n, device=x.device, dtype=x.dtype)
    h[0] = 1
    if n % 2 == 0:
        h[n // 2] = 1
        h[1 : n // 2] = 2
    else:
        h[1 : (n + 1) // 2] = 2
    return torch.fft.ifft(spec * h, dim=-1)


def frequency_shift(x: torch.Tensor, max_hz: float, sfreq: float, gen: torch.Generator) -> torch.Tensor:
    """Shift every frequency of each window by a random amount in [-max_hz, max_hz] (single-sideband
    modulation of the analytic signal)."""
    shift = max_hz * (2 * torch.rand(x.shape[0], 1, 1, generator=gen, device=x.device, dtype=x.dtype) - 1)
    t = torch.arange(x.shape[-1], device=x.device, dtype=x.dtype) / sfreq
    phase = 2 * math.pi * shift * t[None, None, :]
    return (_analytic(x) * torch.polar(torch.ones_like(phase), phase)).real.to(x.dtype)


def ft_surrogate(x: torch.Tensor, max_phase: float, gen: torch.Generator) -> torch.Tensor:
    """Fourier-transform surrogate: keep each channel's amplitude spectrum, add random phases (uniform in
    [0, 2 pi max_phase), the same per frequency on every channel so the cross-channel structure stays)."""
    spec = torch.fft.rfft(x, dim=-1)
    phase = 2 * math.pi * max_phase * torch.rand(x.shape[0], 1, spec.shape[-1], generator=gen, device=x.device)
    phase[..., 0] = 0  # keep the mean real
    if x.shape[-1] % 2 == 0:
        phase[..., -1] = 0  # and the Nyquist bin
    return torch.fft.irfft(spec * torch.polar(torch.ones_like(phase), phase), n=x.shape[-1], dim=-1).to(x.dtype)


class BatchAugment(torch.nn.Module):
    """The configured transforms, applied to a training batch in place of the original windows.

    Parameters
    ----------
    cfg : AugmentConfig
        Which transforms and how strong.
    sfreq : float
        Sampling rate of the windows (Hz), for the time and frequency shifts.
    seed : int
        Seeds the generator (one per device, made on first use), so a run is reproducible.
    """

    def __init__(self, cfg: AugmentConfig, sfreq: float, seed: int = 0):
        super().__init__()
        self.cfg, self.sfreq, self.seed = cfg, float(sfreq), seed
        self._gen: torch.Generator | None = None

    def generator(self, device: torch.device) -> torch.Generator:
        if self._gen is None or self._gen.device != device:
            self._gen = torch.Generator(device=device).manual_seed(self.seed)
        return self._gen

    def forward(self, x: torch.Tensor, y: torch.Tensor):
        """Returns ``(x, y, y_partner, weight)``; without mixup ``y_partner`` is None and ``weight`` 1."""
        cfg, gen = self.cfg, self.generator(x.device)
        transforms = [
            ("time_shift", lambda v: time_shift(v, int(round(cfg.time_shift * self.sfreq)), gen)),
            ("channel_dropout", lambda v: channel_dropout(v, cfg.channel_dropout, gen)),
            ("noise", lambda v: gaussian_noise(v, cfg.noise, gen)),
            ("scale", lambda v: amplitude_scale(v, cfg.scale, gen)),
            ("frequency_shift", lambda v: frequency_shift(v, cfg.frequency_shift, self.sfreq, gen)),
            ("ft_surrogate", lambda v: ft_surrogate(v, cfg.ft_surrogate, gen)),
        ]
        for name, fn in transforms:
            if getattr(cfg, name):
                mask = _chosen(x, cfg.probability, gen)
                x = mask * fn(x) + (1 - mask) * x
        if not cfg.mixup:
            return x, y, None, 1.0
        lam = float(torch.distributions.Beta(cfg.mixup, cfg.mixup).sample().item()) if self.training else 1.0
        lam = max(lam, 1 - lam)  # the first label stays the dominant one (training metrics use it)
        perm = torch.randperm(x.shape[0], generator=gen, device=x.device)
        return lam * x + (1 - lam) * x[perm], y, y[perm], lam
