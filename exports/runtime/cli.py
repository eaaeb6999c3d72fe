"""``bmi serve`` and ``bmi rig`` (light: no torch, Lightning or MNE)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bmi serve``, ``bmi rig`` and ``bmi console`` to the ``bmi`` command's subparsers."""
    p = subparsers.add_parser("serve", help="decode a live stream with an exported model and drive a controller")
    p.add_argument("model", help="ONNX model from bmi export")
    p.add_argument("--input", required=True,
                   help="lsl:NAME[?source_id=ID] | tcp://127.0.0.1:PORT | replay:FILE(.npz/.edf/.bdf)")
    p.add_argument("--output", action="append", required=True, help="udp://HOST:PORT | tcp://HOST:PORT | "
                   "serial:DEVICE?baud=N | lsl:NAME; add ?token=T for a rig that requires one (repeatable)")
    for options in (_decision_options, _safety_options, _decoder_options, _stream_options, _session_options):
        options(p)
    p.set_defaults(func=_serve)
    register_rig(subparsers)
    register_console(subparsers)


def _decision_options(p: argparse.ArgumentParser) -> None:
    """bmi serve's decision rules: hop, smoothing, actions, the gate."""
    g = p.add_argument_group("decisions")
    g.add_argument("--hop-ms", type=float, default=50.0, help="decision interval on the stream's clock (default 50)")
    g.add_argument("--smoothing", choices=["ema", "vote", "none"], default="ema",
                   help="ema: moving average of probabilities; vote: majority of the last K decisions; none")
    g.add_argument("--ema-alpha", type=float, default=0.3, help="weight of the newest window in the ema (default 0.3)")
    g.add_argument("--vote-k", type=int, default=5, help="decisions the vote counts (default 5)")
    g.add_argument("--hysteresis", type=float, default=0.1, help="probability margin a new command needs")
    g.add_argument("--dwell-ms", type=float, default=200.0, help="minimum stream time a command is held")
    g.add_argument("--action", action="append", metavar="CLASS=ACTION",
                   help="hand action of a class: grasp, open or hold (default grasp/close->grasp, open->open, "
                        "rest->hold; other classes must be given; repeatable)")
    g.add_argument("--level-classes", help="A,B: control level = P(A) - P(B) (default: the classes mapped to grasp, open)")
    g.add_argument("--gate-rest-class", metavar="CLASS",
                   help="a model without a gate: gate its commands on 1 - P(CLASS) with the gated decoders' rules "
                        "(rest while below --gate-threshold, default 0.7 with two movement classes, higher with more: "
                        "it opens at twice the no-evidence movement odds; hysteresis 0.1, dwell 200 ms)")
    g.add_argument("--gate-threshold", type=float,
                   help="gated models (or --gate-rest-class): the rest command while the gate's movement probability "
                        "is below this (default: the model's metadata)")
    g.add_argument("--gate-hysteresis", type=float,
                   help="the gate opens only at threshold + this (default: the model's metadata)")
    g.add_argument("--gate-dwell-ms", type=float,
                   help="stream time the gate must stay above its opening level before movement commands "
                        "(default: the model's metadata)")


def _safety_options(p: argparse.ArgumentParser) -> None:
    """bmi serve's checks on the data before any movement command."""
    g = p.add_argument_group("safety")
    g.add_argument("--max-age-ms", type=float, default=150.0,
                   help="a window whose last sample is older than this is never decoded (default 150)")
    g.add_argument("--stale-ms", type=float, default=250.0, help="no samples for this long -> safe state")
    g.add_argument("--flat-threshold", type=float, default=0.0, help="peak-to-peak at or below this is a flat channel")
    g.add_argument("--flat-ms", type=float, default=100.0, help="... over this long (default 100)")
    g.add_argument("--saturation", type=float, help="absolute amplitude counted as saturated (stream units)")
    g.add_argument("--max-amplitude-ratio", type=float, default=100.0,
                   help="refuse channels whose band-passed RMS is more than this many times above or below the "
                        "training data's (default 100)")
    g.add_argument("--check-seconds", type=float, default=2.0, help="settled data per amplitude check (default 2)")
    g.add_argument("--artifact-ratio", type=float, default=50.0,
                   help="withhold windows whose band-passed peak exceeds this many times a channel's training RMS "
                        "(default 50; 0 = off)")
    g.add_argument("--jump-ratio", type=float, default=100.0,
                   help="a raw sample-to-sample step this many times the channel's typical change restarts the "
                        "filters (default 100; 0 = off)")
    g.add_argument("--safe-command", help="class reported in the safe state: a class or 'hold' "
                   "(default: rest when the model has that class, else hold); the hand action is always hold")


def _decoder_options(p: argparse.ArgumentParser) -> None:
    """How bmi serve runs the model."""
    g = p.add_argument_group("decoder")
    g.add_argument("--whole-graph", action="store_true",
                   help="run the model's whole ONNX graph on every window; by default a model that begins with a "
                        "channel mix (EEGNet, EEG-TCNet, the log-variance, GRU/LSTM and gated decoders) has that mix "
                        "applied to the samples as they arrive, checked against the whole graph at start (faster "
                        "decisions; the same commands)")


def _stream_options(p: argparse.ArgumentParser) -> None:
    """bmi serve's input stream: channels, units, alignment, pacing, access."""
    g = p.add_argument_group("stream")
    g.add_argument("--rename", help="rename the stream's channels: eegbci, or a JSON/YAML file {old: new} "
                   "(replay: applies the model's training renaming by default)")
    g.add_argument("--units", help="the stream's unit for every channel (overrides what it declares), e.g. uV")
    g.add_argument("--on-unit-mismatch", choices=["scale", "refuse"], default="scale",
                   help="a stream in other units of the same quantity: convert (default) or refuse")
    g.add_argument("--subject", help="training subject whose Euclidean-alignment matrix to use")
    g.add_argument("--align-seconds", type=float, help="estimate a new subject's alignment from the first N seconds")
    g.add_argument("--alignment", type=Path, help="alignment file saved by an earlier session (--save-alignment)")
    g.add_argument("--save-alignment", type=Path, help="write the estimated alignment here")
    g.add_argument("--poll-ahead-ms", type=float, default=0.5,
                   help="poll the input from this long before the next chunk is due instead of sleeping until "
                        "woken (default 0.5: decisions ~0.3 ms sooner for ~1%% of a core at 10 ms chunks; at most "
                        "twice this per chunk interval, never more than half a core; 0 = always sleep until woken; a replay "
                        "never polls)")
    g.add_argument("--resolve-timeout", type=float, default=10.0, help="seconds to wait for an LSL stream")
    g.add_argument("--hello-timeout", type=float, default=2.0, help="seconds a TCP client has to send its hello")
    g.add_argument("--allow-remote", action="store_true", help="allow non-loopback addresses (needs --token)")
    g.add_argument("--token-file", type=Path, help="file holding the shared token TCP clients must present in their "
                   "hello (or $BMI_TOKEN); not the console's secret")
    g.add_argument("--token", help="the same token on the command line (visible to every user in ps: prefer "
                   "--token-file or $BMI_TOKEN)")


def _session_options(p: argparse.ArgumentParser) -> None:
    """bmi serve's session: console, logs, cues, stats, sham and blinded sessions."""
    g = p.add_argument_group("session")
    g.add_argument("--console", metavar="HOST:PORT", help="serve the operator console (live view, emergency stop, "
                   "cues, runs) here, e.g. 127.0.0.1:8080; beyond loopback it needs --allow-remote. Its secret: "
                   "--console-token-file, else $BMI_CONSOLE_TOKEN, else drawn at random and shown once as the URL")
    g.add_argument("--console-token-file", type=Path, help="file holding the console's secret (never give a secret "
                   "on the command line: every user sees it in ps)")
    g.add_argument("--runs", help="runs folder the console's runs page lists")
    g.add_argument("--cue-outlet", default="bmi-cues", help="LSL marker stream the console's cue onsets go to")
    g.add_argument("--log", type=Path, help="session log (CSV) of every decision and safety event")
    g.add_argument("--cues", metavar="lsl:NAME", help="LSL marker stream of the session's cues: --stats scores the "
                   "decisions against them (every decision in the cue period, and the training window)")
    g.add_argument("--stats", type=Path, help="write final statistics (JSON) here")
    g.add_argument("--duration", type=float, help="stop after this many seconds")
    g.add_argument("--sham", action="store_true", help="sham session: commands independent of the signal")
    g.add_argument("--sham-source", type=Path, help="session log of a real session whose statistics the sham copies")
    g.add_argument("--sham-seed", type=int, help="seed of the sham's random commands (default: random)")
    g.add_argument("--session-plan", type=Path, help="blinded session: the plan from bmi session plan; runs the planned "
                   "condition without showing it (the log records only its code)")
    g.add_argument("--patient", help="the planned session's patient (with --session-plan)")
    g.add_argument("--session", type=int, help="the planned session's number (with --session-plan)")
    g.add_argument("--session-key", type=Path, help="the plan's key file (default: PLAN.key.csv beside the plan)")
    g.add_argument("--no-status", action="store_true", help="no live status line")
    g.add_argument("--verbose", action="store_true", help="also show liblsl's own log lines")


def register_rig(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("rig", help="simulated prosthetic hand that receives the command stream")
    p.add_argument("--listen", required=True, help="udp://127.0.0.1:PORT or tcp://127.0.0.1:PORT")
    p.add_argument("--log", type=Path, help="CSV of every message with its arrival time")
    p.add_argument("--plot", type=Path, help="PNG of aperture against time")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--speed", type=float, default=1.0, help="aperture units per second (default 1)")
    p.add_argument("--proportional", action="store_true", help="scale speed by |level|")
    p.add_argument("--allow-remote", action="store_true", help="listen on a non-loopback address (needs --token)")
    p.add_argument("--token-file", type=Path, help="file holding the shared token every message must carry (or "
                   "$BMI_TOKEN; serve: --output udp://HOST:PORT?token=T)")
    p.add_argument("--token", help="the same token on the command line (visible to every user in ps: prefer "
                   "--token-file or $BMI_TOKEN)")
    p.add_argument("--action", action="append", metavar="CLASS=ACTION",
                   help="hand action of a class, for senders whose messages carry only the class (repeatable)")
    p.add_argument("--timeout-ms", type=float, default=None,
                   help="hold when no message comes for this long, until a message announces the sender's "
                        "timeout (default: bmi serve's default, stale-ms + 2 hops + 100 ms = 450)")
    p.add_argument("--no-status", action="store_true", help="no live status line")
    p.set_defaults(func=_rig)

def register_console(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("console", help="the runs dashboard offline (web page over the runs folder)")
    p.add_argument("--runs", default="runs", help="runs folder (default runs)")
    p.add_argument("--listen", default="127.0.0.1:8080", help="HOST:PORT (default 127.0.0.1:8080)")
    p.add_argument("--allow-remote", action="store_true", help="listen beyond loopback")
    p.add_argument("--token-file", type=Path, help="file holding the console's secret (else $BMI_CONSOLE_TOKEN, else "
                   "drawn at random and shown once as the URL to open)")
    p.add_argument("--cue-outlet", default="bmi-cues", help="LSL marker stream the cue page's onsets go to")
    p.set_defaults(func=_console)


def _console(args: argparse.Namespace) -> int:
    from .console.__main__ import main as console_main
    from .console.bridge import parse_listen
    from .console.secret import ENV, console_secret, console_url
    from datasets.lsl_quiet import quiet_liblsl

    quiet_liblsl()

    if not Path(args.runs).is_dir():
        raise FileNotFoundError(f"Runs folder not found: {args.runs}")
    host, port = parse_listen(args.listen)
    secret, drawn = console_secret(args.token_file)
    os.environ[ENV] = secret  # the console below reads it there, as a child of bmi serve does
    print(f"runs dashboard: open {console_url(host, port, secret, drawn, '/runs')} (Ctrl-C to stop)", flush=True)
    argv = ["--listen", args.listen, "--runs", str(args.runs), "--cue-outlet", args.cue_outlet]
    return console_main(argv + (["--allow-remote"] if args.allow_remote else []))


def _rename_rule(value: str | None):
    """``eegbci`` or a mapping file -> what :func:`datasets.channel_names.rename_channels` takes."""
    from datasets.channel_names import RULES

    if value is None or value in RULES:
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError(f"'--rename' ({value!r}) must be one of {sorted(RULES)} or a JSON/YAML mapping file "
                         f"(no file at {path}).")
    text = path.read_text()
    if path.suffix.lower() == ".json":
        mapping = json.loads(text)
    else:
        import yaml

        mapping = yaml.safe_load(text)
    if not isinstance(mapping, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise ValueError(f"'--rename' file {path} must hold a mapping of stream channel names to model channel names.")
    return mapping


def _serve(args: argparse.Namespace) -> int:
    from datasets.lsl_quiet import quiet_liblsl

    quiet_liblsl(args.verbose)
    from .actions import parse_action_args
    from .safety import SafetyConfig
    from .server import ServeConfig, Server
    from .smoothing import SmoothingConfig
    from .terminal import show_on_terminal

    args.token = shared_token(args)
    if args.allow_remote and not args.token:
        raise ValueError("--allow-remote needs a shared token (--token-file or $BMI_TOKEN).")
    sham, code = _condition(args)
    cfg = ServeConfig(
        hop_ms=args.hop_ms, max_age_ms=args.max_age_ms,
        smoothing=SmoothingConfig(method=args.smoothing, alpha=args.ema_alpha, k=args.vote_k,
                                  hysteresis=args.hysteresis, dwell_s=args.dwell_ms / 1000),
        safety=SafetyConfig(stale_ms=args.stale_ms, flat_threshold=args.flat_threshold, saturation=args.saturation,
                            safe_command=args.safe_command, flat_ms=args.flat_ms),
        level_classes=tuple(args.level_classes.split(",")) if args.level_classes else None,
        gate={k: v for k, v in (("threshold", args.gate_threshold), ("hysteresis", args.gate_hysteresis),
                                ("dwell_s", None if args.gate_dwell_ms is None else args.gate_dwell_ms / 1000))
              if v is not None},
        gate_rest_class=args.gate_rest_class, actions=parse_action_args(args.action), rename=_rename_rule(args.rename),
        units=args.units,
        on_unit_mismatch=args.on_unit_mismatch, max_amplitude_ratio=args.max_amplitude_ratio,
        check_seconds=args.check_seconds, artifact_ratio=args.artifact_ratio, jump_ratio=args.jump_ratio,
        subject=args.subject, align_seconds=args.align_seconds, alignment_path=args.alignment,
        save_alignment=args.save_alignment, cues=args.cues, console=args.console,
        console_token_file=args.console_token_file, runs_dir=args.runs,
        cue_outlet=args.cue_outlet, log_path=args.log, stats_path=args.stats, duration=args.duration,
        sham=sham, condition_code=code, sham_source=args.sham_source, sham_seed=args.sham_seed, status=not args.no_status,
        allow_remote=args.allow_remote, token=args.token, resolve_timeout=args.resolve_timeout,
        hello_timeout=args.hello_timeout, split_mix=not args.whole_graph, poll_ahead_ms=args.poll_ahead_ms,
    )
    show_on_terminal()  # the notices and the status line, off the decoding loop (terminal.py)
    stats = Server(args.model, args.input, args.output, cfg).run()
    sys.stderr.write(session_summary(stats) + "\n")
    print(json.dumps(stats))  # the machine-readable totals, last (also in --stats FILE)
    return 0


def shared_token(args: argparse.Namespace) -> str | None:
    """The TCP inputs' and the rig's shared token: ``--token-file``, else ``--token``, else ``$BMI_TOKEN``."""
    if args.token_file is not None:
        if args.token is not None:
            raise ValueError("'--token' and '--token-file' both give the token: give one.")
        if not args.token_file.is_file():
            raise FileNotFoundError(f"Token file not found: {args.token_file}")
        token = args.token_file.read_text().strip()
        if not token:
            raise ValueError(f"The token file {args.token_file} is empty.")
        return token
    return args.token or os.environ.get("BMI_TOKEN") or None


def _condition(args: argparse.Namespace) -> tuple[bool, str | None]:
    """(sham, condition code): from --sham, or from a blinded session plan (never shown)."""
    from .session_plan import planned_session, refuse_blinded_source

    if args.sham_source is not None:
        refuse_blinded_source(args.sham_source)
    if args.session_plan is None:
        if args.patient is not None or args.session is not None or args.session_key is not None:
            raise ValueError("'--patient', '--session' and '--session-key' choose a session of a plan: give "
                             "--session-plan too.")
        return args.sham, None
    if args.sham:
        raise ValueError("'--sham' and '--session-plan' both choose the condition: a planned session takes it from "
                         "the plan's key.")
    planned = planned_session(args.session_plan, args.patient, args.session, args.session_key)
    sys.stderr.write(f"bmi serve: planned session {planned.patient}/{planned.session} (code {planned.code}); the "
                     "condition is blinded\n")
    return planned.sham, planned.code


def session_summary(stats: dict) -> str:
    """The session in a few lines, for the operator."""
    lat, age, withheld = stats["latency_ms"], stats["age_ms"], stats["withheld_hops"]
    ms = lambda x: "-" if x is None else f"{x:.2f}"  # noqa: E731
    lines = [f"bmi serve: {stats['decisions']} decisions in {stats['seconds']:.1f} s; latency p50 {ms(lat['p50'])} / "
             f"p99 {ms(lat['p99'])} ms; window age p50 {ms(age['p50'])} / max {ms(age['max'])} ms "
             f"(limit {stats['max_age_ms']:g})"]
    if withheld:
        lines.append("  hops withheld: " + ", ".join(f"{k} {v}" for k, v in sorted(withheld.items(), key=lambda kv: -kv[1])))
    failed = [f"{o['output']} {o['failed']} of {o['sent'] + o['failed']}" for o in stats["outputs"] if o["failed"]]
    if failed:
        lines.append("  output failures: " + ", ".join(failed))
    if stats.get("cues"):
        window = stats["cues"]["training_window"]
        lines.append(f"  cues: {stats['cues']['n_cues']}; training-window balanced accuracy "
                     f"{ms(window['balanced_accuracy'])} over {window['n_trials']} trials")
    return "\n".join(lines)


def _rig(args: argparse.Namespace) -> int:
    from .rig import run_rig

    args.token = shared_token(args)
    if args.allow_remote and not args.token:
        raise ValueError("--allow-remote needs a shared token (--token-file or $BMI_TOKEN).")
    from .actions import parse_action_args

    result = run_rig(args.listen, args.log, args.plot, args.duration, args.speed, args.proportional,
                     allow_remote=args.allow_remote, token=args.token, status=not args.no_status,
                     actions=parse_action_args(args.action),
                     **({} if args.timeout_ms is None else {"timeout_ms": args.timeout_ms}))
    print(json.dumps(result))
    return 0
