"""``bmi demo``: the whole system end to end on an embedded default, in a few minutes on a laptop CPU.

One of the two modules (with ``pipeline.cli``) that orchestrate every layer: it trains (pipeline), exports
(exports) and runs the real-time server and the simulated hand (exports.runtime) as child processes.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

DEFAULT_MODELS = "logvar,eegnet,gru"
STEPS = ("recordings", "training", "comparison", "export to ONNX", "live decoding", "summary")
DESCRIPTION = """\
Run the main job end to end, in a few minutes on a laptop CPU, under one output folder:

  1. write synthetic multi-subject hand-movement recordings as real FIF files (or use --data);
  2. train the log-variance network (the small-data default), a convolutional and a recurrent decoder, each
     tracked (W&B offline and local run records);
  3. compare them and pick one by validation balanced accuracy (within one standard error of the best, the
     smallest);
  4. export it to ONNX with verified parity;
  5. replay a held-out recording as a live LSL stream into bmi serve, which drives bmi rig (the simulated hand),
     under a rest gate (the hand holds while rest is likely; --no-rest-gate serves the decoder as trained);
  6. print a summary and write report.md with plots.

Child processes are stopped on exit or Ctrl-C; an interrupted demo says which step it stopped in."""


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser(
        "demo", help="run the main job end to end: synthetic data, training, comparison, export, live serving",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="demo_output", metavar="DIR", help="output folder (default: demo_output)")
    p.add_argument("--data", metavar="CONFIG.yaml",
                   help="a config whose data: section names real recordings, used instead of synthetic ones")
    p.add_argument("--models", default=DEFAULT_MODELS, metavar="NAMES", help=f"decoders to train, comma-separated (default {DEFAULT_MODELS})")
    p.add_argument("--epochs", type=int, default=40, metavar="N", help="maximum training epochs per decoder (default 40)")
    p.add_argument("--stream-seconds", type=float, metavar="SECONDS", help="seconds of live streaming (default 20; 8 with --quick)")
    p.add_argument("--subjects", type=int, metavar="N", help="synthetic subjects (default 2; 1 with --quick)")
    p.add_argument("--quick", action="store_true",
                   help="a smoke run of every step: one subject, few trials, one epoch, 8 s of streaming")
    p.add_argument("--seed", type=int, default=0, metavar="N", help="seed of the synthetic recordings and the training runs (default 0)")
    p.add_argument("--action", action="append", metavar="CLASS=ACTION",
                   help="hand action of a class of --data: grasp, open or hold, as bmi serve --action (grasp/close, "
                        "open and rest map by themselves; any other class must be given; repeatable)")
    p.add_argument("--release", type=float, metavar="SECONDS",
                   help="also train on a window of letting go after each movement cue, labelled rest, ending SECONDS "
                        "after the cue ends (data.release; the synthetic cues last 3 s, the gaps after them 1.5-2.5 s)")
    p.add_argument("--rest-gate", action=argparse.BooleanOptionalAction, default=None,
                   help="serve the chosen decoder under a rest gate (bmi serve --gate-rest-class rest; the default when "
                        "the data have a class named rest): the hand holds until 1 - P(rest) is confidently high, with "
                        "the threshold, dwell and EMA weight chosen by bmi rehearse on the part of the held-out recording "
                        "that is not streamed; a gated decoder uses its own gate. --no-rest-gate: as trained")
    add_verbose(p)
    p.set_defaults(func=_main)


@dataclass
class Progress:
    """Which steps finished and what they produced, for the summary (also of an interrupted demo)."""

    out: Path
    started: float = field(default_factory=time.monotonic)
    step: int = 0
    summary: dict[str, Any] = field(default_factory=dict)

    def begin(self, console, n: int) -> None:
        self.step = n
        console.rule(f"[bold]Step {n}/{len(STEPS)}[/bold] {STEPS[n - 1]}  [dim]({time.monotonic() - self.started:.0f} s)[/dim]")


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _write_data(args, out: Path, console) -> tuple[Path, dict[str, Any]]:
    """Synthetic recordings + a data config (the last run of each subject tests), or the user's config."""
    from datasets.typed import load_yaml

    if args.data:
        path = Path(args.data).resolve()
        return path, load_yaml(path)
    from datasets.synthetic import write_example_config, write_synthetic

    n_runs, trials = (3, 5) if args.quick else (3, 12)
    files = write_synthetic(
        out / "data", modality="eeg", n_subjects=args.subjects, n_sessions=1, n_runs=n_runs,
        trials_per_class=trials, fmt="fif", seed=args.seed,
    )
    console.print(f"wrote {len(files)} recordings to {out / 'data'}")
    path = write_example_config(out / "data", files, "eeg", test_runs=[f"{n_runs:02d}"])
    return path, load_yaml(path)


def _training_config(raw: dict[str, Any], data_config_dir: Path, out: Path, args, model: str) -> dict[str, Any]:
    data = dict(raw.get("data", raw))
    # Paths in the data section are relative to the data config's folder; make them absolute here.
    data["files"] = [f if Path(f).is_absolute() else str(data_config_dir / f) for f in data.get("files", [])]
    data["cache_dir"] = str(out / "cache")
    data.setdefault("split", {})
    data.setdefault("batch_size", 16)  # small data: more, smaller steps per epoch
    if args.release is not None:
        data["release"] = {"after_s": args.release}
    return {
        "data": data,
        "model": {"name": model, "params": {}},
        "trainer": {
            "max_epochs": 1 if args.quick else args.epochs,
            "early_stopping_patience": None if args.quick else 15,
            "min_steps": 0 if args.quick else 200,  # a smoke run is short on purpose
            "enable_progress_bar": True,
        },
        "optim": {"lr": 0.01, "scheduler": "cosine"},
        "tracking": {"mode": "auto", "project": "bmi-demo", "group": "demo", "tags": ["demo", model]},
        "seed": args.seed,
        "runs_dir": str(out / "runs"),
    }


def _train(configs: list[dict[str, Any]], out: Path, console) -> list[dict[str, Any]]:
    import yaml

    from datasets.atomic import write_text
    from pipeline.record.config import load_config
    from pipeline.train import run_training

    summaries = []
    for raw in configs:
        path = write_text(out / f"config_{raw['model']['name']}.yaml", yaml.safe_dump(raw, sort_keys=False))
        cfg, config_dir = load_config(path, [])
        console.print(f"training [bold]{raw['model']['name']}[/bold] ...")
        summaries.append(run_training(cfg, config_dir, group="demo", progress=True))
    return summaries


def choose_decoder(summaries: list[dict[str, Any]]) -> tuple[dict[str, Any], str]:
    """The decoder to serve, by the one-standard-error rule: of the runs whose validation balanced accuracy is
    within one standard error of the best (at least one validation window), the one with the fewest parameters.
    With a few dozen validation windows, one window decides between the best and the next; the smaller model is
    the safer bet then. Returns the run's summary and why it was chosen."""
    score = lambda x: x["val"]["balanced_accuracy"]  # noqa: E731
    top = max(summaries, key=score)
    n_val = max(top["n_val"], 1)
    p = score(top)
    margin = max(math.sqrt(p * (1 - p) / n_val), 1 / n_val)
    close = [x for x in summaries if score(x) >= p - margin - 1e-9]
    chosen = min(close, key=lambda x: (x["n_params"], -score(x)))
    why = f"validation balanced accuracy {score(chosen):.3f} over {n_val} windows"
    if len(close) > 1:
        why += (f"; the fewest parameters of those within one standard error ({margin:.3f}) of the best: "
                + ", ".join(f"{x['model']} {score(x):.3f} with {x['n_params']}" for x in close))
    return chosen, why


def _held_out_file(raw_data: dict[str, Any], run_dir: Path) -> Path:
    """A recording from the best run's test split (never seen in training)."""
    info = json.loads((run_dir / "data_info.json").read_text())
    test_files = info.get("split_summary", {}).get("test_files") or []
    if test_files:
        return Path(test_files[0])
    files = info.get("files") or raw_data.get("files")
    return Path(sorted(files)[-1])


class _Children:
    """The demo's child processes (``bmi rig``, ``bmi serve``): their output to ``<name>.log`` in the output
    folder (inherited with ``verbose``), and every one stopped (SIGINT, then kill) on exit, error or Ctrl-C."""

    def __init__(self, out: Path, verbose: bool):
        self.out, self.verbose = out, verbose
        self.procs: dict[str, subprocess.Popen] = {}
        self._logs: dict[str, Any] = {}

    def start(self, name: str, args: list[str]) -> subprocess.Popen:
        self._logs[name] = None if self.verbose else open(self.out / f"{name}.log", "w")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *args], stdout=subprocess.DEVNULL,
                                            stderr=self._logs[name])  # their totals are in their own logs
        return self.procs[name]

    def stop(self, name: str, timeout: float = 5.0) -> int:
        proc = self.procs[name]
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # a clean stop: the server sends its safe message, the hand its plot
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
        return proc.wait()

    def check(self, name: str, rc: int) -> None:
        if rc != 0:
            log = self.out / f"{name}.log"
            tail = "" if self.verbose else "\n" + "\n".join(log.read_text().splitlines()[-15:])
            raise RuntimeError(f"`bmi {name}` exited with code {rc}; its output ({log}):{tail}")

    def __enter__(self) -> "_Children":
        return self

    def __exit__(self, *exc) -> None:
        for name in self.procs:
            self.stop(name)
        for handle in self._logs.values():
            if handle is not None:
                handle.close()


class _Player:
    """``recording`` replayed as a live LSL stream (``mne_lsl.player.PlayerLSL``), liblsl and MNE quiet."""

    def __init__(self, recording: Path, name: str, verbose: bool):
        from datasets.lsl_quiet import quiet_liblsl

        quiet_liblsl(verbose)  # before mne_lsl loads liblsl
        import mne
        from mne_lsl.player import PlayerLSL

        with mne.utils.use_log_level("warning"):
            self.player = PlayerLSL(recording, chunk_size=8, name=name, annotations=False)

    def __enter__(self) -> float:
        from mne_lsl.lsl import local_clock

        self.player.start()
        return local_clock()

    def __exit__(self, *exc) -> None:
        self.player.stop()


def _stream(model_path: Path, recording: Path, out: Path, seconds: float, console, verbose: bool,
            serve_args: list[str] = ()) -> dict[str, Any]:
    """Replay ``recording`` over LSL into ``bmi serve``, which drives ``bmi rig``; returns paths and timing."""
    port = _free_udp_port()
    name = f"bmi-demo-{os.getpid()}"
    session_log, rig_log, rig_plot = out / "session_log.csv", out / "rig_log.csv", out / "rig_aperture.png"
    with _Children(out, verbose) as children:
        children.start("rig", ["rig", "--listen", f"udp://127.0.0.1:{port}", "--log", str(rig_log), "--plot", str(rig_plot),
                               "--duration", str(seconds + 30), "--no-status"])
        time.sleep(1.0)
        with _Player(recording, name, verbose) as t_start:
            serve = children.start("serve", ["serve", str(model_path), "--input", f"lsl:{name}", "--output",
                                              f"udp://127.0.0.1:{port}", "--log", str(session_log), "--duration",
                                              str(seconds), "--no-status", *serve_args,
                                              *(["--verbose"] if verbose else [])])
            with _progress(console, "streaming", seconds) as tick:
                deadline = time.monotonic() + seconds + 30
                while serve.poll() is None and time.monotonic() < deadline:
                    time.sleep(0.25)
                    tick()
            children.check("serve", children.stop("serve"))
        time.sleep(0.3)  # the server's final stop message reaches the hand
        children.check("rig", children.stop("rig", timeout=30))  # the hand stops now, with its log and plot
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


MIN_CHOICE_SECONDS = 30.0  # the least of the held-out recording left after the streamed part to choose a gate on


def hand_actions(classes: list[str], action_args: list[str] | None) -> dict[str, str]:
    """The ``--action`` mapping, checked against the data's classes as ``bmi serve`` will check it (every class a
    hand action): refused before training, naming the classes and the options to add."""
    from exports.runtime.actions import parse_action_args, plan_actions

    actions = parse_action_args(action_args)
    if classes:  # a config without events (BIDS) names its classes only once read: bmi serve checks them then
        plan_actions(classes, actions)
    return actions


def wants_rest_gate(asked: bool | None, classes) -> tuple[bool, str | None]:
    """Whether the demo serves under a rest gate, and why not (None when it does): ``asked`` is ``--rest-gate`` (True),
    ``--no-rest-gate`` (False) or neither (None: a gate whenever the data have a class named rest). Asking for it
    on data without that class is refused before any work."""
    classes = sorted(set(classes))
    if "rest" in classes:
        return asked is not False, "--no-rest-gate" if asked is False else None
    if asked:
        raise ValueError(f"--rest-gate needs a class named 'rest'; the data's classes are {classes}.")
    if asked is False:
        return False, "--no-rest-gate"
    if not classes:  # BIDS events are read with the recordings, after the choice is made
        return False, "the config's data.events names no classes to find a rest class in"
    return False, f"the data have no class named 'rest' to gate on: {classes}"


def _choose_rest_gate(model_path: Path, recording: Path, raw_data: dict[str, Any], streamed_s: float,
                      actions: dict[str, str]) -> dict[str, Any]:
    """The rest gate's threshold and dwell and the smoothing's weight, as a lab chooses them with ``bmi rehearse
    --min-hits``: the least movement where none was cued that still answers 75 % of the movement cues, on the
    held-out recording after the part that is streamed (never the streamed part). Too little left: the gate's
    defaults."""
    from datasets.config import DataConfig
    from datasets.typed import from_mapping
    from exports.onnx import read_model_metadata
    from exports.runtime.smoothing import gate_in_force

    from .rehearse import choose_rest_gate, cued_part, hits_text, read_cued, serve_options, uncued_text

    meta = read_model_metadata(model_path)
    data_cfg = from_mapping(DataConfig, raw_data, "data")
    (cued,) = read_cued([recording], data_cfg, meta["preprocessing"]["ch_names"])
    start_s = streamed_s + 5.0  # the player's start-up and the last streamed cue kept out
    left_s = cued.data.shape[1] / meta["preprocessing"]["sfreq_in"] - start_s
    defaults = {"serve_options": serve_options(gate_in_force(meta, "rest", {}), "rest"), "rehearsed_seconds": 0.0}
    if left_s < MIN_CHOICE_SECONDS:
        return dict(defaults, why=f"the gate's defaults (only {max(left_s, 0):.0f} s of the recording is not streamed)")
    rest_of_it = cued_part(cued, start_s, float("inf"), meta["preprocessing"]["sfreq_in"])
    choice = choose_rest_gate(model_path, [rest_of_it], actions=actions)
    chosen = choice["chosen"]
    rehearsed = {"rehearsed_seconds": round(left_s, 1), "rehearsal": chosen, "rows": choice["rows"]}
    if chosen is None:
        return dict(defaults, **rehearsed, why=f"the gate's defaults (no setting answered {choice['min_hits']:.0%} of "
                                               f"the movement cues in the recording's last {left_s:.0f} s)")
    gate = chosen["gate"]  # a setting of the grid: threshold and dwell both given
    return dict(rehearsed, serve_options=choice["serve_options"],
                why=f"threshold {gate['threshold']:g}, dwell {gate['dwell_s'] * 1000:g} ms, EMA weight "
                    f"{chosen['ema_alpha']:g}, chosen by bmi rehearse on the "
                    f"recording's last {left_s:.0f} s (not streamed): {uncued_text(chosen)}, "
                    f"{chosen['false_movements_per_min']:.1f} false movements per minute at rest, "
                    f"hits {hits_text(chosen)} over {chosen['movement_cues']} movement cues (95% interval)")


def _main(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    if args.release is not None:  # a bad value is refused before anything is written
        from datasets.config import ReleaseConfig

        ReleaseConfig(after_s=args.release)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("MPLBACKEND", "Agg")
    args.subjects = args.subjects if args.subjects is not None else (1 if args.quick else 2)
    args.stream_seconds = args.stream_seconds if args.stream_seconds is not None else (8.0 if args.quick else 20.0)
    progress = Progress(out)
    try:
        _run(args, out, console, progress)
    except KeyboardInterrupt:
        _print_interrupted(console, progress)
        return 130
    _print_summary(console, progress.summary)
    return 0


def _run(args, out: Path, console, progress: Progress) -> None:
    from datasets.atomic import write_text
    from exports.runtime.actions import action_options
    from exports.runtime.rig import plot_aperture
    from pipeline.demo_report import (aperture_with_cues, hand_at_rest, online_results, read_csv, summary_json,
                                      write_report)

    s = progress.summary
    s["output_dir"] = str(out)
    progress.begin(console, 1)
    data_path, raw = _write_data(args, out, console)
    raw_data = raw.get("data", raw)
    classes = list(dict.fromkeys((raw_data.get("events") or {}).values()))
    actions = hand_actions(classes, args.action)  # refused now, not after training
    rest_gate, s["rest_gate_skipped"] = wants_rest_gate(args.rest_gate, classes)
    if args.release is not None and classes and "rest" not in classes:  # refused now, not after training
        raise ValueError(f"--release labels its windows 'rest', a class the data lack: their classes are "
                         f"{sorted(set(classes))}.")

    progress.begin(console, 2)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    summaries = _train([_training_config(raw, data_path.parent, out, args, m) for m in models], out, console)
    s["models"] = {x["model"]: {"run_dir": x["run_dir"], "val": x["val"], "test": x["test"]} for x in summaries}

    progress.begin(console, 3)
    from pipeline.compare import compare_runs

    comparison = compare_runs([Path(x["run_dir"]) for x in summaries], metrics=["val.balanced_accuracy", "test.balanced_accuracy"],
                              out=out / "compare")
    best, s["chosen_by"] = choose_decoder(summaries)
    best_dir = Path(best["run_dir"])
    s.update(best=best["model"], offline_test=best["test"], baseline_test=best.get("baseline", {}).get("test"),
             comparison=str(comparison.get("report", "")))
    console.print(f"decoder: [bold]{best['model']}[/bold] ({best_dir.name}), {s['chosen_by']}")

    progress.begin(console, 4)
    from exports.onnx import export_run

    exported = export_run(best_dir, out=out / "decoder.onnx")
    s.update(onnx=str(exported.path), parity_max_abs_diff=exported.parity["max_abs_diff"])
    console.print(f"exported {exported.path} (max |logit diff| {exported.parity['max_abs_diff']:.2e})")

    progress.begin(console, 5)
    recording = _held_out_file(raw_data, best_dir)
    console.print(f"replaying held-out recording {recording.name} as a live LSL stream for {args.stream_seconds:g} s")
    # the data's own mapping of class to hand action and of channel names, as training had them
    serve_args = action_options(actions) + (["--rename", raw_data["rename"]] if raw_data.get("rename") else [])
    s["rest_gate"] = None  # None: served as trained (or under the decoder's own gate)
    if s["rest_gate_skipped"]:
        console.print(f"serving the decoder as trained, without a rest gate ({s['rest_gate_skipped']})")
    if rest_gate and not exported.metadata.get("gate"):
        s["rest_gate"] = _choose_rest_gate(exported.path, recording, raw_data, args.stream_seconds, actions)
        serve_args += s["rest_gate"]["serve_options"]
        console.print(f"serving under a rest gate: {s['rest_gate']['why']}")
    streamed = _stream(exported.path, recording, out, args.stream_seconds, console, args.verbose, serve_args)

    progress.begin(console, 6)
    s["online"] = online_results(streamed, recording, exported.metadata, raw_data, model_path=exported.path)
    decisions = [r for r in read_csv(streamed["session_log"]) if r["type"] == "decision"]
    s["online"]["commands"] = streamed_commands(decisions, streamed["t_start"], s["online"]["cues"],
                                                s["online"]["duration"], exported.metadata)
    rows, cues = aperture_with_cues(streamed, s["online"])
    s["online"]["hand_at_rest"] = hand_at_rest(rows, cues)
    s["seconds"] = round(time.monotonic() - progress.started, 1)
    s["report"] = str(write_report(out, s, summaries, best_dir))
    plot_aperture(rows, out / "figures" / "aperture_vs_cues.png", cues)
    write_text(out / "summary.json", summary_json(s))


def streamed_commands(decisions: list[dict[str, str]], t_start: float, cues: list[tuple[float, float, str]],
                      duration: float, meta: dict[str, Any]) -> dict[str, Any] | None:
    """The streamed decisions scored as ``bmi rehearse`` scores a recording (``closed_loop.score_commands``): movement
    cues answered by their own command and how soon, false movement onsets per minute of rest cue. Unlike the
    agreement, which counts every decision in the training window (cue + tmin .. cue + tmax), it does not count
    a hand that answers later in the cue as wrong, so a rest gate's rehearsed figures and the stream's compare.
    Only cues the stream saw whole are scored (the player loops the file: each loop's cues count), and the gaps
    before the cues it saw begin."""
    import numpy as np

    from exports.runtime.closed_loop import Decisions, late_seconds, score_commands

    rows = [r for r in decisions if r["t_window_end"]]
    if not rows or not cues:
        return None
    t = np.array([float(r["t_window_end"]) - t_start for r in rows])
    cue_s = float(np.median([end - onset for onset, end, _name in cues]))
    looped = [(onset + k * duration, name) for k in range(int(t[-1] // duration) + 1) for onset, _end, name in cues]
    seen = [c for c in looped if c[0] <= t[-1]]  # the last one may be cut: only the gap before it is scored
    decided = Decisions(t=t, command=[r["command"] for r in rows], action=[r["action"] for r in rows],
                        probabilities=np.empty((len(rows), 0)), gate=np.full(len(rows), np.nan),
                        classes=list(meta["classes"]))
    scores = score_commands(decided, seen, cue_s, from_s=float(t[0]), late_s=late_seconds(meta), until_s=float(t[-1]))
    return {"hits": scores["counts"]["hits"], "false_onsets": scores["counts"]["false_onsets"],
            "gaps_moved_in": scores["counts"]["gaps_moved_in"], "gaps_moved_in_late": scores["counts"]["gaps_moved_in_late"],
            **{k: scores[k] for k in ("movement_hit_rate", "time_to_correct_s", "false_movements_per_min", "late_onsets",
                                      "movement_time_during_rest", "n_movement_cues", "n_rest_cues",
                                      "movement_time_between_cues", "n_gaps")}}


def _print_interrupted(console, progress: Progress) -> None:
    """Say that the demo stopped, where, and what it had finished (written to summary.json too)."""
    from rich.table import Table

    from datasets.atomic import write_json

    s = progress.summary
    s.update(interrupted=f"step {progress.step}/{len(STEPS)} ({STEPS[progress.step - 1] if progress.step else 'start'})",
             seconds=round(time.monotonic() - progress.started, 1))
    table = Table(title="bmi demo: INTERRUPTED", show_header=False)
    table.add_row("stopped during", s["interrupted"])
    served = progress.step >= STEPS.index("live decoding") + 1  # before that it was chosen, not yet served
    for key, label in (("best", "decoder served" if served else "decoder chosen"), ("onnx", "exported model")):
        if s.get(key):
            table.add_row(label, str(s[key]))
    table.add_row("time", f"{s['seconds']:.0f} s")
    write_json(progress.out / "summary.json", {k: v for k, v in s.items() if k != "online"})
    console.print(table)
    console.print(f"partial results are under {s.get('output_dir', progress.out)}")


def _print_summary(console, s: dict[str, Any]) -> None:
    from rich.table import Table

    from pipeline.demo_report import answered_text, between_cues_text, false_moves_text

    table = Table(title="bmi demo: summary", show_header=False)
    test = s["offline_test"]
    online = s["online"]
    table.add_row("decoder served", f"{s['best']} ({s['chosen_by']})")
    table.add_row("offline test balanced accuracy", f"{test['balanced_accuracy']:.3f} (accuracy {test['accuracy']:.3f})")
    if s.get("baseline_test"):
        table.add_row("CSP+LDA reference (test)", f"{s['baseline_test']['balanced_accuracy']:.3f}")
    table.add_row("ONNX parity, max |logit diff|", f"{s['parity_max_abs_diff']:.2e}")
    table.add_row("online decisions", str(online["n_decisions"]) + ("  (under a rest gate)" if s.get("rest_gate") else ""))
    if s.get("rest_gate"):
        table.add_row("rest gate", s["rest_gate"]["why"])
    elif s.get("rest_gate_skipped"):
        table.add_row("rest gate", f"none ({s['rest_gate_skipped']})")
    rest = online.get("hand_at_rest") or {}
    if rest.get("rest_cues"):
        table.add_row("hand moved during rest cues", f"{rest['moved_in']} of {rest['rest_cues']} streamed whole "
                      f"(aperture travel {rest['travel']:.2f})")
    cmd = online.get("commands") or {}
    if cmd.get("n_movement_cues"):
        table.add_row("movement cues answered", answered_text(cmd))
    if cmd.get("n_rest_cues"):
        table.add_row("movement commanded at rest", false_moves_text(cmd))
    if cmd.get("n_gaps"):
        table.add_row("movement commanded between cues", between_cues_text(cmd))
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
