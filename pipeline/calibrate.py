"""``bmi calibrate``: from a calibration session to a deployable decoder, in one command.

1. runs the cue paradigm (:mod:`pipeline.paradigm`) on the console's cue page or in the terminal, each onset an
   LSL marker;
2. records the amplifier's LSL stream and those markers into one FIF file per run (:mod:`datasets.recorder`:
   rewritten atomically every few seconds, so a crash or Ctrl-C leaves readable files with the trials so far);
3. trains the default recipe on them (the last run tests; Euclidean alignment on, so the next session can
   re-align with ``bmi serve --align-seconds``), beside the classical references every run reports;
4. exports the decoder to ONNX (parity-checked) and prints the test accuracy and the ``bmi serve`` commands,
   with a rest class one under a rest gate chosen on the test run (:func:`pipeline.rehearse.choose_rest_gate`).

One of the modules that orchestrate every layer (with ``pipeline.cli`` and ``pipeline.demo``): it records
(datasets), trains (pipeline) and exports (exports).
"""

from __future__ import annotations

import argparse
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .paradigm import rest_after

STALL_SECONDS = 5.0  # no samples for this long: the amplifier is gone, calibration stops
MARKER_WAIT = 2.0  # the first cue's marker must be recorded within this long, or the cue stream is wrong


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate", help="run a cued calibration session, record it, train, export: the decoder for the session",
        description="Run the cue paradigm (console cue page or terminal; each onset an LSL marker), record the "
                    "amplifier's LSL stream and the cues to FIF files (one per run, rewritten atomically every few "
                    "seconds: a crash keeps the trials so far), train the default recipe (the last run tests), "
                    "compare with the classical references, export to ONNX and print the bmi serve command.")
    p.add_argument("--stream", required=True, metavar="lsl:NAME", help="the amplifier's LSL stream, e.g. lsl:SimAmp")
    p.add_argument("--out", required=True, type=Path, help="session folder (new or empty), e.g. sessions/day1/")
    p.add_argument("--config", type=Path, help="calibration YAML: paradigm: {classes, trials, runs, cue_seconds, "
                   "rest_seconds, jitter_seconds, lead_in_seconds, break_seconds, seed}, training: {tmin, tmax, "
                   "bandpass, euclidean_alignment} (configs/calibration.yaml)")
    p.add_argument("--classes", help="cue classes, comma-separated (default grasp,open,rest)")
    p.add_argument("--action", action="append", metavar="CLASS=ACTION",
                   help="hand action of a class: grasp, open or hold, as bmi serve --action (grasp/close, open and "
                        "rest map by themselves; any other class must be given, before recording; repeatable)")
    p.add_argument("--trials", type=int, help="trials per class over all runs (default 20)")
    p.add_argument("--runs", type=int, help="runs (one file each; the last tests the decoder; default 3)")
    p.add_argument("--seed", type=int, help="seed of the cue order and jitter (default: drawn, and recorded)")
    p.add_argument("--cues", default="lsl:bmi-cues", metavar="lsl:NAME",
                   help="LSL marker stream the cues are published on and recorded from (default lsl:bmi-cues)")
    p.add_argument("--console", metavar="HOST:PORT", help="show the cues on an operator console's cue page started "
                   "here (http://HOST:PORT/cue); default: in the terminal")
    p.add_argument("--console-token-file", type=Path, help="file holding the console's secret (else "
                   "$BMI_CONSOLE_TOKEN, else drawn at random: the cue page's URL then carries it)")
    p.add_argument("--subject", default="01", help="subject label in the file names (sub-LABEL; default 01)")
    p.add_argument("--session", default="01", help="session label in the file names (ses-LABEL; default 01)")
    p.add_argument("--format", choices=("fif", "xdf", "both"), default="fif",
                   help="recording files: FIF (default), XDF (the signal and cue streams as LabRecorder writes them, "
                        "read back through data.xdf) or both (training reads the FIF files)")
    p.add_argument("--flush-seconds", type=float, default=2.0,
                   help="rewrite the recording this often: the most a crash loses (default 2)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="training override, e.g. trainer.max_epochs=100 (repeatable)")
    p.add_argument("--no-train", action="store_true", help="record only (train later: bmi train OUT/train.yaml)")
    p.add_argument("--resolve-timeout", type=float, default=10.0, help="seconds to wait for the LSL streams")
    p.add_argument("--verbose", action="store_true", help="also show liblsl's own log lines")
    p.set_defaults(func=_main)


def lsl_name(spec: str, flag: str) -> str:
    if not spec.startswith("lsl:") or len(spec) < 5:
        raise ValueError(f"'{flag}' ({spec!r}) must be lsl:NAME, e.g. lsl:SimAmp.")
    return spec[4:]


def check_out_dir(out: Path) -> None:
    """A session folder is never overwritten: yesterday's recordings are today's reference."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"'--out' ({out}) already holds files; a calibration writes a new (or empty) session "
                              "folder so no recording is ever overwritten.")


def _label(value: str, flag: str) -> str:
    if not value.isalnum():
        raise ValueError(f"'{flag}' ({value!r}) must be letters and digits only (it goes into BIDS-like file names).")
    return value


# -- recording ------------------------------------------------------------------------------------------------


@dataclass
class Session:
    """What the calibration has done so far (also after an interruption)."""

    out: Path
    files: list[Any] = field(default_factory=list)  # RecordingFile per run, finished or not
    shown: list[dict[str, int]] = field(default_factory=list)  # cues shown per run, by label
    started: float = field(default_factory=time.monotonic)
    fmt: str = "fif"  # --format: fif, xdf or both
    stream: str = ""  # the signal and cue streams' names, for the XDF files' training config
    cues: str = ""


class Progress:
    """The paradigm's progress: a live panel on a terminal, one line per cue otherwise (logs, tests)."""

    def __init__(self, where: str):
        from rich.console import Console

        self.console = Console(stderr=True)
        self.where = where
        self.live = None
        self.state: dict[str, Any] = {}
        if self.console.is_terminal:
            from rich.live import Live

            self.live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
            self.live.start()

    def _render(self):
        from rich.panel import Panel
        from rich.table import Table

        s = self.state
        cue = s.get("cue")
        big = f"[bold reverse] {cue.upper()} [/]" if cue else "[dim]+[/dim]"
        table = Table.grid(padding=(0, 2))
        table.add_row("run", f"{s.get('run', '-')}", "trial", f"{s.get('trial', '-')}")
        table.add_row("cue", big, "left", f"{s.get('left', 0):4.1f} s")
        table.add_row("recorded", f"{s.get('seconds', 0):6.1f} s", "cue markers", f"{s.get('markers', 0)}")
        table.add_row("file", f"{s.get('file', '-')}", "last write", s.get("flush", "-"))
        return Panel(table, title=f"calibration - cues on {self.where}", border_style="cyan")

    def update(self, **state: Any) -> None:
        self.state.update(state)
        if self.live is not None:
            self.live.update(self._render())

    def line(self, text: str) -> None:
        self.console.print(text, soft_wrap=True, highlight=False)  # one line per event, however narrow the log

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _wait(until: float, recorder, progress: Progress, rec) -> None:
    """Sleep until ``until`` (monotonic), keeping the panel current and the stream watched."""
    while True:
        now = time.monotonic()
        if recorder.error is not None:
            raise RuntimeError(f"Recording failed: {type(recorder.error).__name__}: {recorder.error}")
        if recorder.seconds_since_data > STALL_SECONDS:
            raise RuntimeError(f"The stream lsl:{recorder.stream} sent nothing for {STALL_SECONDS:g} s: calibration "
                               f"stopped (the recording so far is in {rec.path}).")
        stats = rec.stats
        progress.update(left=max(0.0, until - now), seconds=rec.seconds, markers=len(rec.annotations),
                        flush=f"{stats.seconds_max * 1000:.0f} ms max, {stats.count} writes" if stats.count else "-")
        if now >= until:
            return
        time.sleep(min(0.1, until - now))


def record(cfg, plan: list[list[str]], seed: int, recorder, display, session: Session, subject: str, ses: str,
           progress: Progress) -> None:
    """Run the paradigm, one recording file per run."""
    p = cfg.paradigm
    rng = np.random.default_rng([seed, 1])  # the jitter: reproducible from the seed like the order
    total = sum(len(run) for run in plan)
    done = 0
    for r, order in enumerate(plan, start=1):
        stem = f"sub-{subject}_ses-{ses}_run-{r:02d}"
        path = session.out / (f"{stem}.xdf" if session.fmt == "xdf" else f"{stem}_raw.fif")
        rec = recorder.start_file(path, description=f"bmi calibrate: run {r} of {len(plan)}, cues {', '.join(p.classes)}",
                                  also_xdf=session.out / f"{stem}.xdf" if session.fmt == "both" else None)
        session.files.append(rec)
        session.shown.append({})
        progress.update(run=f"{r} / {len(plan)}", file=path.name, cue=None)
        display.show(None, p.lead_in_seconds)
        t = time.monotonic() + p.lead_in_seconds
        _wait(t, recorder, progress, rec)
        for i, label in enumerate(order, start=1):
            display.show(label, p.cue_seconds)
            session.shown[-1][label] = session.shown[-1].get(label, 0) + 1
            done += 1
            progress.update(trial=f"{i} / {len(order)} ({done} / {total})", cue=label)
            if progress.live is None:
                progress.line(f"run {r}/{len(plan)} trial {i}/{len(order)}: {label}")
            t += p.cue_seconds
            if done == 1:
                _wait(time.monotonic() + MARKER_WAIT, recorder, progress, rec)
                if not rec.markers_received:
                    raise RuntimeError(f"The first cue's marker was not recorded within {MARKER_WAIT:g} s: nothing "
                                       f"arrives on lsl:{recorder.markers.name if recorder.markers else '?'} (is the "
                                       "cue display publishing on another stream? see --cues).")
            _wait(t, recorder, progress, rec)
            pause = rest_after(p, rng)
            display.show(None, pause)
            progress.update(cue=None)
            t += pause
            _wait(t, recorder, progress, rec)
        recorder.stop_file()
        got, shown = rec.counts(), session.shown[-1]
        progress.line(f"run {r}: {rec.seconds:.1f} s, cues " + ", ".join(f"{k} {got.get(k, 0)}/{v}" for k, v in sorted(shown.items()))
                      + f" -> {path.name}")
        if any(got.get(k, 0) != v for k, v in shown.items()):
            raise RuntimeError(f"Run {r}: {shown} cues shown but {got} recorded; the recording is in {path}.")
        if r < len(plan):
            display.show(None, p.break_seconds)
            progress.update(cue=None, trial="break")
            _wait(time.monotonic() + p.break_seconds, recorder, progress, rec)


# -- training and export --------------------------------------------------------------------------------------


def training_config(files: list[Path], out: Path, info, cfg, classes: list[str], n_runs: int,
                    xdf: dict[str, Any] | None = None) -> dict[str, Any]:
    """The experiment config for the recorded runs: the default recipe, the last run tests (``xdf``: the
    ``data.xdf`` section for XDF recordings)."""
    types = set(info.get_channel_types(picks="data"))
    picks = ["meg"] if types & {"mag", "grad"} else sorted(types)
    sfreq = float(info["sfreq"])
    w = cfg.training
    low_enough = 4 * w.bandpass[1]  # four samples per period of the band's top frequency
    decim = max(d for d in range(1, int(sfreq) + 1) if sfreq % d == 0 and sfreq / d >= low_enough)
    return {
        "data": {
            "files": [f.name for f in files],
            **({"xdf": xdf} if xdf else {}),
            "events": {c: c for c in classes},
            "tmin": w.tmin, "tmax": w.tmax,
            "picks": {"types": picks},
            "bandpass": list(w.bandpass),
            "resample": sfreq / decim,
            "split": {"method": "holdout", "by": "run", "test": [f"{n_runs:02d}"]},
            "euclidean_alignment": w.euclidean_alignment,
            "cache_dir": ".bmi_cache",
        },
        "tracking": {"mode": "auto", "project": "bmi-calibration", "group": out.name, "tags": ["calibration"]},
        "runs_dir": str((out / "runs").resolve()),
    }


def write_training_config(session: Session, info, cfg, classes: list[str]) -> Path:
    import yaml

    from datasets.atomic import write_text

    files = [f.path for f in session.files if f.path.is_file()]
    xdf = None
    if any(f.suffix == ".xdf" for f in files):  # the streams by name; LSL markers carry no duration: the cue's
        xdf = {"stream": session.stream, "markers": session.cues,
               "durations": {c: cfg.paradigm.cue_seconds for c in classes}}
    raw = training_config(files, session.out, info, cfg, classes, len(files), xdf)
    header = "# Written by bmi calibrate: the calibration's recordings, the default recipe; the last run tests.\n"
    return write_text(session.out / "train.yaml", header + yaml.safe_dump(raw, sort_keys=False))


def train_and_export(config_path: Path, overrides: list[str], out: Path) -> tuple[dict[str, Any], Path]:
    from exports.onnx import export_run

    from .record.config import load_config
    from .train import run_training

    cfg, config_dir = load_config(config_path, overrides)
    summary = run_training(cfg, config_dir, progress=True)
    result = export_run(summary["run_dir"], out=out / "decoder.onnx")
    return summary, result.path


def serve_commands(model: Path, stream: str, cues: str, out: Path, gate_options: list[str] | None = None,
                   actions: dict[str, str] | None = None) -> dict[str, str]:
    """Today's and the next day's ``bmi serve`` commands (with the ``actions`` of classes that need one); with
    ``gate_options``, today's under that rest gate too."""
    from exports.runtime.actions import action_options

    q = shlex.quote
    base = f"bmi serve {q(str(model))} --input lsl:{q(stream)} --output udp://127.0.0.1:9000"
    if actions:
        base += f" {shlex.join(action_options(actions))}"
    commands = {"today": f"{base} --cues lsl:{q(cues)} --log {q(str(out / 'session.csv'))}",
                "next_day": f"{base} --align-seconds 60 --cues lsl:{q(cues)} --log {q(str(out / 'session-next.csv'))}"}
    if gate_options:
        commands["rest_gate"] = f"{base} {shlex.join(gate_options)} --cues lsl:{q(cues)} --log {q(str(out / 'session.csv'))}"
    return commands


def gate_on_test_run(model: Path, config_path: Path, rest_class: str = "rest",
                     actions: dict[str, str] | None = None) -> dict[str, Any] | None:
    """A rest gate for the decoder, chosen as ``bmi rehearse --min-hits`` chooses, on the calibration's test run
    (the last one: never trained on); None for a decoder with its own gate."""
    from datasets.config import DataConfig
    from datasets.reading import list_recordings
    from datasets.typed import from_mapping, load_yaml
    from exports.onnx import read_model_metadata

    from .rehearse import choose_rest_gate, read_cued

    meta = read_model_metadata(model)
    if meta.get("gate") is not None:
        return None
    data_cfg = from_mapping(DataConfig, load_yaml(config_path)["data"], "data")
    test_run = [r.path for r in list_recordings(data_cfg, config_path.parent)][-1]
    choice = choose_rest_gate(model, read_cued([test_run], data_cfg, meta["preprocessing"]["ch_names"]), rest_class,
                              actions=actions)
    return dict(choice, recording=test_run.name)


# -- the command ---------------------------------------------------------------------------------------------


def _console_cues(listen: str, cue_outlet: str, token_file: Path | None):
    """The console's cue page, started here with the console's secret (from the file, the environment, or drawn:
    then the address shown carries it)."""
    from exports.runtime.console.bridge import parse_listen
    from exports.runtime.console.secret import child_environment, console_secret, console_url

    from .paradigm import ConsoleCues

    host, port = parse_listen(listen)
    secret, drawn = console_secret(token_file)
    return ConsoleCues(listen, cue_outlet, secret, console_url(host, port, secret, drawn, "/cue"),
                       child_environment(secret))


def _interrupt(*_: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM ends a calibration like Ctrl-C: the files are finished first


def _main(args: argparse.Namespace) -> int:
    from datasets.atomic import write_json
    from datasets.lsl_quiet import quiet_liblsl
    from exports.runtime.actions import parse_action_args, plan_actions

    from .paradigm import TerminalCues, load_calibration, plan_runs

    stream, cues = lsl_name(args.stream, "--stream"), lsl_name(args.cues, "--cues")
    subject, ses = _label(args.subject, "--subject"), _label(args.session, "--session")
    classes = [c.strip() for c in args.classes.split(",")] if args.classes else None
    cfg = load_calibration(args.config, classes=classes, trials=args.trials, runs=args.runs, seed=args.seed)
    actions = parse_action_args(args.action)
    plan_actions(cfg.paradigm.classes, actions)  # every class a hand action, as bmi serve will ask: refused before recording
    if args.flush_seconds <= 0:
        raise ValueError(f"'--flush-seconds' ({args.flush_seconds}) must be positive.")
    out = args.out
    check_out_dir(out)
    quiet_liblsl(args.verbose)
    seed = cfg.paradigm.seed if cfg.paradigm.seed is not None else int(np.random.SeedSequence().entropy % 2**31)
    plan = plan_runs(cfg.paradigm, seed)
    out.mkdir(parents=True, exist_ok=True)
    session = Session(out, fmt=args.format, stream=stream, cues=cues)
    signal.signal(signal.SIGTERM, _interrupt)

    from datasets.recorder import Recorder

    display = _console_cues(args.console, cues, args.console_token_file) if args.console else TerminalCues(cues)
    recorder = progress = None
    try:
        recorder = Recorder(stream, cues, durations={c: cfg.paradigm.cue_seconds for c in cfg.paradigm.classes},
                            flush_seconds=args.flush_seconds, resolve_timeout=args.resolve_timeout)
        if not recorder.markers.wait_for_stream(args.resolve_timeout):
            raise RuntimeError(f"The cue marker stream lsl:{cues} did not appear within {args.resolve_timeout:g} s.")
        info = recorder.info
        print(f"bmi calibrate: recording lsl:{stream} ({len(info['ch_names'])} channels at {info['sfreq']:g} Hz) and "
              f"cues lsl:{cues} into {out}; {sum(map(len, plan))} trials in {len(plan)} runs, about "
              f"{cfg.paradigm.seconds() / 60:.1f} min; cues on {display.where}", file=sys.stderr, flush=True)
        progress = Progress(display.where)
        record(cfg, plan, seed, recorder, display, session, subject, ses, progress)
    except BaseException as err:
        if recorder is not None and recorder.current is not None:
            recorder.stop_file()  # the last write: everything up to now
        kept = [f for f in session.files if f.path.is_file()]
        if kept:
            path = write_training_config(session, recorder.info, cfg, cfg.paradigm.classes)
            sys.stderr.write(f"\nbmi calibrate: stopped ({type(err).__name__}); kept {len(kept)} recording(s) with "
                             f"{sum(len(f.annotations) for f in kept)} cues in {out}; train on them later with "
                             f"bmi train {path}\n")
        raise
    finally:
        if progress is not None:
            progress.stop()
        if recorder is not None:
            recorder.close()
        display.close()

    config_path = write_training_config(session, info, cfg, cfg.paradigm.classes)
    report: dict[str, Any] = {
        "stream": stream, "cues": cues, "paradigm": vars(cfg.paradigm) | {"seed": seed, "order": plan},
        "files": [{"path": f.path.name, **({"xdf": f.xdf_path.name} if f.xdf_path not in (None, f.path) else {}),
                   "seconds": round(f.seconds, 3), "cues": f.counts(),
                   "writes": f.stats.count, "write_seconds_max": round(f.stats.seconds_max, 4),
                   "write_seconds_total": round(f.stats.seconds_total, 4),
                   "longest_unsaved_seconds": round(f.stats.interval_max, 3)} for f in session.files],
        "train_config": config_path.name,
    }
    write_json(out / "calibration.json", report)
    if args.no_train:
        print(f"bmi calibrate: recorded; train with: bmi train {shlex.quote(str(config_path))}")
        return 0
    print("bmi calibrate: training the default recipe on the calibration ...", file=sys.stderr, flush=True)
    summary, model = train_and_export(config_path, args.set, out)
    gate = gate_on_test_run(model, config_path, actions=actions) if "rest" in cfg.paradigm.classes else None
    commands = serve_commands(model, stream, cues, out, gate and gate["serve_options"], actions)
    report |= {"run_dir": summary["run_dir"], "model": str(model), "test": summary["test"],
               "baselines": {k: v.get("test") for k, v in summary["baselines"].items()},
               "versus_baselines": summary["versus_baselines"], "serve": commands,
               **({"rest_gate": gate} if gate else {})}
    write_json(out / "calibration.json", report)
    _print_result(summary, model, commands, gate)
    return 0


def _print_result(summary: dict[str, Any], model: Path, commands: dict[str, str], gate: dict[str, Any] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    from .rehearse import hits_text, uncued_text

    console = Console()
    table = Table(title="calibration decoder, test run", show_edge=False)
    for col in ("decoder", "balanced accuracy", "accuracy"):
        table.add_column(col)
    test = summary["test"]
    table.add_row(summary.get("model", "decoder"), f"{test['balanced_accuracy']:.3f}", f"{test['accuracy']:.3f}")
    for name, b in summary["baselines"].items():
        t = b.get("test") or {}
        table.add_row(b.get("model", name), f"{t.get('balanced_accuracy', float('nan')):.3f}",
                      f"{t.get('accuracy', float('nan')):.3f}")
    console.print(table)
    console.print(f"decoder: {model}")
    console.print("next, the closed-loop session:")
    print(commands["today"], flush=True)  # plain, so it can be copied as is
    console.print("and the next day (re-aligned on the first minute):")
    print(commands["next_day"], flush=True)
    if gate is None:
        return
    chosen = gate["chosen"]
    if chosen is None:
        console.print(f"no rest gate setting answered {gate['min_hits']:.0%} of the test run's movement cues; "
                      "choose one on more cued data with bmi rehearse")
        return
    console.print(f"or today with a rest gate (the hand holds until 1 - P(rest) is high), chosen on the test run "
                  f"{gate['recording']}: {uncued_text(chosen)}, "
                  f"{chosen['false_movements_per_min']:.1f} false movements per minute at rest, "
                  f"hits {hits_text(chosen)} of {chosen['movement_cues']} movement cues (95% interval):")
    print(commands["rest_gate"], flush=True)
