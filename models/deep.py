"""DeepConvNet (Deep4Net)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .registry import register


@register("deep")
class DeepConvNet(Decoder):
    """Deep ConvNet: a temporal + spatial first block and three conv-pool blocks of growing width.

    Kernel lengths (10) are the paper's values at 250 Hz, scaled with ``sfreq``; the first pooling
    (3 with stride 3) too; later blocks run at the pooled rate, so their receptive field in seconds
    matches the paper's. The paper's 4 s windows are not needed, but about 2 s are (see the error).

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
    n_filters : tuple of int
        Filters of the four blocks (25, 50, 100, 200 in the paper).
    dropout : float
        Dropout before blocks 2-4.

    References
    ----------
    Schirrmeister, R. T., Springenberg, J. T., Fiederer, L. D. J., Glasstetter, M., Eggensperger, K.,
    Tangermann, M., Hutter, F., Burgard, W., & Ball, T. (2017). Deep learning with convolutional neural
    networks for EEG decoding and visualization. Human Brain Mapping, 38(11), 5391-5420.
    https://doi.org/10.1002/hbm.23730
    """

    reference_sfreq = 250.0

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, n_filters=(25, 50, 100, 200),
                 dropout=0.5, *, ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        # The first block scales with sfreq; later blocks run at the pooled rate, so their kernels scale with
        # that rate and their pooling stays 3 (the receptive field in seconds matches the paper's).
        k, pool = self.samples(10, 2), self.samples(3, 2)
        k_later = max(2, int(round(10 * (self.sfreq / pool) / (self.reference_sfreq / 3))))
        f = list(n_filters)
        if len(f) != 4:
            raise ValueError(f"'n_filters' ({n_filters}) must list 4 block widths.")
        blocks = [
            nn.Conv2d(1, f[0], (1, k)),
            nn.Conv2d(f[0], f[0], (n_chans, 1), bias=False),
            nn.BatchNorm2d(f[0]),
            nn.ELU(),
            nn.MaxPool2d((1, pool), stride=(1, pool)),
        ]
        for c_in, c_out in zip(f[:-1], f[1:]):
            blocks += [
                nn.Dropout(dropout),
                nn.Conv2d(c_in, c_out, (1, k_later), bias=False),
                nn.BatchNorm2d(c_out),
                nn.ELU(),
                nn.MaxPool2d((1, 3), stride=(1, 3)),
            ]
        self.body = nn.Sequential(*blocks)
        self.classifier = nn.Linear(int(torch.tensor(self.feature_shape()).prod()), n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))
