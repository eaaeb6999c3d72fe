"""Export a plain decoder ``nn.Module`` to ONNX: input ``signals``, outputs ``logits`` and ``probabilities``
(and ``gate``, the movement probability ``[batch]``, for a gated decoder: ``models.gated``).

Uses the TorchScript-based exporter (``dynamo=False``): it handles every registered decoder, including
the recurrent ones, with a dynamic batch axis. Training side only (imports torch).
"""

from __future__ import annotations

import warnings
from pathlib import Path

import onnx
import torch
from torch import nn

from datasets.atomic import atomic_path


class WithProbabilities(nn.Module):
    """Adds softmax probabilities as a second output, so the runtime needs no maths of its own."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(signals)
        return logits, torch.softmax(logits, dim=1)


class WithGate(nn.Module):
    """A gated decoder's outputs: logits, probabilities and the gate's movement probability."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, signals: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        logits, gate = self.net.forward_with_gate(signals)
        return logits, torch.softmax(logits, dim=1), gate


def output_names(module: nn.Module) -> list[str]:
    """The ONNX outputs ``module`` is exported with."""
    return ["logits", "probabilities", "gate"] if getattr(module, "has_gate", False) else ["logits", "probabilities"]


def export_onnx(module: nn.Module, n_chans: int, n_times: int, path: str | Path, opset: int = 17) -> Path:
    """Write ``module`` (in eval mode) as ONNX to ``path`` atomically; returns the path.

    The file is written to a temporary name in the same folder, checked with ``onnx.checker``, then
    renamed; on any failure nothing is left behind.
    """
    path = Path(path)
    was_training = module.training
    module.eval()
    try:
        with atomic_path(path, ".onnx") as tmp:
            example = torch.zeros(1, n_chans, n_times)
            with torch.no_grad(), warnings.catch_warnings():
                warnings.simplefilter("ignore")  # exporter chatter about RNN batch sizes and deprecations
                # an equivalent faster arrangement where the decoder offers one (parity is checked after export)
                deployable = module.inference_module() if hasattr(module, "inference_module") else module
                names = output_names(deployable)
                torch.onnx.export(
                    WithGate(deployable) if "gate" in names else WithProbabilities(deployable),
                    (example,),
                    str(tmp),
                    input_names=["signals"],
                    output_names=names,
                    dynamic_axes={"signals": {0: "batch"}, **{name: {0: "batch"} for name in names}},
                    opset_version=opset,
                    dynamo=False,
                )
            onnx.checker.check_model(str(tmp))
    finally:
        module.train(was_training)
    return path
