"""EEGNet."""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from .base import Decoder
from .registry import register


def same_pad_time(kernel: int) -> nn.ZeroPad2d:
    """Zero padding along time that keeps the length (works for even kernels too)."""
    return nn.ZeroPad2d(((kernel - 1) // 2, kernel // 2, 0, 0))


class EEGNetFeatures(nn.Module):
    """EEGNet's convolutional blocks (shared with EEG-TCNet)."""

    def __init__(self, n_chans, kern, sep_kern, pool1, pool2, F1, D, F2, dropout, bn_momentum=0.1, bn_eps=1e-5):
        super().__init__()
        bn = {"momentum": bn_momentum, "eps": bn_eps}
        self.block1 = nn.Sequential(
            same_pad_time(kern),
            nn.Conv2d(1, F1, (1, kern), bias=False),
            nn.BatchNorm2d(F1, **bn),
            nn.Conv2d(F1, F1 * D, (n_chans, 1), groups=F1, bias=False),  # depthwise spatial filters
            nn.BatchNorm2d(F1 * D, **bn),
            nn.ELU(),
            nn.AvgPool2d((1, pool1)),
            nn.Dropout(dropout),
        )
        self.block2 = nn.Sequential(
            same_pad_time(sep_kern),
            nn.Conv2d(F1 * D, F1 * D, (1, sep_kern), groups=F1 * D, bias=False),  # separable: depthwise ...
            nn.Conv2d(F1 * D, F2, 1, bias=False),  # ... then pointwise
            nn.BatchNorm2d(F2, **bn),
            nn.ELU(),
            nn.AvgPool2d((1, pool2)),
            nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``block2(block1(x))`` computed with space filtered before time, in training too (see
        :func:`spatial_first_block1`): the same function, several times less work than ``time_first``."""
        pad, temporal, bn1, spatial, *rest = self.block1
        z = spatial_first_block1(x, pad, temporal, bn1, spatial)
        for layer in rest:
            z = layer(z)
        return self.block2(z)  # [B, F2, 1, T']

    def time_first(self, x: torch.Tensor) -> torch.Tensor:
        """The layers as written (temporal convolution over every channel first): the reference of ``forward``."""
        return self.block2(self.block1(x.unsqueeze(1)))

    @property
    def spatial(self) -> nn.Conv2d:
        """The depthwise spatial convolution (one spatial filter per output channel)."""
        return self.block1[3]

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


def spatial_first_block1(x: torch.Tensor, pad: nn.ZeroPad2d, temporal: nn.Conv2d, bn: nn.BatchNorm2d,
                         spatial: nn.Conv2d) -> torch.Tensor:
    """``spatial(bn(temporal(pad(x))))`` for ``x`` ``[B, C, T]``, in training as in evaluation, with the channels
    mixed first: ``F1 * D`` temporal convolutions instead of ``F1 * C``.

    In evaluation ``bn`` is a fixed affine map. In training it normalises with the batch's own mean and variance
    of ``y = h * x`` over (batch, channel, time), which this order never forms: they follow from the input's
    lagged means and products, ``mean_f = h_f . mu`` and ``E[y_f^2] = h_f' A h_f`` with ``mu[k]`` the mean of
    ``x[t + k]`` and ``A[k, k']`` the mean of ``x[t + k] x[t + k']`` over the padded input (exact at the edges:
    prefix sums over time of each lag's products). The running statistics are updated as ``bn`` would.
    """
    xp = pad(x.unsqueeze(1))[:, 0]  # [B, C, n]: zero-padded along time
    B, C, n = xp.shape
    h = temporal.weight[:, 0, 0, :]  # [F1, K]
    F1, K = h.shape
    w = spatial.weight[:, 0, :, 0]  # [F1 * D, C]
    D = w.shape[0] // F1
    T = n - K + 1
    use_batch = bn.training or bn.running_mean is None
    if use_batch:  # in float32 whatever autocast says: a variance from sums of squares needs the precision
        N = B * C * T
        with torch.autocast(x.device.type, enabled=False), \
                torch.no_grad() if not x.requires_grad else contextlib.nullcontext():
            flat = xp.reshape(B * C, n).float()
            total = torch.cat([flat.new_zeros(1), flat.sum(0).cumsum(0)])
            lags = torch.arange(K, device=x.device)
            mu = (total[lags + T] - total[lags]) / N  # [K]
            ahead = nn.functional.pad(flat, (0, K - 1)).unfold(1, K, 1)  # [B*C, n, K]: x[s + L], 0 beyond the end
            products = torch.einsum("is,isl->sl", flat, ahead)  # [n, K]: sum over (b, c) of x[s] x[s + L]
            prefix = torch.cat([products.new_zeros(1, K), products.cumsum(0)])
            lagged = (prefix[lags + T] - prefix[lags]) / N  # [K, K]: lagged[k, L] = mean of x[t + k] x[t + k + L]
            lagged = lagged * torch.where(lags == 0, 1.0, 2.0)  # A is symmetric: each off-diagonal pair twice
        with torch.autocast(x.device.type, enabled=False):
            hf = h.float()
            shifted = nn.functional.pad(hf, (0, K - 1)).unfold(1, K, 1)  # [F1, K, K]: h[f, k + L], 0 beyond
            mean = hf @ mu
            var = torch.einsum("fk,fkl,kl->f", hf, shifted, lagged) - mean**2  # biased, as BatchNorm normalises
        if bn.training and bn.track_running_stats:
            with torch.no_grad():
                bn.num_batches_tracked += 1
                m = bn.momentum if bn.momentum is not None else 1.0 / float(bn.num_batches_tracked)
                bn.running_mean.mul_(1 - m).add_(m * mean)
                bn.running_var.mul_(1 - m).add_(m * var * N / (N - 1))
    else:
        mean, var = bn.running_mean, bn.running_var
    scale = bn.weight / torch.sqrt(var + bn.eps) if bn.affine else 1.0 / torch.sqrt(var + bn.eps)
    shift = (bn.bias if bn.affine else 0.0) - mean * scale
    mixed = torch.einsum("oc,bcn->bon", w, xp)  # [B, F1 * D, n]
    filtered = nn.functional.conv1d(mixed, h.repeat_interleave(D, 0)[:, None, :], groups=F1 * D)  # [B, F1 * D, T]
    out = filtered * scale.repeat_interleave(D)[:, None] + (shift.repeat_interleave(D) * w.sum(1))[:, None]
    return out.unsqueeze(2)  # [B, F1 * D, 1, T]


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
        """Mix the channels, then filter each mixture in time: ``x`` is ``[batch, 1, n_chans, n_times]``."""
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
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
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
    max_norm_spatial : float or None
        Largest L2 norm of each spatial filter, enforced after every optimiser step (None: no constraint). The
        paper regularises each spatial filter with a maximum norm of 1 (section 2.2); set 1.0 for its value.
    max_norm_classifier : float or None
        Largest L2 norm of each class's weights in the classifier, enforced after every optimiser step. The
        authors' reference implementation (arl-eegmodels, ``EEGModels.py``) uses 0.25.
    batch_norm_momentum, batch_norm_eps : float
        BatchNorm settings (PyTorch's convention: the weight of the new batch). The reference implementation
        uses Keras' defaults, momentum 0.99 and epsilon 1e-3, which are ``batch_norm_momentum=0.01`` and
        ``batch_norm_eps=1e-3`` here; the defaults are PyTorch's (0.1, 1e-5).

    With ``max_norm_spatial=1.0, max_norm_classifier=0.25, batch_norm_momentum=0.01, batch_norm_eps=1e-3``
    (``model.params`` in a config) the network is trained as the paper's was.

    References
    ----------
    Lawhern, V. J., Solon, A. J., Waytowich, N. R., Gordon, S. M., Hung, C. P., & Lance, B. J. (2018).
    EEGNet: a compact convolutional neural network for EEG-based brain-computer interfaces.
    Journal of Neural Engineering, 15(5), 056013. https://doi.org/10.1088/1741-2552/aace8c
    """

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, F1=8, D=2, F2=16, kernel_seconds=0.5,
                 dropout=0.25, max_norm_spatial=None, max_norm_classifier=None, batch_norm_momentum=0.1,
                 batch_norm_eps=1e-5, *, ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        for name, value in (("max_norm_spatial", max_norm_spatial), ("max_norm_classifier", max_norm_classifier)):
            if value is not None and not value > 0:
                raise ValueError(f"'{name}' ({value!r}) must be a positive norm or None (no constraint).")
        if not 0 < batch_norm_momentum <= 1 or not batch_norm_eps > 0:
            raise ValueError(f"'batch_norm_momentum' ({batch_norm_momentum}) must be in (0, 1] and 'batch_norm_eps' "
                             f"({batch_norm_eps}) positive.")
        self.max_norm_spatial, self.max_norm_classifier = max_norm_spatial, max_norm_classifier
        self.body = EEGNetFeatures(
            n_chans,
            kern=max(2, int(round(kernel_seconds * self.sfreq))),
            sep_kern=16,  # after the first pooling: the rate no longer depends on sfreq
            pool1=self.samples(4),
            pool2=8,
            F1=F1, D=D, F2=F2, dropout=dropout, bn_momentum=batch_norm_momentum, bn_eps=batch_norm_eps,
        )
        self.classifier = nn.Linear(int(torch.tensor(self.feature_shape()).prod()), n_outputs)

    @torch.no_grad()
    def apply_constraints(self) -> None:
        """The max-norm constraints (Keras semantics: after each update, rescale what exceeds the norm)."""
        if self.max_norm_spatial is not None:  # one row per spatial filter: [F1*D, 1, n_chans, 1]
            w = self.body.spatial.weight
            w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=self.max_norm_spatial))
        if self.max_norm_classifier is not None:  # one row per class: [n_outputs, features]
            w = self.classifier.weight
            w.copy_(torch.renorm(w, p=2, dim=0, maxnorm=self.max_norm_classifier))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Both convolution blocks' output for windows ``x`` (``[batch, n_chans, n_times]``), before the classifier."""
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits, ``[batch, n_outputs]``) of windows ``x`` (``[batch, n_chans, n_times]``)."""
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
