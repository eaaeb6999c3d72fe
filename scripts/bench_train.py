"""Training throughput of `bmi train`'s loop against a plain PyTorch loop, and the peak memory of each.

Both train the same decoder (same architecture, seed, initial weights), on the same normalised synthetic
recordings, with the same batch size, epochs, AdamW + cosine schedule, gradient clipping and a validation
pass after every epoch. The Lightning side is ``pipeline.train.run_training`` itself (its default path:
checkpoints, metrics.csv, per-stage torchmetrics; W&B disabled and no progress bar, as in batch jobs), timed
over ``trainer.fit`` (the summary's ``train_seconds``). Each side runs in its own child process so that
``ru_maxrss`` is its own peak resident memory; the sides alternate over the repeats and the best time of each
is kept (the machine is shared).

    .venv/bin/python scripts/bench_train.py [--quick] [--epochs N] [--repeats R] [--out bench_results/train.json]

Throughput = training samples seen / seconds (training + per-epoch validation, for both sides).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# 16 sensorimotor channels, 1 s windows at 125 Hz: a typical small EEG decoder input
CHANNELS = ["FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "CP3", "CP1", "CP2", "CP4"]


def _experiment(data_dir: Path, runs_dir: Path, model: str, epochs: int, batch_size: int) -> dict:
    files = sorted(p.name for p in data_dir.glob("*_raw.fif"))
    return {
        "data": {
            "files": files, "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
            "tmin": 0.5, "tmax": 1.5, "picks": {"names": CHANNELS}, "bandpass": [8.0, 30.0], "resample": 125.0,
            "split": {"method": "holdout", "by": "run", "test": ["03"]}, "batch_size": batch_size,
            "cache_dir": "cache",
        },
        "model": {"name": model, "params": {}},
        "trainer": {"max_epochs": epochs, "early_stopping_patience": None, "enable_progress_bar": False},
        "optim": {"lr": 0.001, "scheduler": "cosine"},
        "tracking": {"mode": "disabled"},
        "seed": 0,
        "runs_dir": str(runs_dir),
    }


def _lightning(config_path: str, queue) -> None:
    from pipeline.config import load_config
    from pipeline.train import run_training

    cfg, config_dir = load_config(config_path)
    summary = run_training(cfg, config_dir, progress=False)
    samples = summary["n_train"] * summary["epochs_trained"]
    queue.put({"seconds": summary["train_seconds"], "samples": samples, "epochs": summary["epochs_trained"],
               "n_train": summary["n_train"], "n_params": summary["n_params"],
               "val_balanced_accuracy": summary["val"]["balanced_accuracy"],
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _plain(config_path: str, queue) -> None:
    """The same training written by hand: index batches, forward, loss, backward, clip, step; validate."""
    import pytorch_lightning as pl
    import torch
    from torch import nn

    import models
    from datasets.datamodule import EpochsDataModule
    from pipeline.config import load_config

    cfg, config_dir = load_config(config_path)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = EpochsDataModule(cfg.data, config_dir, seed=cfg.seed)
    dm.prepare_data()
    dm.setup("fit")
    net = models.build(cfg.model.name, n_chans=dm.n_chans, n_times=dm.n_times, n_outputs=len(dm.classes),
                       sfreq=dm.sfreq, **cfg.model.params)
    Xtr, ytr = (torch.as_tensor(a) for a in dm.arrays("train"))
    Xva, yva = (torch.as_tensor(a) for a in dm.arrays("val"))
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.trainer.max_epochs)
    loss_fn = nn.CrossEntropyLoss()
    gen = torch.Generator().manual_seed(cfg.seed)
    bs, epochs = cfg.data.batch_size, cfg.trainer.max_epochs
    started = time.monotonic()
    for _ in range(epochs):
        net.train()
        for idx in torch.split(torch.randperm(len(ytr), generator=gen), bs):
            loss = loss_fn(net(Xtr[idx]), ytr[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(net.parameters(), cfg.trainer.gradient_clip_val)
            opt.step()
        sched.step()
        net.eval()
        with torch.no_grad():
            correct = sum(int((net(Xva[i:i + bs]).argmax(1) == yva[i:i + bs]).sum()) for i in range(0, len(yva), bs))
    seconds = time.monotonic() - started
    queue.put({"seconds": round(seconds, 3), "samples": len(ytr) * epochs, "epochs": epochs, "n_train": len(ytr),
               "val_accuracy": correct / len(yva),
               "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})


def _child(target, config_path: str) -> dict:
    ctx = mp.get_context("spawn")  # a fresh interpreter: its own ru_maxrss, no shared import state
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(config_path, queue))
    proc.start()
    result = queue.get(timeout=1800)
    proc.join(timeout=60)
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark child {target.__name__} exited with {proc.exitcode}")
    result["samples_per_s"] = round(result["samples"] / result["seconds"], 1)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials and epochs")
    parser.add_argument("--epochs", type=int, help="training epochs (default 30, quick 10)")
    parser.add_argument("--repeats", type=int, help="alternating repeats per side (default 3, quick 2)")
    parser.add_argument("--model", default="eegnet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in each child (default 1: stable figures on a shared machine)")
    parser.add_argument("--out", default="bench_results/train.json", help="JSON file (or a folder for train.json)")
    args = parser.parse_args(argv)
    epochs = args.epochs or (10 if args.quick else 30)
    repeats = args.repeats or (2 if args.quick else 3)
    trials = 15 if args.quick else 30
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the spawned children before torch loads

    import yaml

    from datasets.synthetic import write_synthetic

    out = Path(args.out)
    out = out / "train.json" if out.suffix != ".json" else out
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        tmp = Path(tmp)
        write_synthetic(tmp / "data", n_subjects=2, n_runs=3, trials_per_class=trials, seed=0)
        config = tmp / "data" / "bench.yaml"
        config.write_text(yaml.safe_dump(_experiment(tmp / "data", tmp / "runs", args.model, epochs, args.batch_size)))
        _child(_plain, str(config))  # warm the epochs cache so neither side pays for reading files
        runs: dict[str, list[dict]] = {"lightning": [], "plain": []}
        for _ in range(repeats):
            for name, target in (("lightning", _lightning), ("plain", _plain)):
                runs[name].append(_child(target, str(config)))
                print(f"{name:>9}: {runs[name][-1]['samples_per_s']:8.1f} samples/s, "
                      f"{runs[name][-1]['seconds']:.2f} s, peak RSS {runs[name][-1]['peak_rss_mb']:.0f} MB", flush=True)

    best = {name: max(rs, key=lambda r: r["samples_per_s"]) for name, rs in runs.items()}
    ratio = best["lightning"]["samples_per_s"] / best["plain"]["samples_per_s"]
    result = {
        "benchmark": "train_throughput",
        "model": args.model, "batch_size": args.batch_size, "epochs": epochs,
        "n_train": best["plain"]["n_train"], "n_chans": len(CHANNELS), "torch_threads": args.threads,
        "cpu_count": os.cpu_count(),
        "lightning": best["lightning"], "plain": best["plain"],
        "ratio_lightning_over_plain": round(ratio, 3),
        "target_ratio": 0.9, "meets_target": ratio >= 0.9,
        "all_runs": runs,
        "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out.with_name(f".{out.name}.tmp")
    tmp_out.write_text(json.dumps(result, indent=2))
    os.replace(tmp_out, out)
    print(f"throughput: bmi train {best['lightning']['samples_per_s']:.1f} samples/s, plain PyTorch "
          f"{best['plain']['samples_per_s']:.1f} samples/s, ratio {ratio:.3f} (target >= 0.9)")
    print(f"peak memory: bmi train {best['lightning']['peak_rss_mb']:.0f} MB, plain {best['plain']['peak_rss_mb']:.0f} MB")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
