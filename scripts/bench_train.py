"""Training throughput of `bmi train`'s loop against a plain PyTorch loop, and the peak memory of each.

Both train the same decoder (same architecture, seed, initial weights), on the same normalised synthetic
recordings, with the same batch size, epochs, AdamW + cosine schedule, gradient clipping and a validation
pass after every epoch. The Lightning side is ``pipeline.train.run_training`` itself (its default path:
checkpoints, metrics.csv, per-stage torchmetrics; W&B disabled and no progress bar, as in batch jobs), timed
over ``trainer.fit`` (the summary's ``train_seconds``); the plain side is the hand-written loop below.

A third side, when braindecode is installed (the optional ``bench`` extra): braindecode's EEGNetv4 trained by
the same plain loop (its model with the lightest loop there is, lighter than braindecode's own skorch
``EEGClassifier``), to compare `bmi train`'s EEGNet against braindecode's on the same data and settings.

Two workloads, because Lightning's cost is mostly per epoch (validation loop, checkpoints, metrics) while the
compute grows with the data: ``small`` (16 sensorimotor channels, 1 s windows, ~290 training windows: 5
batches per epoch, the worst case) and ``eeg64`` (all 64 EEG channels, 2 s windows, ~380 training windows).

Measurements, per workload:

* **throughput**: one fresh process runs both sides alternately (a warm-up round first, not counted), so
  both see the same memory layout and machine state; the ratio is the median over rounds of the two runs'
  samples/s ratio. On this shared VM, separate processes running the same loop differed by up to 1.5x, which
  no number of repeats averages out; alternating in one process gave ratios within +-2%.
* **memory and allocator**: each side once more in its own fresh process, for its own peak resident memory,
  kernel time and page faults: `bmi train`, the plain loop with the glibc settings `bmi train` applies
  (``trainer.keep_freed_memory``, pipeline/allocator.py; the throughput rounds apply them to every side,
  braindecode's included), and the plain loop with glibc's defaults (what a hand-written loop gets).

Targets (issue 16): `bmi train` >= 0.95x the plain loop and >= 1.5x braindecode's EEGNet, both workloads.

``--compile`` adds a side to the rounds: `bmi train` with ``trainer.compile: true``. Its warm-up run, the
first in the process, compiles (from torch's on-disk cache when an earlier process compiled the same graphs)
and is reported apart; the counted rounds build a new network each time, as a sweep or a cross-validation does.

    .venv/bin/python scripts/bench_train.py [--quick] [--workloads small,eeg64] [--epochs N] [--repeats R]
                                            [--compile] [--out bench_results/train.json] [--docs-table] [--docs-dir DIR]

Throughput = training samples seen / seconds (training + per-epoch validation, for every side).

``--docs-table`` also writes the docs' results file (scripts/results_file.py) that the run measured, one row per
workload run: ``training_loop`` from a run without ``--compile`` (samples/s, the ratios with each round's, the
extra time per epoch and peak memory; the braindecode columns empty when braindecode is not installed), and
``compile`` from a ``--compile`` run (compiled over eager and over the plain loop, the first compiled run's and an
eager run's seconds). The committed tables are of 30 epochs of EEGNet, batch 64, one thread, so ``--docs-table``
refuses other settings (``--quick`` among them); ``--docs-dir`` writes a trial run's table elsewhere (tests).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import results_file  # noqa: E402  (scripts/, beside this file)

TARGET_RATIO = 0.95
TARGET_BRAINDECODE = 1.5
SENSORIMOTOR = ["FC5", "FC3", "FC1", "FCz", "FC2", "FC4", "C5", "C3", "C1", "Cz", "C2", "C4", "CP3", "CP1", "CP2", "CP4"]
#: name -> (data settings, trials per class in each run (full, quick), what it stands for)
WORKLOADS = {
    "small": ({"tmin": 0.5, "tmax": 1.5, "picks": {"names": SENSORIMOTOR}}, (30, 15),
              "16 sensorimotor EEG channels, 1 s windows at 125 Hz"),
    "eeg64": ({"tmin": 0.5, "tmax": 2.5, "picks": {"types": ["eeg"]}}, (40, 20),
              "64 EEG channels, 2 s windows at 125 Hz"),
}


def _experiment(data_dir: Path, runs_dir: Path, workload: str, model: str, epochs: int, batch_size: int) -> dict:
    files = sorted(p.name for p in data_dir.glob("*_raw.fif"))
    data = {
        "files": files, "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
        "bandpass": [8.0, 30.0], "resample": 125.0,
        "split": {"method": "holdout", "by": "run", "test": ["03"]}, "batch_size": batch_size,
        "cache_dir": "cache", **WORKLOADS[workload][0],
    }
    return {
        "data": data,
        "model": {"name": model, "params": {}},
        # the loop's own cost against a plain loop: no BatchNorm re-estimation pass (a plain loop has none), one fit
        "trainer": {"max_epochs": epochs, "early_stopping_patience": None, "enable_progress_bar": False,
                    "recalibrate_batchnorm": False, "min_steps": 0, "refit": False},
        "optim": {"lr": 0.001, "scheduler": "cosine"},
        "tracking": {"mode": "disabled"},
        "seed": 0,
        "runs_dir": str(runs_dir),
    }


def train_lightning(config_path: str, compile: bool = False) -> dict:
    """`bmi train`'s own code path (with ``trainer.compile`` when ``compile``)."""
    from dataclasses import replace

    from pipeline.record.config import load_config
    from pipeline.train import run_training

    cfg, config_dir = load_config(config_path)
    cfg = replace(cfg, trainer=replace(cfg.trainer, compile=compile))
    summary = run_training(cfg, config_dir, progress=False)
    if compile and summary["compile"] != "compiled":
        raise RuntimeError(f"trainer.compile ran eager here: {summary['compile']}")
    return {"seconds": summary["train_seconds"], "samples": summary["n_train"] * summary["epochs_trained"],
            "n_train": summary["n_train"], "val_balanced_accuracy": summary["val"]["balanced_accuracy"]}


def train_lightning_compiled(config_path: str) -> dict:
    """`bmi train` with ``trainer.compile: true`` (``--compile``): torch.compile's time is in its seconds."""
    return train_lightning(config_path, compile=True)


def _has_braindecode() -> bool:
    try:
        import braindecode.models  # noqa: F401
    except ImportError:
        return False
    return True


def train_braindecode(config_path: str) -> dict:
    """braindecode's EEGNetv4 (its defaults) trained by the plain loop below."""
    return train_plain(config_path, braindecode=True)


def train_plain(config_path: str, braindecode: bool = False) -> dict:
    """The same training written by hand: index batches, forward, loss, backward, clip, step; validate."""
    import pytorch_lightning as pl
    import torch
    from torch import nn

    import models
    from datasets.datamodule import EpochsDataModule
    from pipeline.record.config import load_config

    cfg, config_dir = load_config(config_path)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    dm = EpochsDataModule(cfg.data, config_dir, seed=cfg.seed)
    dm.prepare_data()
    dm.setup("fit")
    if braindecode:
        from braindecode.models import EEGNetv4

        net = EEGNetv4(n_chans=dm.n_chans, n_outputs=len(dm.classes), n_times=dm.n_times)
    else:
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
    return {"seconds": round(seconds, 3), "samples": len(ytr) * epochs, "n_train": len(ytr),
            "val_accuracy": correct / len(yva), "n_chans": dm.n_chans, "window_s": round(dm.n_times / dm.sfreq, 3)}


TRAIN = {"lightning": train_lightning, "plain": train_plain, "braindecode": train_braindecode,
         "lightning_compiled": train_lightning_compiled}


def _with_rate(result: dict) -> dict:
    return {**result, "samples_per_s": round(result["samples"] / result["seconds"], 1)}


def _alternating(config_path: str, repeats: int, compile: bool, queue) -> None:
    """Child: every side in turn in this one process, a warm-up round first; the order flips every round. The
    compiled side's warm-up run, which pays for compiling, is kept apart (``warm_up``)."""
    from pipeline.allocator import keep_freed_memory

    keep_freed_memory()
    sides = [side for side in TRAIN if (side != "braindecode" or _has_braindecode())
             and (side != "lightning_compiled" or compile)]
    runs: dict[str, list[dict]] = {side: [] for side in sides}
    for round_ in range(repeats + 1):
        order = sides if round_ % 2 else sides[::-1]
        for side in order:
            result = _with_rate(TRAIN[side](config_path))
            if round_:
                runs[side].append(result)
            elif side == "lightning_compiled":
                runs["warm_up_compiled"] = [result]
    queue.put(runs)


def _alone(config_path: str, side: str, tune_allocator: bool, queue) -> None:
    """Child: one run of one side in a fresh process, with its peak memory, kernel time and page faults."""
    if tune_allocator:
        from pipeline.allocator import keep_freed_memory

        keep_freed_memory()  # run_training applies it itself; the plain loop gets it here
    result = _with_rate(TRAIN[side](config_path))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    queue.put({**result, "peak_rss_mb": round(usage.ru_maxrss / 1024, 1), "sys_seconds": round(usage.ru_stime, 2),
               "page_faults": usage.ru_minflt})


def _child(target, *args):
    ctx = mp.get_context("spawn")  # a fresh interpreter: its own ru_maxrss and heap, no shared import state
    queue = ctx.Queue()
    proc = ctx.Process(target=target, args=(*args, queue))
    proc.start()
    result = queue.get(timeout=3600)
    proc.join(timeout=60)
    if proc.exitcode != 0:
        raise RuntimeError(f"benchmark child {target.__name__}{args} exited with {proc.exitcode}")
    return result


def _paired(workload: str, runs: dict, side: tuple, versus: tuple) -> tuple[float, list[float]]:
    """The rounds' samples/s ratios of ``side`` over ``versus`` ((name, label) each) and their median; each
    round is printed when both carry a label."""
    ratios = [a["samples_per_s"] / b["samples_per_s"] for a, b in zip(runs[side[0]], runs[versus[0]])]
    if len(side) > 1 and len(versus) > 1:
        for a, b, r in zip(runs[side[0]], runs[versus[0]], ratios):
            print(f"{workload:>6} round: {side[1]} {a['samples_per_s']:8.1f}, {versus[1]} {b['samples_per_s']:8.1f} "
                  f"samples/s, ratio {r:.3f}", flush=True)
    return statistics.median(ratios), ratios


def run_workload(workload: str, args, epochs: int, repeats: int, tmp: Path) -> dict:
    import yaml

    from datasets.synthetic import write_synthetic

    trials = WORKLOADS[workload][1][1 if args.quick else 0]
    data_dir = tmp / workload
    write_synthetic(data_dir, n_subjects=2, n_runs=3, trials_per_class=trials, seed=0)
    config = str(data_dir / "bench.yaml")
    Path(config).write_text(yaml.safe_dump(_experiment(data_dir, tmp / "runs", workload, args.model, epochs,
                                                       args.batch_size)))
    alone = {  # the first also builds the epochs cache, so no timed run reads recordings
        "plain": _child(_alone, config, "plain", True),
        "lightning": _child(_alone, config, "lightning", False),
        "plain_glibc_default": _child(_alone, config, "plain", False),
    }
    for side, r in alone.items():
        print(f"{workload:>6} alone {side:>19}: {r['samples_per_s']:8.1f} samples/s, peak RSS {r['peak_rss_mb']:.0f} MB, "
              f"kernel {r['sys_seconds']:.2f} s, {r['page_faults']} page faults", flush=True)
    runs = _child(_alternating, config, repeats, args.compile)
    warm_up = runs.pop("warm_up_compiled", None)
    ratio, paired = _paired(workload, runs, ("lightning", "bmi train"), ("plain", "plain"))
    versus_bd = None
    if "braindecode" in runs:
        ratio_bd, paired_bd = _paired(workload, runs, ("lightning", "bmi train"), ("braindecode", "braindecode EEGNetv4"))
        versus_bd = {"ratio_lightning_over_braindecode": round(ratio_bd, 3),
                     "paired_ratios": [round(r, 3) for r in paired_bd],
                     "ratio_plain_over_braindecode": round(_paired(workload, runs, ("plain",), ("braindecode",))[0], 3),
                     "meets_target": ratio_bd >= TARGET_BRAINDECODE}
    compiled = None
    if "lightning_compiled" in runs:
        ratio_c, paired_c = _paired(workload, runs, ("lightning_compiled", "bmi train compiled"), ("lightning", "eager"))
        compiled = {"ratio_compiled_over_eager": round(ratio_c, 3), "paired_ratios": [round(r, 3) for r in paired_c],
                    "ratio_compiled_over_plain": round(_paired(workload, runs, ("lightning_compiled",), ("plain",))[0], 3),
                    "first_run": warm_up[0] if warm_up else None}
    return {
        "description": WORKLOADS[workload][2],
        "compiled": compiled,
        "n_chans": runs["plain"][0]["n_chans"], "window_s": runs["plain"][0]["window_s"],
        "n_train": runs["plain"][0]["n_train"], "batches_per_epoch": -(-runs["plain"][0]["n_train"] // args.batch_size),
        "samples_per_s": {side: statistics.median(r["samples_per_s"] for r in rs) for side, rs in runs.items()},
        "ratio_lightning_over_plain": round(ratio, 3),
        "paired_ratios": [round(r, 3) for r in paired],
        "meets_target": ratio >= TARGET_RATIO,
        "versus_braindecode": versus_bd,
        "per_epoch_overhead_ms": round(1000 * statistics.median(
            (a["seconds"] - b["seconds"]) / epochs for a, b in zip(runs["lightning"], runs["plain"])), 1),
        "alone": alone,
        "allocator_speedup_plain": round(alone["plain"]["samples_per_s"] / alone["plain_glibc_default"]["samples_per_s"], 2),
        "rounds": runs,
    }


#: the settings the docs' tables (and their notes) are of: what ``--docs-table`` writes into the docs
DOCS_SETTINGS = {"model": "eegnet", "batch_size": 64, "epochs": 30, "threads": 1}


def _workload_label(r: dict) -> tuple[str, str]:
    """What a workload is, as the tables say it: its channels and window length, from the run itself."""
    return f"{r['n_chans']} channels", f"{round(r['window_s'], 1):g} s"


def _ratio_cell(ratio: float, rounds: list[float], bold: bool = True) -> str:
    """``**0.92** (0.92, 0.93, 0.94)``: the median ratio and each round's."""
    median = f"**{ratio:.2f}**" if bold else f"{ratio:.2f}"
    return f"{median} ({', '.join(f'{r:.2f}' for r in rounds)})"


def training_loop_rows(result: dict) -> list[list[str | None]]:
    """The docs' ``training_loop`` table of a run: one row per workload (None where braindecode did not run)."""
    rows = []
    for r in result["workloads"].values():
        channels, window = _workload_label(r)
        rate, alone, bd = r["samples_per_s"], r["alone"], r["versus_braindecode"]
        rows.append([
            f"{channels}, {window} windows, {r['n_train']} windows ({r['batches_per_epoch']} batches/epoch)",
            f"{rate['lightning']:.0f}", f"{rate['plain']:.0f}",
            _ratio_cell(r["ratio_lightning_over_plain"], r["paired_ratios"]),
            f"{rate['braindecode']:.0f}" if bd else None,
            _ratio_cell(bd["ratio_lightning_over_braindecode"], bd["paired_ratios"]) if bd else None,
            f"{bd['ratio_plain_over_braindecode']:.2f}" if bd else None,
            f"{r['per_epoch_overhead_ms']:.1f} ms",
            f"{alone['lightning']['peak_rss_mb']:.0f} / {alone['plain']['peak_rss_mb']:.0f} MB",
        ])
    return rows


def compile_rows(result: dict) -> list[list[str]]:
    """The docs' ``compile`` table of a ``--compile`` run: one row per workload; the ratio to eager is bold where
    compiling made training slower. The eager run: the median of the rounds' `bmi train` runs."""
    rows = []
    for r in result["workloads"].values():
        channels, window = _workload_label(r)
        c = r["compiled"]
        eager_s = statistics.median(run["seconds"] for run in r["rounds"]["lightning"])
        rows.append([
            f"{channels}, {window}, {r['n_train']} windows",
            _ratio_cell(c["ratio_compiled_over_eager"], c["paired_ratios"], bold=c["ratio_compiled_over_eager"] < 1),
            f"{c['ratio_compiled_over_plain']:.2f}",
            f"{c['first_run']['seconds']:.1f} s",
            f"{eager_s:.1f} s",
        ])
    return rows


def docs_tables(result: dict) -> list[dict]:
    """The docs' results tables this run measured: ``compile`` from a ``--compile`` run (every workload with its
    compiled side and first run), else ``training_loop``."""
    workloads = result["workloads"].values()
    if not result["compile"]:
        return [{"name": "training_loop",
                 "title": "Training loop: bmi train against a plain PyTorch loop and braindecode",
                 "columns": ["workload", "`bmi train` samples/s", "plain loop", "`bmi train` / plain (target 0.95)",
                             "braindecode EEGNetv4", "`bmi train` / braindecode (target 1.5)", "plain / braindecode",
                             "extra per epoch", "peak memory bmi train / plain"],
                 "rows": training_loop_rows(result)}]
    if all(r["compiled"] and r["compiled"]["first_run"] for r in workloads):
        return [{"name": "compile", "title": "torch.compile against eager training",
                 "columns": ["workload", "compiled / eager `bmi train` (rounds)", "compiled / plain loop",
                             "first compiled run (compiling included)", "eager run"],
                 "rows": compile_rows(result)}]
    return []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer trials, epochs and rounds")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=f"comma-separated, of {', '.join(WORKLOADS)}")
    parser.add_argument("--epochs", type=int, help="training epochs (default 30, quick 10)")
    parser.add_argument("--repeats", type=int, help="alternating rounds (default 5, quick 2)")
    parser.add_argument("--model", default="eegnet")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--compile", action="store_true",
                        help="add a side: bmi train with trainer.compile (its first run, which compiles, reported apart)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads in each child (default 1: stable figures on a shared machine)")
    parser.add_argument("--out", default="bench_results/train.json", help="JSON file (or a folder for train.json)")
    results_file.add_arguments(parser)
    args = parser.parse_args(argv)
    workloads = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = [w for w in workloads if w not in WORKLOADS]
    if unknown or not workloads:
        parser.error(f"--workloads {args.workloads!r}: unknown {unknown}; choose from {', '.join(WORKLOADS)}")
    epochs = args.epochs or (10 if args.quick else 30)
    repeats = args.repeats or (2 if args.quick else 5)
    if args.docs_table and args.docs_dir is None:
        ran = {"model": args.model, "batch_size": args.batch_size, "epochs": epochs, "threads": args.threads}
        differ = {k: v for k, v in ran.items() if v != DOCS_SETTINGS[k]}
        if differ or args.quick:
            parser.error(f"--docs-table: the docs' tables are of {DOCS_SETTINGS} without --quick, this run "
                         f"{'--quick' if args.quick else differ}; use --docs-dir for a trial run")
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # inherited by the spawned children before torch loads

    out = Path(args.out)
    out = out / "train.json" if out.suffix != ".json" else out
    result = {
        "benchmark": "train_throughput", "model": args.model, "batch_size": args.batch_size, "epochs": epochs,
        "rounds": repeats, "compile": args.compile, "torch_threads": args.threads, "cpu_count": os.cpu_count(),
        "target_ratio": TARGET_RATIO, "target_versus_braindecode": TARGET_BRAINDECODE,
        "workloads": {}, "when": time.strftime("%Y-%m-%dT%H:%M:%S"),
    }
    with tempfile.TemporaryDirectory(prefix="bench_train_") as tmp:
        for workload in workloads:
            result["workloads"][workload] = run_workload(workload, args, epochs, repeats, Path(tmp))
    from datasets.atomic import write_text

    write_text(out, json.dumps(result, indent=2))
    for workload, r in result["workloads"].items():
        rate, alone = r["samples_per_s"], r["alone"]
        print(f"{workload} ({r['description']}, {r['n_train']} training windows, {r['batches_per_epoch']} batches/epoch):")
        print(f"  bmi train {rate['lightning']:.1f} samples/s, plain loop {rate['plain']:.1f}: ratio "
              f"{r['ratio_lightning_over_plain']:.3f} (median of {r['paired_ratios']}; target >= {TARGET_RATIO}); "
              f"{r['per_epoch_overhead_ms']:.1f} ms more per epoch")
        if r["versus_braindecode"]:
            bd = r["versus_braindecode"]
            print(f"  bmi train over braindecode's EEGNetv4 (same plain loop, same allocator settings): "
                  f"{bd['ratio_lightning_over_braindecode']:.3f} (median of {bd['paired_ratios']}; target >= "
                  f"{TARGET_BRAINDECODE}); plain loop over braindecode {bd['ratio_plain_over_braindecode']:.3f}")
        else:
            print("  braindecode not installed (pip install -e .[bench]): no comparison")
        if r["compiled"]:
            c = r["compiled"]
            first = c["first_run"]
            print(f"  trainer.compile: {c['ratio_compiled_over_eager']:.3f}x bmi train's samples/s (median of "
                  f"{c['paired_ratios']}), {c['ratio_compiled_over_plain']:.3f}x the plain loop; its first run in the "
                  f"process {first['seconds']:.1f} s ({first['samples_per_s']:.1f} samples/s, compiling included)")
        print(f"  peak memory: bmi train {alone['lightning']['peak_rss_mb']:.0f} MB, plain {alone['plain']['peak_rss_mb']:.0f} MB; "
              f"glibc settings alone speed the plain loop x{r['allocator_speedup_plain']:.2f} "
              f"({alone['plain_glibc_default']['page_faults']} -> {alone['plain']['page_faults']} page faults)")
    if (docs := results_file.docs_folder(args)) is not None:
        for table in docs_tables(result):
            path = results_file.write_table(table["name"], title=table["title"], columns=table["columns"],
                                            rows=table["rows"], folder=docs,
                                            source=f"scripts/bench_train.py (raw results: {out})")
            print(f"docs results file: {path}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
