"""On a machine with a CUDA GPU: training runs there with bf16 mixed precision by default (skipped otherwise)."""

import numpy as np
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
    # one epoch learns little on these 30 windows; the score must be the test confusion matrix's (every one of the
    # 15 test windows once, 5 per class), recomputed here: a bf16 metric or a lost batch on the GPU breaks it
    confusion = np.array(summary["test_confusion_matrix"])
    assert confusion.sum(axis=1).tolist() == [5, 5, 5]
    recall = np.diag(confusion) / confusion.sum(axis=1)
    assert summary["test"]["balanced_accuracy"] == pytest.approx(recall.mean(), abs=1e-6)
    assert summary["test"]["accuracy"] == pytest.approx(np.trace(confusion) / 15, abs=1e-6)
