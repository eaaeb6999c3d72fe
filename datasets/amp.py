"""``bmi amp --synthetic --name SimAmp``: a simulated amplifier on LSL whose signals answer the paradigm's cues.

It publishes the simulated head of :mod:`datasets.synthetic` (subject, session, class patterns) in real time,
as an amplifier does: float32 chunks every ``chunk_ms`` stamped with their acquisition time, EEG in microvolts
(MEG in femtotesla and femtotesla per metre), with channel names, types, units and positions in the stream's
description (mne-lsl's :meth:`~mne_lsl.lsl.StreamInfo.set_channel_info`, which ``StreamInfo.get_channel_info``
turns back into an :class:`mne.Info`). It listens to the cue markers (``bmi-cues`` by default: the console's
cue page or ``bmi calibrate``): a cue's pattern starts at the sample of the marker's timestamp, so calibration,
training and closed-loop control can be tested end to end on one computer.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

#: stream units per channel type: the unit name written into the stream, and the factor from SI
STREAM_UNITS = {"eeg": ("microvolts", 1e6), "mag": ("-15", 1e15), "grad": ("-15", 1e15)}  # mne-lsl codes: 1e-15


@dataclass
class AmpConfig:
    name: str = "SimAmp"
    modality: str = "eeg"
    subject: int = 1  # counted from 1, as in the file names (sub-01)
    session: int = 1
    sfreq: float | None = None  # None: 250 Hz for EEG, 1000 Hz for MEG
    snr: float = 1.0
    session_shift: float = 0.0
    seed: int = 0
    cues: str | None = "bmi-cues"  # LSL marker stream whose cues the signals answer; None: none
    chunk_ms: float = 20.0

    def __post_init__(self) -> None:
        if self.modality not in ("eeg", "meg"):
            raise ValueError(f"'--modality' ({self.modality!r}) must be 'eeg' or 'meg'.")
        for key in ("subject", "session"):
            if getattr(self, key) < 1:
                raise ValueError(f"'--{key}' ({getattr(self, key)}) must be at least 1 (sessions and subjects count from 1).")
        if not 1 <= self.chunk_ms <= 200:
            raise ValueError(f"'--chunk-ms' ({self.chunk_ms}) must be between 1 and 200 ms.")
        if self.session_shift < 0:
            raise ValueError(f"'--session-shift' ({self.session_shift}) must be >= 0.")
        if not self.name:
            raise ValueError("'--name' must not be empty.")
        self.sfreq = float(self.sfreq or (250.0 if self.modality == "eeg" else 1000.0))


def stream_info(cfg: AmpConfig, info):
    """The LSL description: names, types, units and positions from ``info``, units as the stream carries them."""
    from mne_lsl.lsl import StreamInfo

    sinfo = StreamInfo(cfg.name, cfg.modality.upper(), len(info["ch_names"]), cfg.sfreq, "float32",
                       f"bmi-amp-{cfg.name}-sub{cfg.subject}-ses{cfg.session}")
    sinfo.set_channel_info(info)
    sinfo.set_channel_units([STREAM_UNITS[t][0] for t in info.get_channel_types()])
    return sinfo


class SimulatedAmplifier:
    """Streams a :class:`~datasets.synthetic_stream.SyntheticStream` on LSL in real time; cue markers start patterns."""

    def __init__(self, cfg: AmpConfig):
        from mne_lsl.lsl import StreamOutlet, local_clock

        from .lsl_markers import MarkerListener
        from .synthetic import sensor_info, session_head
        from .synthetic_stream import SyntheticStream

        self.cfg = cfg
        self.info = sensor_info(cfg.modality, cfg.sfreq)
        head = session_head(self.info, cfg.seed, cfg.subject - 1, cfg.session - 1, cfg.session_shift)
        self.source = SyntheticStream(cfg.sfreq, head, cfg.snr, seed=[cfg.seed, cfg.subject, cfg.session, 99])
        self.to_stream = np.array([STREAM_UNITS[t][1] for t in self.info.get_channel_types()])[:, None]
        self.chunk = max(1, int(round(cfg.chunk_ms / 1000 * cfg.sfreq)))
        self.outlet = StreamOutlet(stream_info(cfg, self.info), chunk_size=self.chunk, max_buffered=30)
        self.clock = local_clock
        self.cues = MarkerListener(cfg.cues) if cfg.cues else None
        self.cue_counts: Counter = Counter()
        # markers that came after their onset had been streamed (label, onset sample, samples streamed by then):
        # their pattern starts part-way, time-locked to the onset
        self.late_cues: list[dict[str, Any]] = []
        self.t0: float | None = None
        self._stop = threading.Event()

    def _apply_cues(self) -> None:
        for stamp, label in self.cues.drain():
            onset = int(round((stamp - self.t0) * self.cfg.sfreq))
            if onset < 0:
                continue  # a marker from before the amplifier started
            self.cue_counts[label] += 1
            if self.source.cue(label, onset) and onset < self.source.n:
                self.late_cues.append({"label": label, "onset_sample": onset, "streamed_samples": self.source.n})

    def run(self, duration: float | None = None, status: bool = True) -> dict:
        """Stream until :meth:`stop` (or SIGINT/SIGTERM in the main thread) or ``duration`` seconds."""
        sfreq = self.cfg.sfreq
        self.t0 = self.clock()
        sent, next_status = 0, time.monotonic() + 1.0
        try:
            while not self._stop.is_set():
                now = self.clock()
                if duration is not None and now - self.t0 >= duration:
                    break
                due = int((now - self.t0) * sfreq)
                if due - sent >= self.chunk:
                    if self.cues is not None:
                        self._apply_cues()  # before generating: a cue starts on the sample of its timestamp
                    data = self.source.generate(due - sent) * self.to_stream
                    self.outlet.push_chunk(np.ascontiguousarray(data.T, dtype=np.float32), timestamp=self.t0 + (due - 1) / sfreq)
                    sent = due
                if status and time.monotonic() >= next_status:
                    self._status(sent)
                    next_status += 1.0
                self._stop.wait(max(0.0, self.t0 + (sent + self.chunk) / sfreq - self.clock()))
        finally:
            self.close()
        if status:
            sys.stderr.write("\n")
        return {"samples": sent, "seconds": round(sent / sfreq, 3), "cues": dict(self.cue_counts),
                "late_cues": self.late_cues}

    def _status(self, sent: int) -> None:
        cues = ", ".join(f"{k} {v}" for k, v in sorted(self.cue_counts.items())) or "none yet"
        listening = f"lsl:{self.cfg.cues} ({self.cues.n_streams} stream(s))" if self.cues else "no cue stream"
        sys.stderr.write(f"\r[{sent / self.cfg.sfreq:7.1f} s] {self.cfg.name}: cues from {listening}: {cues}   ")
        sys.stderr.flush()

    def stop(self, *_) -> None:
        self._stop.set()

    def close(self) -> None:
        if self.cues is not None:
            self.cues.close()
            self.cues = None


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "amp", help="a simulated amplifier: a live LSL stream whose signals answer the paradigm's cues",
        description="Publish a simulated head (64-channel EEG or 306-channel MEG, the synthetic recordings' subjects, "
                    "sessions and class patterns) as a live LSL stream in real time, in microvolts (MEG: femtotesla), "
                    "with channel names, types, units and positions. Cue markers on --cues start the cued class's "
                    "pattern (grasp: left-hemisphere mu/beta desynchronisation and movement-related potential; open: "
                    "right; rest: none), so bmi calibrate and bmi serve can run end to end without hardware.")
    p.add_argument("--synthetic", action="store_true", help="simulate the signals (the only source; a real amplifier "
                   "publishes its own LSL stream)")
    p.add_argument("--name", default="SimAmp", help="LSL stream name (default SimAmp)")
    p.add_argument("--modality", choices=["eeg", "meg"], default="eeg", help="eeg: 64 channels at 250 Hz; meg: 306 "
                   "channels at 1 kHz (default eeg)")
    p.add_argument("--subject", type=int, default=1, help="simulated subject, as sub-NN of bmi data synth (default 1)")
    p.add_argument("--session", type=int, default=1, help="session (day) of that subject (default 1)")
    p.add_argument("--cues", default="lsl:bmi-cues", metavar="lsl:NAME",
                   help="cue marker stream the signals answer (default lsl:bmi-cues; 'none' for none)")
    p.add_argument("--snr", type=float, default=1.0, help="class pattern strength: 1 as the synthetic recordings, higher "
                   "is easier (default 1)")
    p.add_argument("--session-shift", type=float, default=0.0,
                   help="how much the cap placement and channel gains change between sessions (default 0; 1: about "
                        "1 cm per axis and 20%% per channel)")
    p.add_argument("--sfreq", type=float, help="sampling rate (default 250 Hz EEG, 1000 Hz MEG)")
    p.add_argument("--chunk-ms", type=float, default=20.0, help="samples per pushed chunk, in ms (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated subjects (as bmi data synth --seed)")
    p.add_argument("--duration", type=float, help="stop after this many seconds (default: until Ctrl-C)")
    p.add_argument("--no-status", action="store_true", help="no live status line")
    p.add_argument("--verbose", action="store_true", help="also show liblsl's own log lines")
    p.set_defaults(func=_main)


def late_cue_text(cue: dict) -> str:
    late = cue["streamed_samples"] - cue["onset_sample"]
    return f"{cue['label']} at sample {cue['onset_sample']} ({late} sample{'s' if late != 1 else ''} late)"


def cue_stream_name(spec: str | None) -> str | None:
    """``lsl:NAME`` -> NAME; ``none`` -> None."""
    if spec is None or spec.lower() == "none":
        return None
    if not spec.startswith("lsl:") or len(spec) < 5:
        raise ValueError(f"'--cues' ({spec!r}) must be lsl:NAME (an LSL marker stream, e.g. lsl:bmi-cues) or 'none'.")
    return spec[4:]


def _main(args: argparse.Namespace) -> int:
    from .lsl_quiet import quiet_liblsl

    if not args.synthetic:
        raise ValueError("'bmi amp' needs --synthetic: it simulates an amplifier (a real one publishes its own LSL "
                         "stream; record it with bmi calibrate --stream lsl:NAME).")
    quiet_liblsl(args.verbose)
    cfg = AmpConfig(name=args.name, modality=args.modality, subject=args.subject, session=args.session, sfreq=args.sfreq,
                    snr=args.snr, session_shift=args.session_shift, seed=args.seed, cues=cue_stream_name(args.cues),
                    chunk_ms=args.chunk_ms)
    amp = SimulatedAmplifier(cfg)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, amp.stop)
    units = sorted({STREAM_UNITS[t][0] for t in amp.info.get_channel_types()})
    print(f"bmi amp: LSL stream {cfg.name!r}: {len(amp.info['ch_names'])} {cfg.modality.upper()} channels at "
          f"{cfg.sfreq:g} Hz in {', '.join(units)}; subject {cfg.subject}, session {cfg.session}; "
          f"answering cues on {('lsl:' + cfg.cues) if cfg.cues else 'nothing'}. Ctrl-C stops.", file=sys.stderr, flush=True)
    result = amp.run(args.duration, status=not args.no_status)
    print(f"bmi amp: streamed {result['seconds']:.1f} s; cues {result['cues'] or 'none'}", file=sys.stderr)
    if result["late_cues"]:
        print(f"bmi amp: {len(result['late_cues'])} cue(s) came after their onset had been streamed, so their pattern "
              "started part-way: " + "; ".join(late_cue_text(c) for c in result["late_cues"]), file=sys.stderr)
    return 0
