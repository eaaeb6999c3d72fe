"""Folding a linear temporal -> spatial -> BatchNorm front end into one cheaper equivalent, for inference.

ShallowConvNet, DeepConvNet and the CNN-LSTM start with a temporal convolution applied to every channel, a
spatial convolution across channels and a BatchNorm: all linear (in eval mode), so together they are one
linear filter ``y[g, t] = sum_c sum_k K[g, c, k] x[c, t + k] + b[g]`` with
``K[g, c, k] = a[g] sum_f W[g, f, c] h[f, k]``. Run as trained, the temporal filters see every channel
(``F * C * k`` multiply-adds per output sample, then ``G * F * C`` for the spatial mix); folded, the cost is
the cheaper of

* **direct**: one convolution from the ``C`` channels to the ``G`` outputs (``G * C * k`` per output sample);
* **space first**: mix the channels into ``G * F`` spatial components (``G * F * C`` per input sample), then
  one temporal filter per component, summed per output (a grouped convolution, ``G * F * k``, which
  onnxruntime runs about 8x slower per multiply-add than a dense one). With EEGNet's depthwise spatial
  filters (``F = 1`` per output) this is ``models.eegnet.SpatialFirst``.

Both compute exactly the same function up to float rounding; the export's parity test checks it.
"""

from __future__ import annotations

import torch
from torch import nn

#: relative cost of a multiply-add in onnxruntime's grouped convolution against a dense one (one thread)
GROUPED_PENALTY = 8


def fold_space_time(temporal: nn.Conv2d, spatial: nn.Conv2d, bn: nn.BatchNorm2d | None, n_in_times: int,
                    mode: str = "auto") -> nn.Module:
    """The module ``[B, C, T] -> [B, G, 1, T - k + 1]`` equal (eval mode) to ``bn(spatial(temporal(x[:, None])))``.

    ``temporal``: ``Conv2d(1, F, (1, k))`` (bias optional); ``spatial``: ``Conv2d(F, G, (C, 1), groups=S)``
    without bias; ``bn``: ``BatchNorm2d(G)`` or None. ``mode``: "direct", "space_first" or "auto" (the one with
    fewer multiply-adds for an input of ``n_in_times`` samples).
    """
    if temporal.in_channels != 1 or temporal.kernel_size[0] != 1 or temporal.padding != (0, 0) \
            or temporal.stride != (1, 1) or temporal.dilation != (1, 1):
        raise ValueError("fold_space_time: the temporal convolution must be Conv2d(1, F, (1, k)) without padding.")
    if spatial.bias is not None or spatial.kernel_size[1] != 1 or spatial.padding != (0, 0):
        raise ValueError("fold_space_time: the spatial convolution must be Conv2d(F, G, (C, 1)) without bias.")
    with torch.no_grad():
        h = temporal.weight[:, 0, 0, :].double()  # [F, k]
        b = temporal.bias.double() if temporal.bias is not None else torch.zeros(h.shape[0], dtype=torch.float64)
        W = spatial.weight[:, :, :, 0].double()  # [G, F/S, C]
        G, f_per, C = W.shape
        groups = spatial.groups
        g_per = G // groups
        # the temporal filters feeding each output: output g of group s sees filters s*f_per ... (s+1)*f_per - 1
        first = (torch.arange(G) // g_per) * f_per
        idx = first[:, None] + torch.arange(f_per)[None, :]  # [G, f_per]
        if bn is not None:
            a = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            beta = bn.bias.double() - bn.running_mean.double() * a
        else:
            a, beta = torch.ones(G, dtype=torch.float64), torch.zeros(G, dtype=torch.float64)
        Wa = W * a[:, None, None]  # BatchNorm's scale folded into the spatial weights
        bias = (Wa.sum(2) * b[idx]).sum(1) + beta  # [G]
        k = h.shape[1]
        n_out = n_in_times - k + 1
        direct_cost = G * C * k * n_out
        # onnxruntime runs a grouped convolution several times slower per multiply-add than a dense one
        # (measured ~8x with one thread: scripts/bench_inference.py), hence the weight
        space_first_cost = G * f_per * C * n_in_times + GROUPED_PENALTY * G * f_per * k * n_out
        if mode == "auto":
            mode = "direct" if direct_cost <= space_first_cost else "space_first"
        if mode == "direct":
            kernel = torch.einsum("gfc,gfk->gck", Wa, h[idx])  # [G, C, k]
            return DirectSpaceTime(kernel.float(), bias.float())
        if mode == "space_first":
            return SpaceFirst(Wa.reshape(G * f_per, C).float(), h[idx].reshape(G * f_per, k).float(), bias.float(), G)
    raise ValueError(f"'mode' ({mode!r}) must be 'auto', 'direct' or 'space_first'.")


class DirectSpaceTime(nn.Module):
    """One convolution from the channels to the outputs: ``[B, C, T] -> [B, G, 1, T']``."""

    def __init__(self, kernel: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        G, C, k = kernel.shape
        self.conv = nn.Conv1d(C, G, k)
        self.conv.weight.data = kernel.detach().clone()
        self.conv.bias.data = bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x).unsqueeze(2)


class SpaceFirst(nn.Module):
    """Channel mixing into ``G * R`` components, then one temporal filter each, summed per output (grouped)."""

    def __init__(self, mix: torch.Tensor, filters: torch.Tensor, bias: torch.Tensor, n_out: int):
        super().__init__()
        n_comp, C = mix.shape
        self.mix = nn.Conv1d(C, n_comp, 1, bias=False)
        self.mix.weight.data = mix.detach().clone()[:, :, None]
        self.filt = nn.Conv1d(n_comp, n_out, filters.shape[1], groups=n_out)
        self.filt.weight.data = filters.detach().clone().reshape(n_out, n_comp // n_out, -1)
        self.filt.bias.data = bias.detach().clone()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.filt(self.mix(x)).unsqueeze(2)
