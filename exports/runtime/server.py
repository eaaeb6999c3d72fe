"""The real-time decoding loop: stream in -> causal preprocessing -> onnxruntime -> smoothing -> safety ->
controller out.

One thread, no waiting on the stream: every pass pulls what has arrived, feeds it through the SAME
causal preprocessing as training (``datasets.dsp``, filter state carried across chunks), and at every
hop boundary on the stream's sample clock decodes the newest window. The watchdog puts the controller
into the safe state when data go stale or turn bad, and heartbeats continue. Bad input, lost streams
and lost controllers are counted, never fatal; SIGINT/SIGTERM send the safe command last.
"""

from __future__ import annotations

import csv
import json
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets.dsp import CausalPreprocessor, PreprocessingSpec, apply_normalization

from .buffer import RingBuffer
from .inputs import open_input
from .model import DecoderSession
from .outputs import encode, open_output
from .safety import SafetyConfig, SafetyState, check_chunk, check_window
from .sham import ShamDecoder
from .smoothing import SmoothingConfig, Smoother

LOG_FIELDS = ["type", "seq", "t_wall", "t_window_end", "sample_index", "command", "confidence", "level",
              "probabilities", "latency_ms", "age_ms", "safe", "reason", "sham"]


@dataclass
class ServeConfig:
    hop_ms: float = 50.0
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    level_classes: tuple[str, str] | None = None
    log_path: Path | None = None
    stats_path: Path | None = None
    duration: float | None = None
    sham: bool = False
    sham_source: Path | None = None
    sham_seed: int | None = None
    subject: str | None = None
    status: bool = True
    allow_remote: bool = False
    token: str | None = None
    resolve_timeout: float = 10.0


def match_channels(got_names: list[str], got_sfreq: float, spec: PreprocessingSpec) -> np.ndarray:
    """Indices that reorder the stream's channels into the model's order; refuse missing channels or another rate."""
    missing = [c for c in spec.ch_names if c not in got_names]
    problems = []
    if missing:
        problems.append(f"missing channels {missing}")
    if abs(float(got_sfreq) - spec.sfreq_in) > 1e-6:
        problems.append(f"sampling rate {got_sfreq:g} Hz, the model expects {spec.sfreq_in:g} Hz")
    if problems:
        extra = [c for c in got_names if c not in spec.ch_names]
        raise ValueError(f"The stream does not match the model: {'; '.join(problems)} "
                         f"(stream has {len(got_names)} channels; {len(extra)} not used by the model: {extra[:10]}).")
    return np.array([got_names.index(c) for c in spec.ch_names])


class Server:
    def __init__(self, model_path: str | Path, input_spec: str, output_specs: list[str], cfg: ServeConfig):
        self.cfg = cfg
        self.events: Counter = Counter()
        self.decoder = DecoderSession(model_path)
        meta = self.decoder.meta
        self.classes = meta["classes"]
        self.spec = PreprocessingSpec.from_dict(meta["preprocessing"])
        self.pre = CausalPreprocessor(self.spec)  # refuses zero-phase (offline-only) models
        self.norm = meta["normalization"]
        if cfg.safety.safe_command is None:
            cfg.safety.safe_command = "rest" if "rest" in self.classes else "hold"
        if cfg.safety.safe_command not in self.classes and cfg.safety.safe_command != "hold":
            raise ValueError(f"'safe-command' ({cfg.safety.safe_command!r}) must be 'hold' or one of the classes {self.classes}.")
        if cfg.level_classes is None and {"grasp", "open"} <= set(self.classes):
            cfg.level_classes = ("grasp", "open")
        for c in cfg.level_classes or ():
            if c not in self.classes:
                raise ValueError(f"'level-classes' names {c!r}, not a class of the model {self.classes}.")
        self.smoother = Smoother(self.classes, cfg.smoothing, cfg.level_classes)
        self.n_times = self.decoder.n_times
        decim = self.spec.decim
        self.hop_in = max(decim, int(round(cfg.hop_ms / 1000 * self.spec.sfreq_in / decim)) * decim)
        self.outputs = [open_output(s, self.events, allow_remote=cfg.allow_remote) for s in output_specs]
        self.sham = ShamDecoder(self.classes, cfg.hop_ms / 1000, cfg.sham_source, seed=cfg.sham_seed,
                                level_pair=cfg.level_classes) if cfg.sham else None
        self.source = open_input(input_spec, allow_remote=cfg.allow_remote, token=cfg.token,
                                 resolve_timeout=cfg.resolve_timeout, events=self.events)
        self.order = match_channels(self.source.ch_names, self.source.sfreq, self.spec)
        self.raw_ring = RingBuffer(len(self.order), self.n_times * decim)
        self.proc_ring = RingBuffer(len(self.order), self.n_times)
        self.state = SafetyState()
        self.seq = 0
        self.samples_total = 0
        self.latencies: deque[float] = deque(maxlen=100_000)
        self.late_hops = 0
        self.decisions = 0
        self._since_hop = 0
        self._running = True
        self._log_fh = None
        self._log = None

    # -- helpers -------------------------------------------------------------------------------------------
    def stop(self, *_: Any) -> None:
        self._running = False

    def _reset_pipeline(self) -> None:
        """After a gap or bad data the filters restart from rest and the window refills with clean data."""
        self.pre.reset()
        self.raw_ring.clear()
        self.proc_ring.clear()
        self._since_hop = 0
        self.smoother.reset()

    def _emit(self, msg: dict[str, Any]) -> None:
        line = encode(msg)
        for out in self.outputs:
            out.send(msg, line)
        if self._log is not None:
            row = dict(msg, sham=int(self.cfg.sham), probabilities=json.dumps(msg.get("probabilities")),
                       safe=int(msg["safe"]))
            self._log.writerow({k: row.get(k, "") for k in LOG_FIELDS})
            self._log_fh.flush()

    def _safe_message(self, kind: str, reason: str) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "seq": self.seq, "t_wall": time.time(), "t_window_end": None,
                "sample_index": self.samples_total, "command": self.cfg.safety.safe_command, "confidence": None,
                "level": 0.0, "probabilities": None, "latency_ms": None, "age_ms": None, "safe": True, "reason": reason}

    def _enter_safe(self, reason: str) -> None:
        if self.state.enter(reason):
            self._emit(self._safe_message("safe", reason))
            self._next_heartbeat = time.monotonic() + self.cfg.hop_ms / 1000

    # -- decoding ------------------------------------------------------------------------------------------
    def _decide(self, t_window_end: float | None, t_received: float) -> None:
        if self.proc_ring.count < self.n_times:
            return  # warming up after start or a reset
        problem = check_window(self.raw_ring.latest(self.raw_ring.count), self.cfg.safety)
        if problem:
            self._enter_safe(problem)
            return
        if self.state.safe:
            self.events[f"resumed_after_{self.state.reason}"] += 1
            self.state.clear()
        window = apply_normalization(self.proc_ring.latest(self.n_times), self.norm, self.cfg.subject)
        probs = self.decoder.predict(window)
        if self.sham is not None:  # the decoder still runs, so timing is identical; its output is not used
            fake = self.sham.next()
            command, confidence, level, probs = fake["command"], fake["confidence"], fake["level"], fake["probabilities"]
        else:
            command, confidence, level, _ = self.smoother.update(probs)
        now = time.monotonic()
        latency = (now - t_received) * 1000
        self.latencies.append(latency)
        self.decisions += 1
        if latency > self.cfg.hop_ms:
            self.late_hops += 1
        age = (self.source.clock() - t_window_end) * 1000 if t_window_end is not None else None
        self.seq += 1
        self._emit({"type": "decision", "seq": self.seq, "t_wall": time.time(), "t_window_end": t_window_end,
                    "sample_index": self.samples_total, "command": command, "confidence": round(confidence, 6),
                    "level": round(level, 6), "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, probs)},
                    "latency_ms": round(latency, 3), "age_ms": round(age, 3) if age is not None else None,
                    "safe": False, "reason": ""})

    def _feed(self, chunk: np.ndarray, ts: float | None, t_received: float) -> None:
        chunk = chunk[self.order]
        problem = check_chunk(chunk, self.cfg.safety)
        if problem:
            self.events[f"discarded_samples_{problem}"] += chunk.shape[1]
            self.samples_total += chunk.shape[1]
            self._enter_safe(problem)
            self._reset_pipeline()
            return
        n, pos = chunk.shape[1], 0
        while pos < n:  # split at hop boundaries so every decision sees the window ending exactly there
            take = min(n - pos, self.hop_in - self._since_hop)
            piece = chunk[:, pos : pos + take]
            self.raw_ring.append(piece)
            self.proc_ring.append(self.pre.process(piece).astype(np.float32))
            pos += take
            self._since_hop += take
            self.samples_total += take
            if self._since_hop == self.hop_in:
                self._since_hop = 0
                t_end = ts - (n - pos) / self.source.sfreq if ts is not None else None
                self._decide(t_end, t_received)

    # -- the loop --------------------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)
        if cfg.log_path is not None:
            cfg.log_path.parent.mkdir(parents=True, exist_ok=True)
            self._log_fh = cfg.log_path.open("w", newline="")
            self._log = csv.DictWriter(self._log_fh, fieldnames=LOG_FIELDS)
            self._log.writeheader()
        started = time.monotonic()
        last_data, self._next_heartbeat, next_status = started, started, started + 1.0
        self._emit(self._safe_message("safe", "starting"))
        try:
            while self._running:
                now = time.monotonic()
                if cfg.duration is not None and now - started >= cfg.duration:
                    break
                try:
                    chunk, ts = self.source.pull()
                except Exception as err:  # a stream library error must not end a session
                    self.events[f"input_error_{type(err).__name__}"] += 1
                    chunk, ts = np.zeros((len(self.source.ch_names), 0), dtype=np.float32), None
                if chunk.shape[1]:
                    last_data = now
                    self._feed(chunk, ts, now)
                elif (now - last_data) * 1000 > cfg.safety.stale_ms:
                    if not (self.state.safe and self.state.reason == "stale"):
                        self._enter_safe("stale")
                        self._reset_pipeline()
                if self.state.safe and now >= self._next_heartbeat:
                    self._emit(self._safe_message("heartbeat", self.state.reason))
                    self._next_heartbeat = now + cfg.hop_ms / 1000
                if cfg.status and now >= next_status:
                    self._status(now - started)
                    next_status = now + 1.0
                if not chunk.shape[1]:
                    time.sleep(0.0005)
        finally:
            self._emit(self._safe_message("stop", "shutdown"))  # the safe command goes out last
            for out in self.outputs:
                out.close()
            self.source.close()
            if self._log_fh is not None:
                self._log_fh.close()
            if cfg.status:
                sys.stderr.write("\n")
        stats = self.stats(time.monotonic() - started)
        if cfg.stats_path is not None:
            cfg.stats_path.write_text(json.dumps(stats, indent=2))
        return stats

    def stats(self, seconds: float) -> dict[str, Any]:
        lat = np.array(self.latencies) if self.latencies else np.array([np.nan])
        return {
            "seconds": round(seconds, 3), "decisions": self.decisions, "samples_received": self.samples_total,
            "hop_samples": self.hop_in, "late_hops": self.late_hops,
            "latency_ms": {"p50": float(np.nanpercentile(lat, 50)), "p99": float(np.nanpercentile(lat, 99)),
                           "max": float(np.nanmax(lat))},
            "events": dict(self.state.events) | {k: v for k, v in self.events.items()},
            "sham": self.cfg.sham,
        }

    def _status(self, elapsed: float) -> None:
        lat = np.array(self.latencies)[-200:] if self.latencies else np.array([np.nan])
        discarded = sum(v for k, v in self.events.items() if k.startswith("discarded_samples"))
        sys.stderr.write(
            f"\r[{elapsed:6.1f} s] {self.decisions / max(elapsed, 1e-9):5.1f} dec/s | latency p50 "
            f"{np.nanpercentile(lat, 50):5.2f} p99 {np.nanpercentile(lat, 99):5.2f} ms | late hops {self.late_hops} | "
            f"discarded samples {discarded} | {'SAFE (' + self.state.reason + ')' if self.state.safe else 'decoding'}   "
        )
        sys.stderr.flush()
