"""DeepConvNet (Deep4Net)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .fused import fold_space_time
from .registry import register


@register("deep")
class DeepConvNet(Decoder):
    """Deep ConvNet: a temporal + spatial first block and three conv-pool blocks of growing width.

    Kernel lengths (10) are the paper's values at 250 Hz, scaled with ``sfreq``; the first pooling
    (3 with stride 3) too; later blocks run at the pooled rate, so their receptive field in seconds
    matches the paper's.

    **Short windows**: the paper's layout (every later block pools by 3) needs about 1.8 s (1.9 s at 125 Hz;
    the paper used 4 s). A shorter window keeps every kernel and the first pooling, and the later blocks'
    pooling adapts: from the second block on, a block pools by 3 only if the blocks after it still fit
    without pooling, otherwise it does not pool (1). A 0.5 s window (at 125 Hz to 1 kHz) gets later pools
    1, 1, 3. Windows long enough for the paper's layout get exactly that layout; a window too short even without later pooling (about 0.38 s) is refused with its minimum.
    :attr:`later_pools` holds the pools chosen.

    For deployment (:meth:`inference_module`) the first block's temporal and spatial convolutions and its
    BatchNorm are folded into one linear filter (:mod:`models.fused`).

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
        self.later_pools = later_pools((n_times - k + 1) // pool, k_later, len(f) - 1)
        blocks = [
            nn.Conv2d(1, f[0], (1, k)),
            nn.Conv2d(f[0], f[0], (n_chans, 1), bias=False),
            nn.BatchNorm2d(f[0]),
            nn.ELU(),
            nn.MaxPool2d((1, pool), stride=(1, pool)),
        ]
        for c_in, c_out, p in zip(f[:-1], f[1:], self.later_pools):
            blocks += [
                nn.Dropout(dropout),
                nn.Conv2d(c_in, c_out, (1, k_later), bias=False),
                nn.BatchNorm2d(c_out),
                nn.ELU(),
                nn.MaxPool2d((1, p), stride=(1, p)) if p > 1 else nn.Identity(),
            ]
        self.body = nn.Sequential(*blocks)
        self.classifier = nn.Linear(int(torch.tensor(self.feature_shape()).prod()), n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.unsqueeze(1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x).flatten(1))

    def _minimum_times(self) -> int:
        """The shortest window that builds (later blocks not pooling): the architecture adapts to the window."""
        k, pool = self.body[0].kernel_size[1], self.body[4].kernel_size[1]
        k_later = self.body[6].kernel_size[1]
        n_later = len(self.later_pools)
        return (n_later * (k_later - 1) + 1) * pool + k - 1

    def inference_module(self) -> nn.Module:
        """The same function (eval mode) with the first block's linear part folded
        (:func:`models.fused.fold_space_time`); input samples the first pooling drops are not filtered."""
        k = self.body[0].kernel_size[1]
        pool = self.body[4].kernel_size[1]
        used = (self.n_times - k + 1) // pool * pool + k - 1
        front = fold_space_time(self.body[0], self.body[1], self.body[2], used)
        return _DeepInference(front, used, self.body[3:], self.classifier)


def later_pools(length: int, kernel: int, n_blocks: int, pool: int = 3) -> list[int]:
    """Pooling of the blocks after the first, for a feature sequence of ``length`` samples entering them: each
    pools by ``pool`` if the blocks after it still fit without pooling, else not at (1). Every block's
    convolution (``kernel``) needs at least ``kernel`` samples; a sequence too short for all is left to the
    shape check (pools of 3, as in the paper)."""
    pools = []
    for i in range(n_blocks):
        after = length - kernel + 1  # this block's convolution output
        rest = n_blocks - i - 1
        fits_pooled = after >= pool and after // pool - rest * (kernel - 1) >= 1
        if fits_pooled:
            pools.append(pool)
            length = after // pool
        elif after - rest * (kernel - 1) >= 1:
            pools.append(1)
            length = after
        else:
            return [pool] * n_blocks
    return pools


class _DeepInference(nn.Module):
    def __init__(self, front: nn.Module, used: int, rest: nn.Module, classifier: nn.Module):
        super().__init__()
        self.front, self.used, self.rest, self.classifier = front, used, rest, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.rest(self.front(x[:, :, : self.used])).flatten(1))
