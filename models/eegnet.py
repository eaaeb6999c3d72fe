"""EEGNet."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .registry import register


def same_pad_time(kernel: int) -> nn.ZeroPad2d:
    """Zero padding along time that keeps the length (works for even kernels too)."""
    return nn.ZeroPad2d(((kernel - 1) // 2, kernel // 2, 0, 0))


class EEGNetFeatures(nn.Module):
    """EEGNet's convolutional blocks (shared with EEG-TCNet)."""

    def __init__(self, n_chans, kern, sep_kern, pool1, pool2, F1, D, F2, dropout):
        super().__init__()
        self.block1 = nn.Sequential(
            same_pad_time(kern),
            nn.Conv2d(1, F1, (1, kern), bias=False),
            nn.BatchNorm2d(F1),
            nn.Conv2d(F1, F1 * D, (n_chans, 1), groups=F1, bias=False),  # depthwise spatial filters
            nn.BatchNorm2d(F1 * D),
            nn.ELU(),
            nn.AvgPool2d((1, pool1)),
            nn.Dropout(dropout),
        )
        self.block2 = nn.Sequential(
            same_pad_time(sep_kern),
            nn.Conv2d(F1 * D, F1 * D, (1, sep_kern), groups=F1 * D, bias=False),  # separable: depthwise ...
            nn.Conv2d(F1 * D, F2, 1, bias=False),  # ... then pointwise
            nn.BatchNorm2d(F2),
            nn.ELU(),
            nn.AvgPool2d((1, pool2)),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block2(self.block1(x.unsqueeze(1)))  # [B, F2, 1, T']

    def spatial_first(self) -> nn.Module:
        """An equivalent module (eval mode) that filters space before time, for fast inference.

        The temporal convolution, its BatchNorm and the depthwise spatial convolution are all linear, so
        ``w * BN(h * x) = a (h * (w x)) + b sum(w)``: mixing the channels first leaves ``F1 * D`` temporal
        convolutions instead of ``F1 * n_chans`` -- 20x fewer operations with 306 MEG channels.
        """
        pad, temporal, bn1, spatial, *rest = self.block1
        D = spatial.out_channels // temporal.out_channels
        scale = bn1.weight / torch.sqrt(bn1.running_var + bn1.eps)  # [F1]
        shift = bn1.bias - bn1.running_mean * scale
        w = spatial.weight[:, 0, :, 0]  # [F1*D, n_chans]
        h = temporal.weight[:, 0, 0, :]  # [F1, K]
        fused = SpatialFirst(pad, w, (scale[:, None] * h).repeat_interleave(D, dim=0), shift.repeat_interleave(D) * w.sum(1))
        return nn.Sequential(fused, *rest, self.block2)


class SpatialFirst(nn.Module):
    """Channel mixing (1x1) then one temporal filter per output, with the bias the reordering leaves."""

    def __init__(self, pad: nn.ZeroPad2d, spatial: torch.Tensor, temporal: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.pad = pad
        n_out, n_chans = spatial.shape
        self.mix = nn.Conv2d(1, n_out, (n_chans, 1), bias=False)
        self.mix.weight.data = spatial.detach().clone()[:, None, :, None]
        self.filt = nn.Conv2d(n_out, n_out, (1, temporal.shape[1]), groups=n_out, bias=True)
        self.filt.weight.data = temporal.detach().clone()[:, None, None, :]
        self.filt.bias.data = bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [B, 1, C, T]
        return self.filt(self.pad(self.mix(x)))


@register("eegnet")
class EEGNet(Decoder):
    """EEGNet-8,2: a compact convolutional network for EEG-based BCIs.

    Temporal convolution (learned band-pass filters), depthwise spatial convolution (per-filter spatial
    patterns, like CSP), separable convolution, and a linear classifier. The temporal kernel and the
    first pooling are the paper's values at 128 Hz scaled with ``sfreq``; after that pooling the rate is
    the paper's whatever the input rate, so the separable kernel (16) and second pooling (8) stay.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq
        Signal arguments, see :class:`models.base.Decoder`.
    F1 : int
        Temporal filters.
    D : int
        Spatial filters per temporal filter.
    F2 : int
        Pointwise filters (``F1 * D`` in the paper).
    kernel_seconds : float
        Temporal kernel length (0.5 s: 64 samples at 128 Hz).
    dropout : float
        Dropout rate (0.5 within-subject, 0.25 cross-subject in the paper).

    References
    ----------
    Lawhern, V. J., Solon, A. J., Waytowich, N. R., Gordon, S. M., Hung, C. P., & Lance, B. J. (2018).
    EEGNet: a compact convolutional neural network for EEG-based brain-computer interfaces.
    Journal of Neural Engineering, 15(5), 056013. https://doi.org/10.1088/1741-2552/aace8c
    """

    def __init__(self, n_chans, n_times, n_outputs, sfreq=None, F1=8, D=2, F2=16, kernel_seconds=0.5, dropout=0.25):
        super().__init__(n_chans, n_times, n_outputs, sfreq)
        self.body = EEGNetFeatures(
            n_chans,
            kern=max(2, int(round(kernel_seconds * self.sfreq))),
            sep_kern=16,  # after the first pooling: the rate no longer depends on sfreq
            pool1=self.samples(4),
            pool2=8,
            F1=F1, D=D, F2=F2, dropout=dropout,
        )
        self.classifier = nn.Linear(int(torch.tensor(self.feature_shape()).prod()), n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))

    def inference_module(self) -> nn.Module:
        """The same function with space filtered before time (see ``EEGNetFeatures.spatial_first``)."""
        body = self.body.spatial_first()
        return _Head(body, self.classifier)


class _Head(nn.Module):
    def __init__(self, body: nn.Module, classifier: nn.Module):
        super().__init__()
        self.body, self.classifier = body, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.body(x.unsqueeze(1)).flatten(1))
