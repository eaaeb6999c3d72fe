"""ShallowConvNet (ShallowFBCSPNet)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .fused import fold_space_time
from .registry import register


@register("shallow")
class ShallowConvNet(Decoder):
    """Shallow ConvNet: temporal conv, spatial conv, squaring, mean pooling, log -- a learned FBCSP.

    Kernel (25), pooling (75) and stride (15) are the paper's values at 250 Hz, scaled with ``sfreq``.

    For deployment (:meth:`inference_module`) the temporal convolution, spatial convolution and BatchNorm are
    folded into one linear filter from the channels to the ``n_filters`` outputs (:mod:`models.fused`), and the
    input samples no pooling window reaches (the newest few, when the pools do not tile the window) are not
    filtered at all: the same function, 2.5-3x fewer operations with 306 MEG channels.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
    n_filters : int
        Temporal and spatial filters (40 in the paper).
    dropout : float
        Dropout before the classifier.

    References
    ----------
    Schirrmeister, R. T., Springenberg, J. T., Fiederer, L. D. J., Glasstetter, M., Eggensperger, K.,
    Tangermann, M., Hutter, F., Burgard, W., & Ball, T. (2017). Deep learning with convolutional neural
    networks for EEG decoding and visualization. Human Brain Mapping, 38(11), 5391-5420.
    https://doi.org/10.1002/hbm.23730
    """

    reference_sfreq = 250.0

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, n_filters=40, dropout=0.5, *,
                 ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        self.temporal = nn.Conv2d(1, n_filters, (1, self.samples(25, 2)))
        self.spatial = nn.Conv2d(n_filters, n_filters, (n_chans, 1), bias=False)
        self.bn = nn.BatchNorm2d(n_filters)
        self.pool = nn.AvgPool2d((1, self.samples(75, 2)), stride=(1, self.samples(15)))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(int(torch.tensor(self.feature_shape()).prod()), n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Log band power of the learnt temporal and spatial filters over pooled stretches of the window."""
        x = self.bn(self.spatial(self.temporal(x.unsqueeze(1))))
        x = self.pool(x * x)
        return torch.log(torch.clamp(x, min=1e-6))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits, ``[batch, n_outputs]``) of windows ``x`` (``[batch, n_chans, n_times]``)."""
        return self.classifier(self.dropout(self.features(x)).flatten(1))

    def inference_module(self) -> nn.Module:
        """The same function (eval mode) with the front end folded (:func:`models.fused.fold_space_time`)."""
        k = self.temporal.kernel_size[1]
        pool, stride = self.pool.kernel_size[1], self.pool.stride[1]
        n_pools = (self.n_times - k + 1 - pool) // stride + 1
        used = (n_pools - 1) * stride + pool + k - 1  # input samples that reach a pooling window
        return _ShallowInference(fold_space_time(self.temporal, self.spatial, self.bn, used), used, self.pool,
                                 self.classifier)


class _ShallowInference(nn.Module):
    def __init__(self, front: nn.Module, used: int, pool: nn.Module, classifier: nn.Module):
        super().__init__()
        self.front, self.used, self.pool, self.classifier = front, used, pool, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.square(self.front(x[:, :, : self.used])))
        return self.classifier(torch.log(torch.clamp(x, min=1e-6)).flatten(1))
