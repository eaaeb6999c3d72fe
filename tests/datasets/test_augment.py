"""Batch augmentations: each does what its paper describes, on the batch's device, reproducibly."""

import math

import pytest
import torch

from datasets import augment as A
from datasets.typed import ConfigError, from_mapping

SFREQ = 100.0


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _shifted(x, s):
    out = torch.zeros_like(x)
    if s >= 0:
        out[..., s:] = x[..., : x.shape[-1] - s]
    else:
        out[..., :s] = x[..., -s:]
    return out


def test_time_shift_moves_windows_and_zero_fills():
    x = torch.arange(1, 11, dtype=torch.float32).repeat(40, 2, 1)  # [40, 2, 10]
    out = A.time_shift(x, 3, _gen())
    found = []
    for b in range(len(x)):  # each window is the original moved by one whole shift in [-3, 3], zero-filled
        matches = [s for s in range(-3, 4) if torch.equal(out[b], _shifted(x[b], s))]
        assert len(matches) == 1
        found.append(matches[0])
    assert len(set(found)) >= 5  # the shifts are drawn per window


def test_channel_dropout_zeroes_whole_channels_at_the_rate():
    x = torch.ones(200, 16, 5)
    out = A.channel_dropout(x, 0.25, _gen())
    per_channel = out.sum(-1)
    assert set(per_channel.unique().tolist()) <= {0.0, 5.0}
    assert abs((per_channel == 0).float().mean().item() - 0.25) < 0.03


def test_noise_and_scale_have_the_configured_size():
    x = torch.zeros(64, 4, 500)
    noise = A.gaussian_noise(x, 0.3, _gen())
    assert abs(noise.std().item() - 0.3) < 0.01
    scaled = A.amplitude_scale(torch.ones(1000, 2, 3), 0.2, _gen())
    factors = scaled[:, 0, 0]
    assert factors.min() >= 0.8 and factors.max() <= 1.2 and factors.std() > 0.05


def _peak_hz(x):
    spec = torch.fft.rfft(x, dim=-1).abs()
    return spec.argmax(-1).float() * SFREQ / x.shape[-1]


def test_frequency_shift_moves_a_sinusoid_by_the_drawn_amount():
    t = torch.arange(400) / SFREQ
    x = torch.sin(2 * math.pi * 10 * t).repeat(50, 1, 1)
    out = A.frequency_shift(x, 3.0, SFREQ, _gen())
    peaks = _peak_hz(out)[:, 0]
    assert peaks.min() >= 10 - 3.25 and peaks.max() <= 10 + 3.25
    assert peaks.std() > 0.5  # the shifts differ between windows


def test_ft_surrogate_keeps_the_amplitude_spectrum_and_changes_the_signal():
    x = torch.randn(8, 3, 256, generator=_gen(1))
    out = A.ft_surrogate(x, 1.0, _gen())
    amp_in, amp_out = torch.fft.rfft(x, dim=-1).abs(), torch.fft.rfft(out, dim=-1).abs()
    assert torch.allclose(amp_in, amp_out, atol=1e-3)
    assert (out - x).abs().mean() > 0.5


def test_batch_augment_is_reproducible_and_mixup_mixes_labels():
    cfg = from_mapping(A.AugmentConfig, {"probability": 1.0, "noise": 0.1, "time_shift": 0.05, "mixup": 0.4}, "augment")
    assert cfg.enabled == ["time_shift", "noise", "mixup"]
    x, y = torch.randn(16, 4, 100, generator=_gen(2)), torch.arange(16) % 2
    torch.manual_seed(0)
    a = A.BatchAugment(cfg, SFREQ, seed=3)(x, y)
    torch.manual_seed(0)
    b = A.BatchAugment(cfg, SFREQ, seed=3)(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[2], b[2])
    out, y1, y2, lam = a
    assert out.shape == x.shape and torch.equal(y1, y) and y2 is not None and 0.5 <= lam <= 1.0
    assert sorted(y2.tolist()) == sorted(y.tolist())  # a permutation of the batch's labels


def test_probability_leaves_the_other_windows_untouched():
    cfg = A.AugmentConfig(probability=0.5, noise=1.0)
    x = torch.zeros(400, 2, 10)
    out, *_ = A.BatchAugment(cfg, SFREQ)(x, torch.zeros(400, dtype=torch.long))
    touched = (out.abs().sum((1, 2)) > 0).float().mean().item()
    assert 0.4 < touched < 0.6


@pytest.mark.parametrize("key, value, match", [
    ("probability", 0.0, r"'augment.probability' \(0.0\) must be in \(0, 1\]"),
    ("noise", -1.0, r"'augment.noise' \(-1.0\) must be >= 0"),
    ("channel_dropout", 1.0, r"'augment.channel_dropout' \(1.0\) must be below 1"),
    ("scale", 1.5, r"'augment.scale' \(1.5\) must be below 1"),
    ("ft_surrogate", 2.0, r"'augment.ft_surrogate' \(2.0\) must be in \[0, 1\]"),
])
def test_bad_values_are_named(key, value, match):
    with pytest.raises(ConfigError, match=match):
        from_mapping(A.AugmentConfig, {key: value}, "augment")
