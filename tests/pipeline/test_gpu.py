"""On a machine with a CUDA GPU: training runs there with bf16 mixed precision by default (skipped otherwise)."""

import pytest

from pipeline.record.config import load_config
from pipeline.train import run_training


@pytest.mark.gpu
def test_training_uses_the_gpu_with_bf16(write_config):
    import torch

    cfg, config_dir = load_config(write_config(trainer={"accelerator": "auto", "max_epochs": 1}))
    summary = run_training(cfg, config_dir, progress=False)
    assert summary["accelerator"] == "CUDAAccelerator"
    assert summary["precision"] == ("bf16-mixed" if torch.cuda.is_bf16_supported() else "32-true")
    assert 0.0 <= summary["test"]["balanced_accuracy"] <= 1.0
