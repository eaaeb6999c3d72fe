"""``trainer.compile``: the decoder's forward pass under ``torch.compile``, tried first, eager when it fails.

Compiling happens on the first call of each graph (training and evaluation mode, each batch shape), inside the
training loop, where an error would end the run. So the graphs for training and evaluation are compiled on one
real batch before the first step, and any failure there (no C++ compiler, an operator the compiler does not
take) leaves the run in eager mode with the reason. The trial leaves the network (weights, BatchNorm statistics,
gradients) and the random number generators exactly as it found them.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


def compiled_forward(net: nn.Module, example: torch.Tensor):
    """``(forward, None)``: ``net``'s forward compiled and already run once in training and in evaluation mode
    on ``example`` (a batch on the network's device); or ``(None, reason)`` when compiling fails here."""
    state, was_training = copy.deepcopy(net.state_dict()), net.training
    rng_devices = [example.device] if example.device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=rng_devices):  # the trial's dropout draws leave the run's stream as it was
            forward = torch.compile(net.forward)
            net.train()
            forward(example).float().sum().backward()  # compiles the backward graph too
            net.eval()
            with torch.no_grad():
                forward(example)
    except Exception as err:  # noqa: BLE001 - whatever the compiler raises, the run goes on eagerly
        forward = None
        reason = f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"[:300]
    else:
        reason = None
    finally:
        net.zero_grad(set_to_none=True)
        net.load_state_dict(state)  # BatchNorm statistics the trial's forward pass moved
        net.train(was_training)
    return forward, reason
