"""EEG-TCNet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import Decoder
from .eegnet import EEGNetFeatures
from .registry import register


class CausalBlock(nn.Module):
    """Residual block of two dilated causal convolutions (left padding only: no look-ahead)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int, dropout: float):
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv1 = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)
        self.bn1 = nn.BatchNorm1d(c_out)
        self.conv2 = nn.Conv1d(c_out, c_out, kernel, dilation=dilation)
        self.bn2 = nn.BatchNorm1d(c_out)
        self.drop = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.drop(F.elu(self.bn1(self.conv1(F.pad(x, (self.pad, 0))))))
        y = self.drop(F.elu(self.bn2(self.conv2(F.pad(y, (self.pad, 0))))))
        return F.elu(y + self.skip(x))


@register("tcn")
class EEGTCNet(Decoder):
    """EEG-TCNet: an EEGNet front end followed by a temporal convolutional network (TCN).

    The TCN's dilated causal convolutions widen the receptive field over the EEGNet feature sequence;
    the last time step feeds the classifier. Front-end lengths are the paper's values at 128 Hz
    (kernel 32, pools 8 and 8); the kernel and first pool scale with ``sfreq``.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
    F1, D, F2 : int
        EEGNet front-end widths (8, 2, 16 in the paper).
    tcn_filters : int
        Filters per TCN layer (12).
    tcn_kernel : int
        TCN kernel size (4).
    tcn_blocks : int
        Residual blocks, with dilation 1, 2, 4, ... (2).
    dropout : float
        EEGNet dropout (0.2) and TCN dropout (0.3 in the paper; one value here).

    References
    ----------
    Ingolfsson, T. M., Hersche, M., Wang, X., Kobayashi, N., Cavigelli, L., & Benini, L. (2020).
    EEG-TCNet: An accurate temporal convolutional network for embedded motor-imagery brain-machine
    interfaces. IEEE International Conference on Systems, Man, and Cybernetics (SMC), 2958-2965.
    https://doi.org/10.1109/SMC42975.2020.9283028
    """

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, F1=8, D=2, F2=16, tcn_filters=12,
                 tcn_kernel=4, tcn_blocks=2, dropout=0.25, *, ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        self.front = EEGNetFeatures(
            n_chans, kern=self.samples(32, 2), pool1=self.samples(8),
            sep_kern=16, pool2=8,  # after the first pooling the rate no longer depends on sfreq
            F1=F1, D=D, F2=F2, dropout=dropout,
        )
        blocks, c_in = [], F2
        for i in range(tcn_blocks):
            blocks.append(CausalBlock(c_in, tcn_filters, tcn_kernel, 2**i, dropout))
            c_in = tcn_filters
        self.tcn = nn.Sequential(*blocks)
        self.feature_shape()
        self.classifier = nn.Linear(tcn_filters, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.tcn(self.front(x).squeeze(2))  # [B, filters, T']

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x)[:, :, -1])

    def inference_module(self) -> nn.Module:
        """The same function with the EEGNet front end filtering space before time."""
        return _TCNInference(self.front.spatial_first(), self.tcn, self.classifier)


class _TCNInference(nn.Module):
    def __init__(self, front: nn.Module, tcn: nn.Module, classifier: nn.Module):
        super().__init__()
        self.front, self.tcn, self.classifier = front, tcn, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.tcn(self.front(x.unsqueeze(1)).squeeze(2))[:, :, -1])
