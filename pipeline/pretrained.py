"""Start a training run from a pretrained run's weights (``finetune.run``, set by ``bmi finetune``): the network,
checked against the new data, and how long its classifier trains alone. Used by the training loop; the command
that builds such a run's config is :mod:`pipeline.finetune`."""

from __future__ import annotations

from pathlib import Path


def pretrained_network(cfg_finetune, dm):
    """The pretrained decoder, checked against the patient's data; a new classifier when the classes differ."""
    import torch
    from torch import nn

    from .record.run import load_network

    net, summary, info, _ = load_network(Path(cfg_finetune.run))
    if info["ch_names"] != dm.ch_names:
        missing = [c for c in info["ch_names"] if c not in dm.ch_names]
        raise ValueError(f"The patient's channels differ from the pretrained run's: missing {missing}, extra "
                         f"{[c for c in dm.ch_names if c not in info['ch_names']]} (the network takes the same channels).")
    if int(info["n_times"]) != dm.n_times or abs(float(info["sfreq"]) - dm.sfreq) > 1e-6:
        raise ValueError(f"The patient's windows ({dm.n_times} samples at {dm.sfreq} Hz) differ from the pretrained "
                         f"run's ({info['n_times']} at {info['sfreq']} Hz).")
    note = f"fine-tuning {summary['run_id']} ({summary['model']})"
    pretrained = list(info["classes"])
    if pretrained != dm.classes:
        head = net.classifier
        if sorted(pretrained) == sorted(dm.classes):  # the same classes listed in another order: keep the head
            order = [pretrained.index(c) for c in dm.classes]
            with torch.no_grad():
                head.weight.copy_(head.weight[order])
                head.bias.copy_(head.bias[order])
            note += f"; classifier rows reordered to {dm.classes} (pretrained as {pretrained})"
        else:
            net.classifier = nn.Linear(head.in_features, len(dm.classes))
            note += f"; new classifier for classes {dm.classes} (pretrained on {pretrained})"
    return net.train(), note


def frozen_epochs(cfg) -> int:
    value = cfg.finetune.frozen_epochs
    return max(1, cfg.trainer.max_epochs // 3) if value == "auto" else int(value)
