"""``bmi serve`` and ``bmi rig`` (light: no torch, Lightning or MNE)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("serve", help="decode a live stream with an exported model and drive a controller")
    p.add_argument("model", help="ONNX model from bmi export")
    p.add_argument("--input", required=True, help="lsl:NAME | tcp://127.0.0.1:PORT | replay:FILE(.npz/.edf/.bdf)")
    p.add_argument("--output", action="append", default=[], help="udp://HOST:PORT | tcp://HOST:PORT | "
                   "serial:DEVICE?baud=N | lsl:NAME (repeatable)")
    p.add_argument("--hop-ms", type=float, default=50.0, help="decision interval on the stream's clock (default 50)")
    p.add_argument("--smoothing", choices=["ema", "vote", "none"], default="ema")
    p.add_argument("--ema-alpha", type=float, default=0.3)
    p.add_argument("--vote-k", type=int, default=5)
    p.add_argument("--hysteresis", type=float, default=0.1, help="probability margin a new command needs")
    p.add_argument("--dwell-ms", type=float, default=200.0, help="minimum time a command is held")
    p.add_argument("--level-classes", help="A,B: control level = P(A) - P(B) (default grasp,open when present)")
    p.add_argument("--stale-ms", type=float, default=250.0, help="no samples for this long -> safe state")
    p.add_argument("--flat-threshold", type=float, default=0.0, help="peak-to-peak at or below this is a flat channel")
    p.add_argument("--saturation", type=float, help="absolute amplitude counted as saturated (stream units)")
    p.add_argument("--safe-command", help="command sent in the safe state: a class or 'hold' "
                   "(default: rest when the model has that class, else hold)")
    p.add_argument("--subject", help="subject whose Euclidean-alignment matrix to use (models trained with it)")
    p.add_argument("--log", type=Path, help="session log (CSV) of every decision and safety event")
    p.add_argument("--stats", type=Path, help="write final statistics (JSON) here")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--sham", action="store_true", help="sham session: commands independent of the signal")
    p.add_argument("--sham-source", type=Path, help="session log of a real session whose statistics the sham copies")
    p.add_argument("--sham-seed", type=int)
    p.add_argument("--allow-remote", action="store_true", help="allow non-loopback addresses (needs --token)")
    p.add_argument("--token", help="shared token TCP clients must present in their hello")
    p.add_argument("--resolve-timeout", type=float, default=10.0, help="seconds to wait for the input stream")
    p.add_argument("--no-status", action="store_true", help="no live status line")
    p.set_defaults(func=_serve)

    p = subparsers.add_parser("rig", help="simulated prosthetic hand that receives the command stream")
    p.add_argument("--listen", required=True, help="udp://127.0.0.1:PORT or tcp://127.0.0.1:PORT")
    p.add_argument("--log", type=Path, help="CSV of every message with its arrival time")
    p.add_argument("--plot", type=Path, help="PNG of aperture against time")
    p.add_argument("--duration", type=float, help="stop after this many seconds")
    p.add_argument("--speed", type=float, default=1.0, help="aperture units per second (default 1)")
    p.add_argument("--proportional", action="store_true", help="scale speed by |level|")
    p.set_defaults(func=_rig)


def _serve(args: argparse.Namespace) -> int:
    from .safety import SafetyConfig
    from .server import ServeConfig, Server
    from .smoothing import SmoothingConfig

    if args.allow_remote and not args.token:
        raise ValueError("--allow-remote needs a shared --token.")
    dwell = max(0, int(round(args.dwell_ms / args.hop_ms)))
    cfg = ServeConfig(
        hop_ms=args.hop_ms,
        smoothing=SmoothingConfig(args.smoothing, args.ema_alpha, args.vote_k, args.hysteresis, dwell),
        safety=SafetyConfig(args.stale_ms, args.flat_threshold, args.saturation, args.safe_command),
        level_classes=tuple(args.level_classes.split(",")) if args.level_classes else None,
        log_path=args.log, stats_path=args.stats, duration=args.duration, sham=args.sham,
        sham_source=args.sham_source, sham_seed=args.sham_seed, subject=args.subject, status=not args.no_status,
        allow_remote=args.allow_remote, token=args.token, resolve_timeout=args.resolve_timeout,
    )
    if not args.output:
        raise ValueError("bmi serve needs at least one --output (udp://127.0.0.1:PORT, ...).")
    stats = Server(args.model, args.input, args.output, cfg).run()
    print(json.dumps(stats))
    return 0


def _rig(args: argparse.Namespace) -> int:
    from .rig import run_rig

    result = run_rig(args.listen, args.log, args.plot, args.duration, args.speed, args.proportional)
    print(json.dumps(result))
    return 0
