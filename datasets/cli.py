"""``bmi data summary`` and ``bmi data synth``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    data = subparsers.add_parser("data", help="inspect recordings, write synthetic ones",
                                 description="Inspect the recordings a config names, or write synthetic ones.")
    sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND", required=True)

    p = sub.add_parser("summary", help="epochs per class and group, channels, rate, window (through the cache)",
                       description="Read the recordings a config's data: section names (through the epochs cache) and "
                                   "print the epochs per class and per subject / session / run, the events the files "
                                   "hold, the channels, rate and window. Warns when a mapped event never occurs.")
    p.add_argument("config", help="YAML config with a data: section")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override, e.g. data.tmax=2")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_summary)

    p = sub.add_parser("synth", help="write synthetic hand-movement recordings (real FIF/EDF files) and a config",
                       description="Write synthetic hand-movement recordings (rest / grasp / open cues with lateralised "
                                   "mu/beta desynchronisation, 1/f background, line noise) as real FIF or EDF files, "
                                   "and OUT_DIR/config.yaml with a data: section that reads them.")
    p.add_argument("out_dir", help="folder to write the recordings and config.yaml into (created if missing)")
    p.add_argument("--modality", choices=["eeg", "meg"], default="eeg",
                   help="eeg: 64 channels, BioSemi positions; meg: 306 channels, a Neuromag-like helmet (default eeg)")
    p.add_argument("--subjects", type=int, default=2, help="number of subjects (default 2)")
    p.add_argument("--sessions", type=int, default=1, help="sessions per subject (default 1)")
    p.add_argument("--runs", type=int, default=3, help="runs (files) per session (default 3)")
    p.add_argument("--trials", type=int, default=10, help="trials per class per run (default 10)")
    p.add_argument("--snr", type=float, default=1.0, help="signal-to-noise knob: 1 is the default difficulty, higher "
                                                           "is easier (default 1)")
    p.add_argument("--sfreq", type=float, help="sampling rate in Hz (default 250 for EEG, 1000 for MEG)")
    p.add_argument("--format", choices=["fif", "edf"], default="fif", help="file format (default fif)")
    p.add_argument("--seed", type=int, default=0, help="random seed: the same seed writes the same files (default 0)")
    p.set_defaults(func=_synth)


def summarize(config: str | Path, overrides: list[str] | None = None) -> dict:
    """What ``bmi data summary --json`` prints."""
    from collections import Counter

    from .config import DataConfig
    from .epochs import load_epochs
    from .events import missing_events_message
    from .typed import apply_overrides, from_mapping, load_yaml

    raw = load_yaml(config)
    raw = apply_overrides(raw, overrides)
    cfg = from_mapping(DataConfig, raw.get("data", raw), "data")
    ep = load_epochs(cfg, Path(config).resolve().parent)
    missing = ep.missing_events(cfg.events)
    return {
        "missing_events": missing,
        "warnings": [missing_events_message(ep.event_counts, cfg.events, len(ep.files))] if missing else [],
        "event_counts": ep.event_counts,
        "n_epochs": int(len(ep.y)),
        "classes": {c: int((ep.y == i).sum()) for i, c in enumerate(ep.classes)},
        "groups": {k: dict(sorted(Counter(v.tolist()).items())) for k, v in ep.groups.items()},
        "n_chans": len(ep.ch_names),
        "n_times": int(ep.n_times),
        "sfreq": ep.sfreq,
        "ch_names": ep.ch_names,
        "window_seconds": [ep.tmin, ep.tmax],
        "files": ep.files,
        "cache": ep.cache_path,
    }


def _summary(args: argparse.Namespace) -> int:
    info = summarize(args.config, args.set)
    for line in info["warnings"]:  # training refuses such a mapping; a summary shows it and says so
        print(f"warning: {line} bmi train refuses this mapping.", file=sys.stderr)
    if args.json:
        print(json.dumps(info))
        return 0
    print(f"{info['n_epochs']} epochs from {len(info['files'])} file(s); cache {info['cache']}")
    print("per class: " + ", ".join(f"{k} {v}" for k, v in info["classes"].items()))
    print("events in the files: " + ", ".join(f"{k} {v}" for k, v in sorted(info["event_counts"].items())))
    for key, counts in info["groups"].items():
        print(f"per {key}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))
    print(f"{info['n_chans']} channels at {info['sfreq']:g} Hz, window {info['n_times']} samples "
          f"({info['window_seconds'][0]:g} to {info['window_seconds'][1]:g} s)")
    print("channels: " + " ".join(info["ch_names"]))
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .synthetic import write_example_config, write_synthetic

    files = write_synthetic(
        args.out_dir, modality=args.modality, n_subjects=args.subjects, n_sessions=args.sessions, n_runs=args.runs,
        trials_per_class=args.trials, snr=args.snr, sfreq=args.sfreq, fmt=args.format, seed=args.seed,
    )
    config = write_example_config(args.out_dir, files, args.modality, test_runs=[f"{args.runs:02d}"])  # the last run tests
    print(f"wrote {len(files)} recordings to {args.out_dir}")
    print(f"example config: {config}")
    return 0
