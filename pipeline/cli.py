"""The ``bmi`` command. Each subsystem registers its own subcommands; heavy imports (torch, MNE)
happen inside the handlers, so ``bmi serve`` on a rig never loads torch."""

from __future__ import annotations

import argparse
import importlib
import sys

# Modules that define ``register(subparsers)``; each adds its subcommands with ``set_defaults(func=...)``.
COMMAND_MODULES = [
    "datasets.cli",            # bmi data ...
    "datasets.play",           # bmi play
    "pipeline.commands",       # bmi train / evaluate / cv / compare / sweep
    "exports.cli",             # bmi export / inspect
    "exports.runtime.cli",     # bmi serve / rig
    "pipeline.demo",           # bmi demo
    "pipeline.bench",          # bmi bench
    "pipeline.benchmark",      # bmi benchmark (MOABB's evaluations)
    "datasets.amp",            # bmi amp
    "pipeline.calibrate",      # bmi calibrate
    "pipeline.rehearse",       # bmi rehearse
    "exports.runtime.session_plan",  # bmi session plan / unblind
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bmi", description="Brain-machine interface decoders: data, training, export, real-time serving."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from .quiet import quiet_third_party

    quiet_third_party(verbose=getattr(args, "verbose", False))
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("Interrupted.", file=sys.stderr)
        return 130
    except (ValueError, TypeError, FileNotFoundError, FileExistsError, RuntimeError) as err:
        if getattr(args, "debug", False):
            raise
        print(f"bmi {args.command}: error: {type(err).__name__}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
