"""``bmi bench``: run every benchmark script and collect one results file plus a Markdown table."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("bench", help="run the data, training, inference and server benchmarks")
    p.add_argument("--quick", action="store_true", help="short runs (minutes, not tens of minutes)")
    p.add_argument("--out", default="bench_results", help="results folder (default bench_results)")
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    cmd = ["bash", str(ROOT / "scripts" / "bench_all.sh"), args.out] + (["--quick"] if args.quick else [])
    return subprocess.call(cmd, env=None, stdout=sys.stdout, stderr=sys.stderr)
