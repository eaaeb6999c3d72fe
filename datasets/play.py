"""``bmi play FILE --name MyAmp``: replay a recording as a live LSL stream (``mne_lsl.player.PlayerLSL``).

For rehearsing a session on one computer: any file MNE reads (FIF, EDF/BDF, BrainVision, ...) becomes an LSL
stream with its channel names, types and units, and its annotations on ``NAME-annotations`` (what
``bmi serve --cues lsl:NAME-annotations`` scores against). Real time, from the file's first sample, in chunks.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("play", help="replay a recording file as a live LSL stream (for rehearsals)")
    p.add_argument("file", type=Path, help="recording file MNE reads (FIF, EDF/BDF, BrainVision, EEGLAB, ...)")
    p.add_argument("--name", required=True, help="LSL stream name, e.g. MyAmp (bmi serve --input lsl:MyAmp)")
    p.add_argument("--chunk-size", type=int, default=10, help="samples per pushed chunk (default 10)")
    p.add_argument("--rename", choices=["eegbci"], help="rename the file's channels first (PhysioNet names)")
    p.add_argument("--no-annotations", action="store_true", help="do not publish the annotations stream")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: the file's length)")
    p.add_argument("--loop", action="store_true", help="start again at the end of the file")
    p.set_defaults(func=_play)


def _play(args: argparse.Namespace) -> int:
    import mne

    from datasets.lsl_quiet import quiet_liblsl

    quiet_liblsl()
    from mne_lsl.player import PlayerLSL

    from .channel_names import rename_channels

    if not args.file.is_file():
        raise FileNotFoundError(f"Recording not found: {args.file}")
    if args.chunk_size < 1:
        raise ValueError(f"'--chunk-size' ({args.chunk_size}) must be at least 1.")
    raw = mne.io.read_raw(args.file, preload=True, verbose="error")
    if args.rename:
        raw.rename_channels(dict(zip(raw.ch_names, rename_channels(raw.ch_names, args.rename))))
    length = raw.n_times / raw.info["sfreq"]
    seconds = args.duration if args.duration is not None else (float("inf") if args.loop else length)
    player = PlayerLSL(raw, chunk_size=args.chunk_size, name=args.name, n_repeat=float("inf") if args.loop else 1,
                       annotations=not args.no_annotations)
    player.start()
    print(f"playing {args.file.name} as LSL stream {args.name!r}: {len(raw.ch_names)} channels at "
          f"{raw.info['sfreq']:g} Hz, {length:.1f} s{' (looping)' if args.loop else ''}; Ctrl-C stops", file=sys.stderr)
    try:
        time.sleep(seconds) if seconds != float("inf") else _forever()
    except KeyboardInterrupt:
        pass
    finally:
        player.stop()
    return 0


def _forever() -> None:
    while True:
        time.sleep(3600)
