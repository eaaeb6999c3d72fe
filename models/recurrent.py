"""Recurrent decoders: LSTM and GRU over the time course of learned spatial filters' log band power."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .registry import register


class _RecurrentDecoder(Decoder):
    """Spatial filters -> log power in short steps -> recurrent layer -> last state -> linear.

    The input is already band-passed (mu/beta), so the power of learned spatial filters is the
    CSP-like feature motor decoding rests on; the recurrence follows its time course over the window.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
    hidden_size : int
        Recurrent state size.
    num_layers : int
        Stacked recurrent layers.
    n_spatial : int
        Spatial filters applied to every sample before the recurrence.
    step_seconds : float
        Time step of the recurrence: power is averaged over this long (0.1 s).
    dropout : float
        Dropout on the last state.
    """

    cell: type[nn.Module] = nn.LSTM

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, hidden_size=64, num_layers=1,
                 n_spatial=16, step_seconds=0.1, dropout=0.25, *, ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        self.spatial = nn.Conv1d(n_chans, n_spatial, 1)
        self.norm = nn.BatchNorm1d(n_spatial)
        self.pool = nn.AvgPool1d(max(1, int(round(step_seconds * self.sfreq))))
        self.rnn = self.cell(n_spatial, hidden_size, num_layers=num_layers, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.feature_shape()
        self.classifier = nn.Linear(hidden_size, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.spatial(x)
        x = self.norm(torch.log(torch.clamp(self.pool(x * x), min=1e-6)))  # [B, n_spatial, T'] log power
        out, _ = self.rnn(x.transpose(1, 2))
        return out  # [B, T', hidden]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.features(x)[:, -1]))


@register("lstm")
class LSTMDecoder(_RecurrentDecoder):
    __doc__ = (
        "LSTM decoder. " + (_RecurrentDecoder.__doc__ or "") + """
    References
    ----------
    Hochreiter, S., & Schmidhuber, J. (1997). Long short-term memory. Neural Computation, 9(8), 1735-1780.
    https://doi.org/10.1162/neco.1997.9.8.1735
    """
    )
    cell = nn.LSTM


@register("gru")
class GRUDecoder(_RecurrentDecoder):
    __doc__ = (
        "GRU decoder. " + (_RecurrentDecoder.__doc__ or "") + """
    References
    ----------
    Cho, K., van Merrienboer, B., Gulcehre, C., Bahdanau, D., Bougares, F., Schwenk, H., & Bengio, Y. (2014).
    Learning phrase representations using RNN encoder-decoder for statistical machine translation.
    EMNLP 2014, 1724-1734. https://doi.org/10.3115/v1/D14-1179
    """
    )
    cell = nn.GRU
