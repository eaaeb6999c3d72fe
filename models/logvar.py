"""Log-variance network: the deep analogue of CSP (learned spatial filters -> log variance -> linear)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .registry import register


@register("logvar")
class LogVarNet(Decoder):
    """Learned spatial filters, log of their variance over the window, and a linear classifier.

    This is Common Spatial Patterns trained end to end: CSP + LDA projects the (band-passed) channels onto a
    few spatial filters, takes the log variance of each projection and classifies it linearly; here the
    filters and the classifier are learned together by gradient descent. With ``n_bands > 1`` a learned
    temporal convolution first splits the signal into that many bands and every band gets its own spatial
    filters, as in FBCNet's variance layer (filter bank -> depthwise spatial filters -> variance). The window
    is split into ``n_segments`` equal parts whose log variances are all features (FBCNet's temporal
    variance windows); 1 (the default) is plain CSP. No BatchNorm: nothing can go stale between training and
    deployment, and it has few parameters (``n_chans * n_filters`` spatial weights), so it learns from the
    few dozen trials of a calibration session.

    With ``whiten=True`` the training pipeline calls :meth:`fit_data` once before training: a fixed whitening
    matrix (the inverse square root of the training windows' mean covariance, as in CSP's first step and in
    Euclidean alignment) goes in front of the spatial filters. It changes nothing the network can express
    (filters compose linearly) but makes every direction of the sensor space equally easy to learn, so plain
    gradient descent finds CSP-like filters in a few hundred steps; it is a buffer of the model, so the exported
    ONNX file and the server apply it with no extra step.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
    n_filters : int
        Spatial filters (per band).
    n_bands : int
        Learned temporal filters before the spatial filters; 1 means none (the input's band-pass is the band).
    kernel_seconds : float
        Length of the temporal filters when ``n_bands > 1``.
    n_segments : int
        Equal parts of the window, each contributing its own log variance per filter.
    dropout : float
        Dropout on the log-variance features.
    whiten : bool
        Learn the spatial filters on whitened channels (:meth:`fit_data`).

    References
    ----------
    Blankertz, B., Tomioka, R., Lemm, S., Kawanabe, M., & Muller, K.-R. (2008). Optimizing spatial filters for
    robust EEG single-trial analysis. IEEE Signal Processing Magazine, 25(1), 41-56.
    https://doi.org/10.1109/MSP.2008.4408441

    Mane, R., Chew, E., Chua, K., Ang, K. K., Robinson, N., Vinod, A. P., Lee, S.-W., & Guan, C. (2021). FBCNet:
    a multi-view convolutional neural network for brain-computer interface. https://doi.org/10.48550/arXiv.2104.01233
    """

    #: few parameters on a log scale: a larger step than the convolutional decoders' (scripts/bench_accuracy.py)
    default_lr = 0.03
    #: Fourier-transform surrogates and amplitude scaling: the accuracy benchmark's best on S001 left/right
    default_augment = {"ft_surrogate": 0.5, "scale": 0.2}

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, n_filters=16, n_bands=1,
                 kernel_seconds=0.25, n_segments=1, dropout=0.25, whiten=True, *, ch_names=None,
                 input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        for name, value in (("n_filters", n_filters), ("n_bands", n_bands), ("n_segments", n_segments)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' ({value!r}) must be a positive integer.")
        if not 0 <= dropout < 1:
            raise ValueError(f"'dropout' ({dropout!r}) must be in [0, 1).")
        if n_times < 2 * n_segments:
            raise ValueError(f"'n_times' ({n_times}) is too short for {n_segments} segments of at least 2 samples.")
        self.n_bands, self.n_segments = n_bands, n_segments
        if n_bands > 1:
            kern = max(2, int(round(kernel_seconds * self.sfreq)))
            self.temporal = nn.Conv2d(1, n_bands, (1, kern), padding=(0, kern // 2), bias=False)
            self.spatial = nn.Conv2d(n_bands, n_bands * n_filters, (n_chans, 1), groups=n_bands, bias=False)
        else:
            self.temporal = None
            self.spatial = nn.Conv1d(n_chans, n_filters, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_bands * n_filters * n_segments, n_outputs)
        self.whiten = whiten
        self.register_buffer("whitening", torch.eye(n_chans))

    @torch.no_grad()
    def fit_data(self, X: torch.Tensor) -> None:
        """Set the whitening matrix from the training windows ``[n, n_chans, n_times]`` (nothing if ``whiten`` is off)."""
        if not self.whiten or len(X) == 0:
            return
        X = X.double()
        X = X - X.mean(dim=-1, keepdim=True)
        cov = torch.einsum("nct,ndt->cd", X, X) / (X.shape[0] * X.shape[2])
        cov = cov + 1e-6 * torch.trace(cov) / len(cov) * torch.eye(len(cov), dtype=cov.dtype)  # rank-deficient data
        evals, evecs = torch.linalg.eigh(cov)
        self.whitening.copy_((evecs @ torch.diag(evals.clamp_min(1e-12) ** -0.5) @ evecs.T).float())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Log variance of every spatial filter (per band and segment): ``[batch, n_bands * n_filters * n_segments]``."""
        x = torch.einsum("dc,bct->bdt", self.whitening, x)
        if self.temporal is None:
            z = self.spatial(x)  # [B, F, T]
        else:
            z = self.spatial(self.temporal(x.unsqueeze(1))).squeeze(2)  # [B, bands * F, T']
        seg = z.shape[-1] // self.n_segments
        z = z[..., : seg * self.n_segments].reshape(z.shape[0], z.shape[1], self.n_segments, seg)
        z = z - z.mean(dim=-1, keepdim=True)
        var = (z * z).mean(dim=-1)
        return torch.log(torch.clamp(var, min=1e-6)).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))
