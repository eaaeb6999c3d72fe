"""``bmi demo``: the whole system end to end on an embedded default, in a few minutes on a laptop CPU.

1. write synthetic multi-subject hand-movement recordings as real FIF files (or use ``--data``);
2. train one convolutional and one recurrent decoder, each tracked (W&B offline + local run records);
3. compare them and pick the best by validation balanced accuracy;
4. export it to ONNX with verified parity;
5. replay a held-out recording as a live LSL stream into ``bmi serve``, which drives ``bmi rig``;
6. print a summary and write a Markdown report with plots.

Everything goes under one output folder; child processes are stopped on exit or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

DEFAULT_MODELS = "eegnet,gru"


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "demo",
        help="run the main job end to end: synthetic data, training, comparison, export, live serving",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="demo_output", help="output folder (default: demo_output)")
    p.add_argument("--data", help="CONFIG.yaml with a data: section for real recordings instead of synthetic ones")
    p.add_argument("--models", default=DEFAULT_MODELS, help=f"decoders to train, comma-separated (default {DEFAULT_MODELS})")
    p.add_argument("--epochs", type=int, default=40, help="maximum training epochs per decoder (default 40)")
    p.add_argument("--stream-seconds", type=float, default=20.0, help="seconds of live streaming (default 20)")
    p.add_argument("--subjects", type=int, default=2, help="synthetic subjects (default 2)")
    p.add_argument("--quick", action="store_true", help="tiny data and one epoch: a smoke run of every step")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=_main)


# ---------------------------------------------------------------------------------------------------------
# Steps
# ---------------------------------------------------------------------------------------------------------


def _step(console, n: int, text: str) -> None:
    console.rule(f"[bold]Step {n}/6[/bold] {text}")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_data(args, out: Path, console) -> tuple[Path, dict[str, Any]]:
    """Synthetic recordings + a data config, or the user's config; returns (config path, raw config)."""
    from datasets.typed import load_yaml

    if args.data:
        path = Path(args.data).resolve()
        return path, load_yaml(path)
    from datasets.synthetic import write_example_config, write_synthetic

    n_runs, trials = (3, 6) if args.quick else (3, 12)
    files = write_synthetic(
        out / "data", modality="eeg", n_subjects=args.subjects, n_sessions=1, n_runs=n_runs,
        trials_per_class=trials, fmt="fif", seed=args.seed,
    )
    console.print(f"wrote {len(files)} recordings to {out / 'data'}")
    path = write_example_config(out / "data", files, "eeg")
    return path, load_yaml(path)


def _training_config(raw: dict[str, Any], data_config_dir: Path, out: Path, args, model: str) -> dict[str, Any]:
    data = dict(raw.get("data", raw))
    # Paths in the data section are relative to the data config's folder; make them absolute here.
    data["files"] = [f if Path(f).is_absolute() else str(data_config_dir / f) for f in data.get("files", [])]
    data["cache_dir"] = str(out / "cache")
    data.setdefault("split", {})
    data.setdefault("batch_size", 16)  # small data: more, smaller steps per epoch
    return {
        "data": data,
        "model": {"name": model, "params": {}},
        "trainer": {
            "max_epochs": 1 if args.quick else args.epochs,
            "early_stopping_patience": None if args.quick else 15,
            "enable_progress_bar": True,
        },
        "optim": {"lr": 0.01, "scheduler": "cosine"},
        "tracking": {"mode": "auto", "project": "bmi-demo", "group": "demo", "tags": ["demo", model]},
        "seed": args.seed,
        "runs_dir": str(out / "runs"),
    }


def _train(configs: list[dict[str, Any]], out: Path, console) -> list[dict[str, Any]]:
    import yaml

    from pipeline.config import load_config
    from pipeline.train import run_training

    summaries = []
    for raw in configs:
        path = out / f"config_{raw['model']['name']}.yaml"
        path.write_text(yaml.safe_dump(raw, sort_keys=False))
        cfg, config_dir = load_config(path, [])
        console.print(f"training [bold]{raw['model']['name']}[/bold] ...")
        summaries.append(run_training(cfg, config_dir, group="demo", progress=True))
    return summaries


def _held_out_file(raw_data: dict[str, Any], run_dir: Path) -> Path:
    """A recording from the best run's test split (never seen in training)."""
    info = json.loads((run_dir / "data_info.json").read_text())
    test_files = info.get("split_summary", {}).get("test_files") or []
    if test_files:
        return Path(test_files[0])
    files = info.get("files") or raw_data.get("files")
    return Path(sorted(files)[-1])


def _stream(model_path: Path, recording: Path, out: Path, seconds: float, console) -> dict[str, Any]:
    """Replay ``recording`` over LSL into ``bmi serve``, which drives ``bmi rig``; returns paths and timing."""
    from mne_lsl.lsl import local_clock
    from mne_lsl.player import PlayerLSL

    port = _free_udp_port()
    name = f"bmi-demo-{os.getpid()}"
    session_log, rig_log, rig_plot = out / "session_log.csv", out / "rig_log.csv", out / "rig_aperture.png"
    bmi = [sys.executable, "-m", "pipeline.cli"]
    procs: list[subprocess.Popen] = []
    player = PlayerLSL(recording, chunk_size=8, name=name, annotations=False)
    try:
        procs.append(subprocess.Popen(
            bmi + ["rig", "--listen", f"udp://127.0.0.1:{port}", "--log", str(rig_log), "--plot", str(rig_plot),
                   "--duration", str(seconds + 8), "--no-status"], stdout=subprocess.DEVNULL,  # totals: in the logs
        ))
        time.sleep(1.0)
        player.start()
        t_start = local_clock()
        procs.append(subprocess.Popen(
            bmi + ["serve", str(model_path), "--input", f"lsl:{name}", "--output", f"udp://127.0.0.1:{port}",
                   "--log", str(session_log), "--duration", str(seconds), "--no-status"], stdout=subprocess.DEVNULL,
        ))
        with _progress(console, "streaming", seconds) as tick:
            deadline = time.monotonic() + seconds + 30
            while procs[1].poll() is None and time.monotonic() < deadline:
                time.sleep(0.25)
                tick()
        serve_rc = procs[1].wait(timeout=5)
        rig_rc = procs[0].wait(timeout=seconds + 30)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
                try:
                    proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    proc.kill()
        player.stop()
    if serve_rc != 0:
        raise RuntimeError(f"`bmi serve` exited with code {serve_rc}; see its output above.")
    if rig_rc != 0:
        raise RuntimeError(f"`bmi rig` exited with code {rig_rc}; see its output above.")
    return {"session_log": session_log, "rig_log": rig_log, "rig_plot": rig_plot, "t_start": t_start}


class _progress:
    """A rich progress bar over wall time."""

    def __init__(self, console, text: str, seconds: float):
        from rich.progress import BarColumn, Progress, TimeRemainingColumn

        self._bar = Progress("[progress.description]{task.description}", BarColumn(), TimeRemainingColumn(), console=console)
        self._task = self._bar.add_task(text, total=seconds)
        self._t0 = time.monotonic()

    def __enter__(self):
        self._bar.start()
        return lambda: self._bar.update(self._task, completed=time.monotonic() - self._t0)

    def __exit__(self, *exc):
        self._bar.stop()


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console

    from exports.runtime.rig import plot_aperture
    from pipeline.demo_report import aperture_with_cues, online_results, summary_json, write_report

    console = Console()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    t0 = time.monotonic()

    _step(console, 1, "recordings")
    data_path, raw = _write_data(args, out, console)
    raw_data = raw.get("data", raw)

    _step(console, 2, "training")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    configs = [_training_config(raw, data_path.parent, out, args, m) for m in models]
    summaries = _train(configs, out, console)

    _step(console, 3, "comparison")
    from pipeline.compare import compare_runs

    run_dirs = [Path(s["run_dir"]) for s in summaries]
    comparison = compare_runs(run_dirs, metrics=["val.balanced_accuracy", "test.balanced_accuracy"], out=out / "compare")
    best = max(summaries, key=lambda s: s["val"]["balanced_accuracy"])
    best_dir = Path(best["run_dir"])
    console.print(f"best decoder by validation balanced accuracy: [bold]{best['model']}[/bold] ({best_dir.name})")

    _step(console, 4, "export to ONNX")
    from exports.onnx import export_run

    exported = export_run(best_dir, out=out / "decoder.onnx")
    console.print(f"exported {exported.path} (max |logit diff| {exported.parity['max_abs_diff']:.2e})")

    _step(console, 5, "live decoding")
    recording = _held_out_file(raw_data, best_dir)
    console.print(f"replaying held-out recording {recording.name} as a live LSL stream for {args.stream_seconds:g} s")
    streamed = _stream(exported.path, recording, out, args.stream_seconds, console)

    _step(console, 6, "summary")
    online = online_results(streamed, recording, exported.metadata, raw_data, model_path=exported.path)
    summary = {
        "output_dir": str(out),
        "models": {s["model"]: {"run_dir": s["run_dir"], "val": s["val"], "test": s["test"]} for s in summaries},
        "best": best["model"],
        "offline_test": best["test"],
        "baseline_test": best.get("baseline", {}).get("test"),
        "onnx": str(exported.path),
        "parity_max_abs_diff": exported.parity["max_abs_diff"],
        "online": online,
        "comparison": str(comparison.get("report", "")),
        "seconds": round(time.monotonic() - t0, 1),
    }
    report = write_report(out, summary, summaries, best_dir)
    rows, cues = aperture_with_cues(streamed, online)
    plot_aperture(rows, out / "figures" / "aperture_vs_cues.png", cues)
    summary["report"] = str(report)
    (out / "summary.json").write_text(summary_json(summary))
    _print_summary(console, summary)
    return 0


def _print_summary(console, s: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title="bmi demo: summary", show_header=False)
    test = s["offline_test"]
    online = s["online"]
    table.add_row("best decoder", s["best"])
    table.add_row("offline test balanced accuracy", f"{test['balanced_accuracy']:.3f} (accuracy {test['accuracy']:.3f})")
    if s.get("baseline_test"):
        table.add_row("CSP+LDA reference (test)", f"{s['baseline_test']['balanced_accuracy']:.3f}")
    table.add_row("ONNX parity, max |logit diff|", f"{s['parity_max_abs_diff']:.2e}")
    table.add_row("online decisions", str(online["n_decisions"]))
    table.add_row("online agreement with cues", f"{online['cue_agreement']:.3f} over {online['n_cue_decisions']} decisions "
                  f"(chance {online['chance']:.3f})")
    aligned = online.get("aligned") or {}
    if aligned.get("n_trials"):
        extra = (f"; offline same trials {aligned['offline_same_windows']['accuracy']:.3f}, predictions agree "
                 f"{aligned['online_offline_agreement']:.0%}") if "offline_same_windows" in aligned else ""
        table.add_row("online, window aligned to training (cue + tmax)",
                      f"{aligned['online']['accuracy']:.3f} over {aligned['n_trials']} trials{extra}")
    table.add_row("latency p50 / p99", f"{online['latency_p50_ms']:.2f} / {online['latency_p99_ms']:.2f} ms")
    table.add_row("safety events", str(online["safety_events"]))
    table.add_row("rig commands received", str(online["rig_messages"]))
    table.add_row("time", f"{s['seconds']:.0f} s")
    console.print(table)
    console.print(f"report: [bold]{s['report']}[/bold]")
    console.print(f"everything is under {s['output_dir']}")
