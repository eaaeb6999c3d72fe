"""Amplitude network: slow-field features (learned spatial filters -> mean amplitude in time bins -> linear)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .registry import register
from .whitening import folded, whitening_matrix


@register("amplitude")
class AmplitudeNet(Decoder):
    """Learned spatial filters, their mean amplitude in consecutive time bins, and a linear classifier.

    The reference MEG BMI decided *whether* the patient moved from slow movement-related fields: the
    amplitude time course of low-passed sensor signals, classified linearly (an SVM on field values sampled
    across the window). A power feature (:class:`models.logvar.LogVarNet`) cannot see such a field: it is a
    deflection of the mean, not of the variance. Here the channels are projected onto a few learned spatial
    filters and each projection is averaged over ``n_bins`` equal bins that end at the window's newest sample;
    the bins are the features. With ``demean=True`` each channel's window mean is removed first, so a DC offset
    or a slow drift between sessions does not move the features; the deflection's shape inside the window
    remains. ``log_variance=True`` adds each filter's log variance (the CSP feature) beside the bins, so one
    linear stage reads both views when the input holds slow fields and rhythms (e.g. stacked by
    :class:`models.bands.BandStack`).

    With ``whiten=True`` the training pipeline calls :meth:`fit_data` once before training, as for
    :class:`models.logvar.LogVarNet`: a fixed whitening matrix in front of the spatial filters. No BatchNorm.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
    n_filters : int
        Spatial filters.
    n_bins : int
        Equal time bins per window (the oldest ``n_times % n_bins`` samples are left out).
    demean : bool
        Remove each channel's window mean before the bins.
    log_variance : bool
        Add each spatial filter's log variance to the features.
    dropout : float
        Dropout on the features.
    whiten : bool
        Learn the spatial filters on whitened channels (:meth:`fit_data`).

    References
    ----------
    Yanagisawa, T., Fukuma, R., Seymour, B., Hosomi, K., Kishima, H., Shimizu, T., Yokoi, H., Hirata, M.,
    Yoshimine, T., Kamitani, Y., & Saitoh, Y. (2016). Induced sensorimotor brain plasticity controls pain in
    phantom limb patients. Nature Communications, 7, 13209. https://doi.org/10.1038/ncomms13209

    Blankertz, B., Lemm, S., Treder, M., Haufe, S., & Muller, K.-R. (2011). Single-trial analysis and
    classification of ERP components: a tutorial. NeuroImage, 56(2), 814-825.
    https://doi.org/10.1016/j.neuroimage.2010.06.048
    """

    #: a linear model of few parameters, as the log-variance network
    default_lr = 0.01
    default_augment = {"noise": 0.1, "scale": 0.2}

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, n_filters=4, n_bins=5, demean=True,
                 log_variance=False, dropout=0.25, whiten=True, *, ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        for name, value in (("n_filters", n_filters), ("n_bins", n_bins)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"'{name}' ({value!r}) must be a positive integer.")
        if n_times < n_bins:
            raise ValueError(f"'n_bins' ({n_bins}) must be at most 'n_times' ({n_times}).")
        if not 0 <= dropout < 1:
            raise ValueError(f"'dropout' ({dropout!r}) must be in [0, 1).")
        self.n_bins, self.demean, self.log_variance, self.whiten = n_bins, bool(demean), bool(log_variance), whiten
        self.bin_len = n_times // n_bins
        self.spatial = nn.Conv1d(n_chans, n_filters, 1, bias=False)
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(n_filters * (n_bins + int(self.log_variance)), n_outputs)
        self.register_buffer("whitening", torch.eye(n_chans))
        self._folded = False  # the whitening already in the spatial filters (inference_module)

    @torch.no_grad()
    def fit_data(self, X: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """The whitening matrix from the training windows ``[n, n_chans, n_times]`` (with ``whiten``)."""
        if self.whiten and len(X):
            self.whitening.copy_(whitening_matrix(X))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Mean amplitude per filter and bin (then log variances): ``[batch, n_filters * (n_bins [+ 1])]``."""
        if self.demean:
            x = x - x.mean(dim=-1, keepdim=True)
        z = self.spatial(x if self._folded else torch.einsum("dc,bct->bdt", self.whitening, x))  # [B, F, T]
        used = z[..., z.shape[-1] - self.n_bins * self.bin_len :]
        bins = used.reshape(z.shape[0], z.shape[1], self.n_bins, self.bin_len).mean(dim=-1).flatten(1)
        if not self.log_variance:
            return bins
        centred = z - z.mean(dim=-1, keepdim=True)
        logvar = torch.log(torch.clamp((centred * centred).mean(dim=-1), min=1e-6))
        return torch.cat([bins, logvar], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.dropout(self.features(x)))

    def inference_module(self) -> nn.Module:
        """The same function (eval mode) with the whitening folded into the spatial filters
        (:func:`models.whitening.folded`: the steps before the spatial filters act on each channel alike)."""
        return folded(self)
