"""An ensemble of trained decoders that averages their class probabilities: one module, one ONNX file."""

from __future__ import annotations

import torch
from torch import nn


class ChannelAffine(nn.Module):
    """A fixed ``x -> M x + b`` over channels: maps windows normalised one way to another normalisation.

    Members of an ensemble trained on different folds have their own (train-only) standardisation; the
    ensemble takes windows normalised with the first member's statistics and gives every other member
    the windows it was trained on.
    """

    def __init__(self, matrix: torch.Tensor, bias: torch.Tensor):
        super().__init__()
        self.register_buffer("matrix", matrix.detach().clone().float())
        self.register_buffer("bias", bias.detach().clone().float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("dc,bct->bdt", self.matrix, x) + self.bias[None, :, None]


class ProbabilityEnsemble(nn.Module):
    """The mean of the members' softmax probabilities, returned as log-probabilities.

    ``forward`` returns ``log(mean_i softmax(member_i(x)))``, so the exported model's ``probabilities``
    output (softmax of the logits) is exactly the mean of the members' probabilities, and its ``logits``
    are valid logits of that mean. Members see the same window, optionally through a :class:`ChannelAffine`
    adapter each (``None`` = the window as is).

    Averaging the predictions of independently trained networks (different seeds or folds) reduces the
    variance of a decoder trained on few trials: Lakshminarayanan, Pritzel & Blundell (2017), Simple and
    scalable predictive uncertainty estimation using deep ensembles, https://doi.org/10.48550/arXiv.1612.01474
    """

    def __init__(self, members: list[nn.Module], adapters: list[nn.Module | None] | None = None):
        super().__init__()
        if len(members) < 1:
            raise ValueError("'members' is empty: an ensemble needs at least one trained decoder.")
        adapters = adapters or [None] * len(members)
        if len(adapters) != len(members):
            raise ValueError(f"'adapters' has {len(adapters)} entries for {len(members)} members.")
        self.members = nn.ModuleList(members)
        self.adapters = nn.ModuleList([a if a is not None else nn.Identity() for a in adapters])

    registry_name = "ensemble"

    @property
    def hparams(self) -> dict:
        """The members' own descriptions (signal arguments once, from the first member) and how they combine."""
        from .registry import hyperparameters

        signal = ("n_chans", "n_times", "n_outputs", "sfreq")
        first = hyperparameters(self.members[0])
        members = [{k: v for k, v in hyperparameters(m).items() if k not in signal} for m in self.members]
        return {**{k: first[k] for k in signal if k in first}, "members": members, "combine": "mean probability"}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        log_probs = [torch.log_softmax(m(a(x)), dim=1) for m, a in zip(self.members, self.adapters)]
        return torch.logsumexp(torch.stack(log_probs), dim=0) - torch.log(torch.tensor(float(len(log_probs))))

    def inference_module(self) -> nn.Module:
        """The same ensemble built from each member's fastest equivalent arrangement (parity is checked on export)."""
        members = [m.inference_module() if hasattr(m, "inference_module") else m for m in self.members]
        out = ProbabilityEnsemble(members, list(self.adapters))
        return out.eval()
