"""CNN-LSTM hybrid."""

from __future__ import annotations

import torch
from torch import nn

from .base import Decoder
from .fused import fold_space_time
from .registry import register


@register("cnn_lstm")
class CNNLSTM(Decoder):
    """Temporal + spatial convolution front end, LSTM back end over the pooled feature sequence.

    The front end learns band-pass and spatial filters (as ShallowConvNet does), takes the log of the
    band power in short steps, and the LSTM integrates that sequence over the window.

    For deployment (:meth:`inference_module`) the temporal convolution, spatial convolution and BatchNorm are
    folded into one linear filter (:mod:`models.fused`; with many channels it mixes space first), input
    samples the power pooling drops are not filtered, and the LSTM runs as onnxruntime's fused LSTM operator.

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments (a missing one is inferred from the others), see :class:`models.base.Decoder`.
    n_filters : int
        Convolutional filters.
    kernel_seconds : float
        Temporal kernel length (0.1 s).
    step_seconds : float
        Power-pooling step, the LSTM's time step (0.05 s).
    hidden_size : int
        LSTM state size.
    dropout : float
        Dropout on the last state.

    References
    ----------
    Wang, P., Jiang, A., Liu, X., Shang, J., & Zhang, L. (2018). LSTM-based EEG classification in motor
    imagery tasks. IEEE Transactions on Neural Systems and Rehabilitation Engineering, 26(11), 2086-2095.
    https://doi.org/10.1109/TNSRE.2018.2876129
    """

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, n_filters=16, kernel_seconds=0.1,
                 step_seconds=0.05, hidden_size=32, dropout=0.25, *, ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        n_chans, n_times, n_outputs = self.n_chans, self.n_times, self.n_outputs  # as resolved
        kernel = max(2, int(round(kernel_seconds * self.sfreq)))
        step = max(1, int(round(step_seconds * self.sfreq)))
        self.temporal = nn.Conv2d(1, n_filters, (1, kernel))
        self.spatial = nn.Conv2d(n_filters, n_filters, (n_chans, 1), bias=False)
        self.bn = nn.BatchNorm2d(n_filters)
        self.pool = nn.AvgPool2d((1, step))
        self.lstm = nn.LSTM(n_filters, hidden_size, batch_first=True)
        self.drop = nn.Dropout(dropout)
        self.feature_shape()
        self.classifier = nn.Linear(hidden_size, n_outputs)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.spatial(self.temporal(x.unsqueeze(1))))  # [B, F, 1, T]
        x = torch.log(torch.clamp(self.pool(x * x), min=1e-6)).squeeze(2)  # [B, F, T']
        out, _ = self.lstm(x.transpose(1, 2))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.drop(self.features(x)[:, -1]))

    def inference_module(self) -> nn.Module:
        """The same function (eval mode) with the front end folded (:func:`models.fused.fold_space_time`)."""
        k, step = self.temporal.kernel_size[1], self.pool.kernel_size[1]
        used = (self.n_times - k + 1) // step * step + k - 1
        front = fold_space_time(self.temporal, self.spatial, self.bn, used)
        return _CNNLSTMInference(front, used, self.pool, self.lstm, self.classifier)


class _CNNLSTMInference(nn.Module):
    def __init__(self, front: nn.Module, used: int, pool: nn.Module, lstm: nn.LSTM, classifier: nn.Module):
        super().__init__()
        self.front, self.used, self.pool, self.lstm, self.classifier = front, used, pool, lstm, classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(torch.square(self.front(x[:, :, : self.used])))
        x = torch.log(torch.clamp(x, min=1e-6)).squeeze(2)  # [B, F, T']
        out, _ = self.lstm(x.transpose(1, 2))
        return self.classifier(out[:, -1])
