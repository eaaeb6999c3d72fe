"""A fixed whitening in front of learned spatial filters (the log-variance and amplitude networks): estimated
once from the training windows, and folded into those filters for inference."""

from __future__ import annotations

import copy

import torch
from torch import nn


@torch.no_grad()
def whitening_matrix(X: torch.Tensor) -> torch.Tensor:
    """The inverse square root of the mean covariance of the windows ``[n, n_chans, n_times]`` (each window's
    channel means removed), as in CSP's first step and in Euclidean alignment; float32."""
    Xc = X.double() - X.double().mean(dim=-1, keepdim=True)
    cov = torch.einsum("nct,ndt->cd", Xc, Xc) / (Xc.shape[0] * Xc.shape[2])
    cov = cov + 1e-6 * torch.trace(cov) / len(cov) * torch.eye(len(cov), dtype=cov.dtype)  # rank-deficient data
    evals, evecs = torch.linalg.eigh(cov)
    return (evecs @ torch.diag(evals.clamp_min(1e-12) ** -0.5) @ evecs.T).float()


@torch.no_grad()
def folded(net: nn.Module) -> nn.Module:
    """A copy of ``net`` (eval mode) whose ``whitening`` buffer is folded into its ``spatial`` convolution: one
    ``n_filters x n_chans`` mix instead of a ``n_chans x n_chans`` one before it (at 306 channels about 20x
    fewer multiply-adds). Valid when every step between the two acts on each channel alike (a channel mix
    commutes with them); the copy's ``_folded`` flag tells its forward pass to skip the whitening."""
    fast = copy.deepcopy(net).eval()
    weight = fast.spatial.weight  # [F, C, 1], or [bands * F, 1, C, 1] for a filter bank
    flat = weight.reshape(weight.shape[0], -1).double()
    weight.copy_((flat @ fast.whitening.double()).float().reshape(weight.shape))  # one rounding
    fast.whitening.copy_(torch.eye(len(fast.whitening)))
    fast._folded = True
    return fast
