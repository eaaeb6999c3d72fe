"""Log-variance network: the deep analogue of CSP (learned spatial filters -> log variance -> linear)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .registry import register
from .whitening import folded, whitening_matrix


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
    init : {"random", "csp"}
        ``csp``: :meth:`fit_data` also sets the spatial filters by CSP and the linear layer by a shrinkage LDA
        on the training windows, so training starts from the classical pipeline's solution and refines it.

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
                 kernel_seconds=0.25, n_segments=1, dropout=0.25, whiten=True, init="random", *, ch_names=None,
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
        if init not in ("random", "csp"):
            raise ValueError(f"'init' ({init!r}) must be 'random' or 'csp'.")
        if init == "csp" and n_bands > 1:
            raise ValueError("'init: csp' sets the spatial filters of the input's band: it needs 'n_bands: 1'.")
        self.n_bands, self.n_segments, self.init = n_bands, n_segments, init
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
        self._folded = False  # the whitening already in the spatial filters (inference_module)

    @torch.no_grad()
    def fit_data(self, X: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Data-dependent set-up from the training windows ``[n, n_chans, n_times]`` and their labels: the
        whitening matrix (``whiten``), then with ``init: csp`` and labels, CSP filters and an LDA classifier."""
        if len(X) == 0:
            return
        if self.whiten:
            self.whitening.copy_(whitening_matrix(X))
        if self.init == "csp" and y is not None and (y >= 0).any():  # label -1: a window this stage does not learn
            self._init_csp_lda(X[y >= 0], y[y >= 0])

    def _init_csp_lda(self, X: torch.Tensor, y: torch.Tensor) -> None:
        """Start where CSP + LDA ends: per class, the spatial filters along which that class has the most power
        relative to the mean over classes (one-vs-rest CSP on the whitened, trace-normalised covariances; two
        classes: the two ends of the CSP spectrum), then a shrinkage LDA on the resulting log-variance features
        as the linear layer (Blankertz et al. 2008; Lotte & Guan 2011, doi:10.1109/TBME.2010.2082539)."""
        Z = torch.einsum("dc,bct->bdt", self.whitening, X.float()).double()
        Z = Z - Z.mean(dim=-1, keepdim=True)
        covs = torch.einsum("nct,ndt->ncd", Z, Z)
        covs = covs / covs.diagonal(dim1=1, dim2=2).sum(-1)[:, None, None]
        classes = [int(k) for k in torch.unique(y)]
        means = {k: covs[y == k].mean(0) for k in classes}
        overall = torch.stack(list(means.values())).mean(0)
        n_filters = self.spatial.weight.shape[0]
        per_class = -(-n_filters // len(classes))
        filters = []
        for k in classes:
            _, vecs = torch.linalg.eigh(means[k] - overall)  # ascending: the last ones favour class k
            filters.append(vecs[:, -per_class:].T.flip(0))
        filters = torch.stack(filters, 1).reshape(-1, Z.shape[1])[:n_filters]  # interleaved: class 0, 1, ... best first
        self.spatial.weight.copy_(filters.float()[:, :, None])
        F = self.features(X.float()).double()
        mu = torch.stack([F[y == k].mean(0) for k in classes])
        within = torch.cat([F[y == k] - mu[i] for i, k in enumerate(classes)])
        S = within.T @ within / max(1, len(F) - len(classes))
        S = 0.9 * S + 0.1 * torch.trace(S) / len(S) * torch.eye(len(S), dtype=S.dtype)  # shrinkage
        W = torch.linalg.solve(S, mu.T).T  # [classes, features]
        prior = torch.tensor([float((y == k).float().mean()) for k in classes], dtype=S.dtype)
        bias = -0.5 * (W * mu).sum(1) + prior.log()
        self.classifier.weight.zero_()
        self.classifier.bias.fill_(float(bias.min()) - 10.0)  # a class absent from the training data: unlikely
        for i, k in enumerate(classes):
            self.classifier.weight[k] = W[i].float()
            self.classifier.bias[k] = bias[i].float()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Log variance of every spatial filter (per band and segment): ``[batch, n_bands * n_filters * n_segments]``."""
        if not self._folded:
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
        """Class scores (logits, ``[batch, n_outputs]``) of windows ``x`` (``[batch, n_chans, n_times]``)."""
        return self.classifier(self.dropout(self.features(x)))

    def inference_module(self) -> nn.Module:
        """The same function (eval mode) with the whitening folded into the spatial filters
        (:func:`models.whitening.folded`: the steps before the spatial filters act on each channel alike)."""
        return folded(self)
