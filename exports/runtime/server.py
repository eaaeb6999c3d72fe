"""The real-time decoding loop: stream in -> causal preprocessing -> onnxruntime -> smoothing -> safety ->
controller out.

One thread, no waiting on the stream: every pass pulls what has arrived, feeds it through the SAME
causal preprocessing as training (``datasets.dsp``, filter state carried across chunks), and once a hop of
samples (on the stream's sample clock) has arrived decodes the newest window, the one ending at the newest
sample, so a decision never waits for a hop boundary inside a chunk. With decimation the filtered signal is
kept at the input rate and the window is every ``decim``-th sample counted back from the newest one (the
decimation's phase follows the newest sample, not the stream's first: training windows start at any phase
too), so no decision waits up to ``decim - 1`` input samples for a sample the decimation keeps. Between
chunks the loop sleeps until the input wakes it, or polls from shortly before the next chunk is due
(:mod:`.pacing`).

The safe state is the default; the server leaves it only for a window that is

- fresh: its last sample was acquired at most ``max_age_ms`` ago on the local clock (a backlog after a
  stall is filtered, to keep the filter state, but never decoded);
- settled: the filters have run for their settling time since the last (re)start, which happens at start,
  after a gap or bad data, and for every new stream connection;
- plausible: in the model's units (converted or refused at connection), with an amplitude after the
  band-pass within ``max_amplitude_ratio`` of the training data's, finite, not saturated, never flat
  (a flat channel restarts the pipeline like a dropout), and
  free of artifacts (a raw step far beyond the typical sample change restarts the filters at the new
  level; no band-passed peak above ``artifact_ratio`` x the channel's training RMS);
- aligned, for models with Euclidean alignment (a training subject's matrix, a saved one, or one
  estimated from the session's first seconds).

Every output gets every message independently of the others, the session log is written by a thread,
and SIGINT/SIGTERM send the safe command last on every output.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import sys
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from datasets.dsp import CausalPreprocessor, PreprocessingSpec

from .actions import SAFE_ACTION, level_classes, plan_actions
from .alignment import choose_alignment, estimate_alignment, save_alignment, session_normalizer
from .buffer import PhaseRings, RingBuffer
from .clock import AHEAD_TOLERANCE_S
from .inputs import open_input
from .layout import Layout, StreamDescription, StreamMismatch, plan_layout
from .model import DecoderSession
from .outputs import OutputSet, encode
from .pacing import ArrivalPacer, yield_core
from .safety import AmplitudeCheck, FlatDetector, JumpDetector, SafetyConfig, SafetyState, check_chunk
from .session_log import SessionLog
from .sham import ShamDecoder
from .smoothing import GatedSmoother, SmoothingConfig, Smoother, gate_in_force, gate_prior_warning

LOG_FIELDS = ["type", "seq", "t_wall", "t_window_end", "sample_index", "command", "action", "confidence", "level",
              "probabilities", "latency_ms", "age_ms", "safe", "reason", "sham", "condition_code", "gate"]


@dataclass
class ServeConfig:
    hop_ms: float = 50.0
    max_age_ms: float = 150.0
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    level_classes: tuple[str, str] | None = None
    gate: dict[str, float] = field(default_factory=dict)  # the gate's settings over the metadata's (or the defaults)
    gate_rest_class: str | None = None  # a model without a gate: gate its commands on 1 - P(this class)
    actions: dict[str, str] = field(default_factory=dict)  # class -> grasp|open|hold, beyond the defaults
    rename: str | Mapping[str, str] | None = None  # None: none for live streams, the training rule for replay:
    units: str | None = None  # override the stream's declared units
    on_unit_mismatch: str = "scale"
    max_amplitude_ratio: float = 100.0
    check_seconds: float = 2.0
    artifact_ratio: float = 50.0  # a window peak above this x the training RMS is an artifact (0: off)
    jump_ratio: float = 100.0  # a raw step this many times the typical sample change restarts the filters (0: off)
    subject: str | None = None
    align_seconds: float | None = None
    alignment_path: Path | None = None
    save_alignment: Path | None = None
    cues: str | None = None  # lsl:NAME of a cue marker stream to score decisions against
    console: str | None = None  # HOST:PORT of the operator console
    console_token_file: Path | None = None  # its secret (else $BMI_CONSOLE_TOKEN, else drawn and shown once)
    runs_dir: str | None = None  # runs the console's /runs page lists
    cue_outlet: str = "bmi-cues"  # LSL marker stream of the console's cue onsets
    log_path: Path | None = None
    stats_path: Path | None = None
    duration: float | None = None
    sham: bool = False
    condition_code: str | None = None  # a blinded (planned) session: the log records this code, never the condition
    sham_source: Path | None = None
    sham_seed: int | None = None
    status: bool = True
    allow_remote: bool = False
    token: str | None = None
    resolve_timeout: float = 10.0
    hello_timeout: float = 2.0
    split_mix: bool = True  # the decoder's leading channel mix on samples as they arrive (DecoderSession)
    poll_ahead_ms: float = 0.5  # poll the input from this long before the next chunk is due (pacing.ArrivalPacer)

    def __post_init__(self) -> None:
        for name in ("hop_ms", "max_age_ms", "max_amplitude_ratio", "check_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"'{name.replace('_', '-')}' ({getattr(self, name)}) must be positive.")
        for name in ("artifact_ratio", "jump_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name.replace('_', '-')}' ({getattr(self, name)}) must be >= 0 (0 turns the check off).")
        if not self.poll_ahead_ms >= 0:
            raise ValueError(f"'poll-ahead-ms' ({self.poll_ahead_ms}) must be >= 0 (0: always sleep until woken).")
        if self.max_amplitude_ratio < 1:
            raise ValueError(f"'max-amplitude-ratio' ({self.max_amplitude_ratio}) must be at least 1.")
        if self.on_unit_mismatch not in ("scale", "refuse"):
            raise ValueError(f"'on-unit-mismatch' ({self.on_unit_mismatch!r}) must be 'scale' or 'refuse'.")


def percentiles(values) -> dict[str, float | None]:
    if not len(values):
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}


class Server:
    def __init__(self, model_path: str | Path, input_spec: str, output_specs: list[str], cfg: ServeConfig):
        self.cfg = cfg
        self.events: Counter = Counter()
        self.notices: list[str] = []
        self.decoder = DecoderSession(model_path, split_mix=cfg.split_mix)
        self.meta = meta = self.decoder.meta
        self.classes = meta["classes"]
        self.spec = PreprocessingSpec.from_dict(meta["preprocessing"])
        self.pre = CausalPreprocessor(self.spec)  # refuses zero-phase (offline-only) models
        self.actions = plan_actions(self.classes, cfg.actions)
        if cfg.safety.safe_command is None:
            cfg.safety.safe_command = "rest" if "rest" in self.classes else "hold"
        if cfg.safety.safe_command not in self.classes and cfg.safety.safe_command != "hold":
            raise ValueError(f"'safe-command' ({cfg.safety.safe_command!r}) must be 'hold' or one of the classes {self.classes}.")
        if cfg.level_classes is None:
            cfg.level_classes = level_classes(self.actions)
        for c in cfg.level_classes or ():
            if c not in self.classes:
                raise ValueError(f"'level-classes' names {c!r}, not a class of the model {self.classes}.")
        self.alignment = choose_alignment(meta, cfg.subject, cfg.align_seconds, cfg.alignment_path)
        self.norm = meta["normalization"]
        # filtered samples -> the decoder's window rows: normalised (aligned), and mixed when the decoder's mix runs here
        self._model_rows = self.decoder.rows_from(session_normalizer(self.norm, self.alignment.matrix))
        self._align_data: list[np.ndarray] = []
        self.gate_cfg = gate_in_force(meta, cfg.gate_rest_class, cfg.gate)
        self.gated = self.gate_cfg is not None
        # a rest gate on a decoder without a gate output: the gate is 1 - P(rest class) of each window
        self.rest_gate = self.classes.index(cfg.gate_rest_class) if cfg.gate_rest_class is not None else None
        if self.gated:  # the rest command until the gate opens (GatedSmoother); the level from the gate
            self.smoother = GatedSmoother(self.classes, cfg.smoothing, self.gate_cfg, cfg.level_classes)
        else:
            self.smoother = Smoother(self.classes, cfg.smoothing, cfg.level_classes, hold=cfg.safety.safe_command)
        self.n_times = self.decoder.n_times
        decim = self.spec.decim
        self.hop_in = max(1, int(round(cfg.hop_ms / 1000 * self.spec.sfreq_in)))
        self.flat_samples = max(2, int(round(cfg.safety.flat_ms / 1000 * self.spec.sfreq_in)))
        # the raw checks run on each chunk as it arrives; a decision only reads what they found
        self.flat = FlatDetector(len(self.spec.ch_names), self.flat_samples, cfg.safety.flat_threshold)
        self.jumps = JumpDetector(cfg.jump_ratio) if cfg.jump_ratio else None
        self._flat_seen = False
        rms = np.asarray(self.norm["rms"], dtype=np.float32)
        self._artifact_limit = np.where(rms > 0, cfg.artifact_ratio * rms, np.inf).astype(np.float32)[:, None] \
            if cfg.artifact_ratio else None
        self._window_span = (self.n_times - 1) * decim  # input samples from a window's first to its last
        self._since_artifact = np.inf  # filtered samples after the newest one above the artifact limit
        self.amplitude = AmplitudeCheck(self.norm["rms"], self.spec.ch_names,
                                        int(cfg.check_seconds * self.spec.sfreq_out), cfg.max_amplitude_ratio)
        self.sham = ShamDecoder(self.classes, cfg.hop_ms / 1000, cfg.sham_source, seed=cfg.sham_seed,
                                level_pair=cfg.level_classes, hold=cfg.safety.safe_command,
                                hold_s=cfg.smoothing.dwell_s) if cfg.sham else None
        self.raw_ring = RingBuffer(len(self.spec.ch_names), self.flat_samples)  # the console's channel view only
        # filtered, in the data's units: kept only for the console's view and the alignment's refill
        self.proc_ring = PhaseRings(len(self.spec.ch_names), self.n_times, decim)
        # the same samples normalised as they arrive (the decoder's window is a copy of a view): a decision copies
        # its window instead of normalising it (0.18 -> 0.09 ms at 306 channels, cold caches; an aligned window
        # was 306 x 306 x 250 multiply-adds per decision, now 306 x 306 per sample once); and, when the decoder
        # begins with a channel mix, mixed as they arrive too (DecoderSession.rows_from): K rows, not C channels
        self.model_ring = PhaseRings(self.decoder.window.shape[0], self.n_times, decim)
        self.state = SafetyState()
        self.seq = 0
        self.samples_total = 0
        self.latencies: deque[float] = deque(maxlen=100_000)
        self.ages: deque[float] = deque(maxlen=100_000)
        self.withheld: Counter = Counter()  # hops not decoded, by reason
        self.late_hops = 0
        self.decisions = 0
        self.clock_ahead_max = 0.0
        self.clock_fault_reason: str | None = None  # the last one's
        self._clock_faulty = False  # the last pull failed the clock check: a fault lasts until one passes
        self._last_offset: float | None = None  # the source's clock offset at the last pull (settled estimates)
        self._chunk_seen = [0, 0, 0.0]  # the largest pull this second and the last, and when this second began
        self._since_hop = 0  # samples since the last decision point
        self.superseded_hops = 0  # hop points merged into a later decision (several hops in one chunk)
        self._settle_left = self.spec.settle_out * decim  # input samples; whole decimation steps
        self._running = True
        self._log: SessionLog | None = None
        self._log_base: Path | None = None  # the name of the operator's logs: the first, then -2, -3 ...
        self._next_heartbeat = 0.0
        self._next_layout: Layout | None = None
        self._scored: deque[tuple[float, int, str]] = deque(maxlen=500_000)  # (window end, argmax, command)
        self.estopped = False  # the operator's emergency stop: safe until an explicit resume
        self.console = None
        if self.decoder.split_refused:  # correct either way, only slower: the operator should know
            self.notice(self.decoder.split_refused)
        self.decision_times: deque[float] = deque(maxlen=400)
        self.cue_inlet = self._open_cues(cfg.cues) if cfg.cues else None
        self.outputs = OutputSet(output_specs, self.events, allow_remote=cfg.allow_remote)
        try:
            self.source = open_input(input_spec, validate=self._accept_stream, allow_remote=cfg.allow_remote,
                                     token=cfg.token, resolve_timeout=cfg.resolve_timeout,
                                     hello_timeout=cfg.hello_timeout, events=self.events)
            self.layout: Layout | None = None
            self._connection = 0
            # a replay's samples come when its clock says: its sleep ends on time, nothing to poll for
            self.pacer = ArrivalPacer(cfg.poll_ahead_ms / 1000 if self.source.wakes_on_arrival else 0.0)
            if self.source.description is not None:  # LSL and replay are known now; TCP when a client says hello
                problem = self._accept_stream(self.source.description)
                if problem:
                    raise StreamMismatch(problem)
            if cfg.console:
                from .console.link import ConsoleLink

                self.console = ConsoleLink(self, cfg.console)
                sys.stderr.write(f"bmi serve: operator console: open {self.console.url}\n")
        except BaseException:
            self.outputs.close()
            if self.cue_inlet is not None:
                self.cue_inlet.close()
            raise

    def _open_cues(self, spec: str):
        if not spec.startswith("lsl:") or len(spec) < 5:
            raise ValueError(f"'--cues' ({spec!r}) must be lsl:NAME, an LSL marker stream of the session's cues.")
        from .cues import CueInlet

        events = ((self.meta["run"].get("config") or {}).get("data") or {}).get("events") or {}
        return CueInlet(spec[4:], {str(k): str(v) for k, v in events.items()}, self.classes, self.cfg.resolve_timeout)

    # -- the stream ------------------------------------------------------------------------------------------
    def _rename_rule(self, desc: StreamDescription):
        if self.cfg.rename is not None:
            return self.cfg.rename
        return self.meta["channels"]["rename"] if desc.source.startswith("replay:") else None

    def _accept_stream(self, desc: StreamDescription) -> str | None:
        """Check a stream against the model; keep its layout for the next connection. The problem, or None."""
        try:
            layout = plan_layout(desc, self.meta, rename=self._rename_rule(desc), units=self.cfg.units,
                                 on_unit_mismatch=self.cfg.on_unit_mismatch)
        except StreamMismatch as err:
            return str(err)
        self._next_layout = layout
        return None

    def _on_connection(self) -> None:
        """A new stream connection: its own layout, filters from the start, the amplitude checked again."""
        self._connection = self.source.connection
        self.layout = self._next_layout
        self._scale = self.layout.scale[:, None] if (self.layout.scale != 1).any() else None
        identity = np.array_equal(self.layout.order, np.arange(len(self.layout.order)))
        self._order = None if identity else self.layout.order  # the stream in the model's order: nothing to gather
        for note in self.layout.notes:
            self.notice(f"{self.source.description.source}: {note}")
        self.amplitude.restart()
        self.pacer.restart()
        if self._connection > 1:
            self.events["stream_connections"] += 1
            self._enter_safe("new_connection")
        self._reset_pipeline()

    def notice(self, text: str) -> None:
        """Something the operator must know: stderr, the stats and the console's event log."""
        self.notices.append(text)
        sys.stderr.write(f"\nbmi serve: {text}\n")
        if self.console is not None:
            self.console.event(text)

    def _reset_pipeline(self) -> None:
        """After a gap, bad data or a new connection the filters restart (settled state for the next sample)
        and decisions wait for them to settle and for the window to refill with clean data."""
        self.pre.reset()
        self.raw_ring.clear()
        self.proc_ring.clear()
        self.model_ring.clear()
        self._since_hop = 0
        self._settle_left = self.spec.settle_out * self.spec.decim
        self.smoother.reset()
        self.flat.reset()
        self._flat_seen = False
        if self.jumps is not None:
            self.jumps.reset()
        self._since_artifact = np.inf

    # -- messages --------------------------------------------------------------------------------------------
    def _emit(self, msg: dict[str, Any]) -> None:
        self.outputs.send(msg, encode(msg))
        self._log_row(msg)
        if self.console is not None:
            self.console.publish(msg)

    def _log_row(self, msg: dict[str, Any]) -> None:
        if self._log is not None:
            blinded = self.cfg.condition_code is not None  # only the key file turns the code into the condition
            self._log.write(dict(msg, sham="" if blinded else int(self.cfg.sham), condition_code=self.cfg.condition_code or "",
                                 probabilities=json.dumps(msg.get("probabilities")), safe=int(msg["safe"])))

    def _safe_message(self, kind: str, reason: str) -> dict[str, Any]:
        self.seq += 1
        return {"type": kind, "seq": self.seq, "t_wall": time.time(), "t_window_end": None,
                "sample_index": self.samples_total, "command": self.cfg.safety.safe_command, "action": SAFE_ACTION,
                "confidence": None, "level": 0.0, "probabilities": None, "latency_ms": None, "age_ms": None,
                "safe": True, "reason": reason}

    def _enter_safe(self, reason: str) -> None:
        """Safe now; decoding restarts from hold: the smoothing and the gate forget what came before, so the
        first movement after it needs the full dwell again (as after the start)."""
        self.smoother.reset()
        if self.sham is not None:
            self.sham.reset()
        if self.state.enter(reason):
            self._emit(self._safe_message("safe", reason))
            self._next_heartbeat = time.monotonic() + self.cfg.hop_ms / 1000

    # -- decoding ------------------------------------------------------------------------------------------
    def _withheld_reason(self) -> str | None:
        """Why the newest window may not be decoded yet (other than its age), or None."""
        if self.amplitude.failures and not self.amplitude.passed:
            return "amplitude"
        if self._settle_left or self.model_ring.count < self.n_times:
            return "settling"
        if not self.amplitude.passed:
            return "checking_amplitude"
        if self.alignment.estimate_samples:
            return "aligning"
        return None

    def _restart_reason(self) -> str | None:
        """Raw data since the last hop that make the filter state worthless: start again, as after a dropout."""
        flat, self._flat_seen = self._flat_seen, False
        jump = self.jumps is not None and self.jumps.check()
        if flat:
            return "flat"  # a stuck amplifier or a lost electrode
        if jump:
            return "jump"  # restarted filters settle at the new level instead of ringing for a second
        return None

    def _hop(self, t_window_end: float, t_received: float) -> None:
        restart = self._restart_reason()
        if self.estopped:  # the operator's stop outranks every other reason; the data are still watched
            self.withheld["emergency_stop"] += 1
            self._enter_safe("emergency_stop")
            if restart is not None:
                self._reset_pipeline()
            return
        if restart is not None:
            self.withheld[restart] += 1
            self._enter_safe(restart)
            self._reset_pipeline()
            return
        reason = self._withheld_reason()
        if reason is None and (self.source.clock() - t_window_end) * 1000 > self.cfg.max_age_ms:
            reason = "late"  # a backlog: filtered (state kept) but never decoded
        if reason is None and self._since_artifact <= self._window_span:
            reason = "artifact"
        if reason is not None:
            self.withheld[reason] += 1
            self._enter_safe(reason)
            return
        # every decim-th normalised sample up to the newest (a view), copied into the decoder's input
        np.copyto(self.decoder.window, self.model_ring.latest(self.n_times))
        probs = self.decoder.predict()
        gate = self.decoder.gate if self.rest_gate is None else 1.0 - float(probs[self.rest_gate])
        if self.sham is not None:  # the decoder still runs, so timing is identical; its output is not used
            fake = self.sham.next()
            command, confidence, level, probs = fake["command"], fake["confidence"], fake["level"], fake["probabilities"]
            holding = fake.get("holding", False)
            if self.gated:  # the wire carries a gate either way; a sham's is its own rest probability's complement
                gate = 1.0 - float(probs[self.classes.index(self.gate_cfg.rest_class)])
        elif self.gated:
            command, confidence, level, _ = self.smoother.update(probs, self.samples_total / self.spec.sfreq_in, gate)
            holding = self.smoother.holding
        else:
            # dwell counts stream time on the sample clock: a burst of windows cannot cross it
            command, confidence, level, _ = self.smoother.update(probs, self.samples_total / self.spec.sfreq_in)
            holding = self.smoother.holding
        age = (self.source.clock() - t_window_end) * 1000
        if age > self.cfg.max_age_ms:  # decoded too late to act on
            self.withheld["late"] += 1
            self._enter_safe("late")
            return
        if self.state.safe:
            self.events[f"resumed_after_{self.state.reason}"] += 1
            self.state.clear()
        latency = (time.monotonic() - t_received) * 1000
        self.latencies.append(latency)
        self.ages.append(age)
        self.decision_times.append(time.monotonic())
        self._scored.append((t_window_end, int(np.argmax(probs)), command))
        self.decisions += 1
        if latency > self.cfg.hop_ms:
            self.late_hops += 1
        self.seq += 1
        msg = {"type": "decision", "seq": self.seq, "t_wall": time.time(), "t_window_end": round(t_window_end, 6),
               "sample_index": self.samples_total, "command": command,
               # from hold until a movement earned the dwell, whatever the held class is mapped to
               "action": SAFE_ACTION if holding else self.actions[command],
               "confidence": round(confidence, 6), "level": round(level, 6),
               "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, probs)},
               "latency_ms": round(latency, 3), "age_ms": round(age, 3), "safe": False, "reason": ""}
        if self.gated:
            msg["gate"] = round(float(gate), 6)
        self._emit(msg)

    def _watch_artifacts(self, out: np.ndarray) -> None:
        """Track the newest filtered sample above the artifact limit (a window holding it is not decoded)."""
        if self._artifact_limit is None:
            return
        over = np.abs(out) > self._artifact_limit
        if over.any():
            self._since_artifact = out.shape[1] - 1 - np.flatnonzero(over.any(axis=0))[-1]
        else:
            self._since_artifact += out.shape[1]

    def _settled(self, out: np.ndarray) -> np.ndarray:
        """Drop the filters' settling samples (input rate) after a (re)start."""
        if self._settle_left:
            drop = min(self._settle_left, out.shape[1])
            self._settle_left -= drop
            out = out[:, drop:]
        return out

    def _calibrate(self, out: np.ndarray) -> None:
        """The first settled samples of a connection (at the model's rate, decimated from the first settled
        sample on, as offline) check the amplitude and may estimate the alignment."""
        failure = self.amplitude.add(out)
        if failure:
            self.events["amplitude_mismatch"] += 1
            if self.amplitude.failures == 1 or self.amplitude.failures % 10 == 0:
                self.notice(failure)
        if self.alignment.estimate_samples:
            self._align_data.append(out.copy())
            if sum(d.shape[1] for d in self._align_data) >= self.alignment.estimate_samples:
                data = np.concatenate(self._align_data, axis=1)[:, : self.alignment.estimate_samples]
                matrix = estimate_alignment(data, self.n_times)
                self._model_rows = self.decoder.rows_from(session_normalizer(self.norm, matrix))
                self.model_ring.refill(self.proc_ring, self._model_rows)  # what it held was normalised unaligned
                self.alignment.matrix, self.alignment.estimate_samples, self._align_data = matrix, 0, []
                if self.cfg.save_alignment is not None:
                    try:
                        save_alignment(self.cfg.save_alignment, matrix, self.meta, self.cfg.align_seconds)
                    except OSError as err:
                        self.notice(f"could not save the alignment to {self.cfg.save_alignment}: {err}")
                self.notice(f"alignment estimated from the first {self.cfg.align_seconds:g} s; decoding starts")

    def _feed(self, chunk: np.ndarray, t_last: float, t_received: float) -> None:
        if self._order is not None:
            chunk = chunk[self._order]
        if self._scale is not None:
            chunk = chunk * self._scale
        problem = check_chunk(chunk, self.cfg.safety)
        if problem:
            self.events[f"discarded_samples_{problem}"] += chunk.shape[1]
            self.samples_total += chunk.shape[1]
            self._enter_safe(problem)
            self._reset_pipeline()
            return
        n = chunk.shape[1]
        if self.console is not None:
            self.raw_ring.append(chunk)
        self._flat_seen |= self.flat.add(chunk)
        if self.jumps is not None:
            self.jumps.add(chunk)
        out = self._settled(self.pre.filter(chunk).astype(np.float32))
        if out.shape[1]:
            if self.console is not None or self.alignment.estimate_samples:  # its only readers: view, refill
                self.proc_ring.append(out)
            self.model_ring.append(self._model_rows(out))
            self._watch_artifacts(out)
            self._calibrate(self.pre.decimate(out))  # may estimate the alignment: the model ring is then refilled
        self.samples_total += n
        self._since_hop += n
        if self._since_hop >= self.hop_in:  # decide once, on the newest window: older hops in this chunk are superseded
            self.superseded_hops += self._since_hop // self.hop_in - 1
            self._since_hop %= self.hop_in
            self._hop(t_last, t_received)  # the window ends at the newest sample

    # -- the loop --------------------------------------------------------------------------------------------
    def _pull(self, now: float) -> bool:
        """Pull what has arrived and feed it; True when samples came."""
        try:
            chunk, ts = self.source.pull()
        except Exception as err:  # a stream library error must not end a session
            self.events[f"input_error_{type(err).__name__}"] += 1
            return False
        if self.source.connection != self._connection:
            self._last_offset, self._clock_faulty = None, False  # a new sender: a new clock
            self._on_connection()
        if not chunk.shape[1] or self.layout is None:
            return False
        local_now = self.source.clock()
        if ts is None:
            ts = local_now
        problem = self._clock_problem(ts, local_now, chunk.shape[1], now)
        if problem is not None:
            self._clock_fault(problem, chunk.shape[1])
            return True
        self._clock_faulty = False
        self._feed(chunk, min(ts, local_now), now)  # a tolerated lead is clamped: never acquired after arrival
        return True

    def _clock_problem(self, ts: float, local_now: float, n: int, now: float) -> str | None:
        """Why this pull's timestamps cannot be trusted, or None: they run ahead of our clock by more than
        AHEAD_TOLERANCE_S plus one of the sender's chunks (mne-lsl's PlayerLSL stamps each chunk with the time its
        last sample is due: one chunk ahead; its chunk size is the largest pull of the last 1-2 s, as a chunk
        may come in two pulls), capped at the freshness limit; or the source's clock offset moved by more
        than the freshness limit since the last pull, either way (a sender clock step, or liblsl's correction
        jumping): ages across such a move are wrong by the move."""
        limit = self.cfg.max_age_ms / 1000
        lead = ts - local_now
        self.clock_ahead_max = max(self.clock_ahead_max, lead)
        seen = self._chunk_seen
        if now - seen[2] > 1.0:
            seen[:] = [0, seen[0], now]
        seen[0] = max(seen[0], n)
        allowed = AHEAD_TOLERANCE_S + min(max(seen[0], seen[1]) / self.source.description.sfreq, limit)
        problem = None
        if lead > allowed:
            problem = f"timestamps {lead * 1000:.1f} ms ahead of this computer's clock (tolerated {allowed * 1000:.1f} ms)"
        offset = getattr(self.source, "clock_offset", None)
        if offset is not None and getattr(self.source, "clock_settled", True):
            if self._last_offset is not None and abs(offset - self._last_offset) > limit:
                problem = problem or (f"the sender's clock offset jumped by {(offset - self._last_offset) * 1000:+.1f} "
                                      f"ms (more than --max-age-ms {self.cfg.max_age_ms:g})")
            self._last_offset = offset
        return problem

    def _clock_fault(self, problem: str, n: int) -> None:
        """Safe, the chunk discarded and the filters restarted: decoding resumes only on data whose clock passes
        again, once the filters have settled. One fault (one notice) until a pull passes."""
        self.events["discarded_samples_clock"] += n
        self.samples_total += n
        if not self._clock_faulty:
            self._clock_faulty = True
            self.clock_fault_reason = problem
            self.events["clock_fault"] += 1
            self.notice(f"clock fault: {problem}; safe until fresh data")
            self._reset_pipeline()
        self._enter_safe("clock")

    def _watchdog(self, now: float, last_data: float) -> None:
        if (now - last_data) * 1000 > self.cfg.safety.stale_ms and not (self.state.safe and self.state.reason == "stale"):
            self._enter_safe("stale")
            self._reset_pipeline()
            self.pacer.restart()

    def _heartbeat(self, now: float) -> None:
        if self.state.safe and now >= self._next_heartbeat:
            self._emit(self._safe_message("heartbeat", self.state.reason))
            self._next_heartbeat = now + self.cfg.hop_ms / 1000

    def _drain_input_notices(self) -> None:
        notices = getattr(self.source, "notices", None)
        while notices:
            self.notice(notices.popleft())

    def run(self) -> dict[str, Any]:
        cfg = self.cfg
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)
        if cfg.log_path is not None:
            self._log = SessionLog(cfg.log_path, LOG_FIELDS)
        started, cpu_started = time.monotonic(), time.process_time()
        last_data, self._next_heartbeat, next_status, next_cues = started, started, started + 1.0, started
        self.outputs.announce(cfg.safety.stale_ms, cfg.hop_ms)  # the controller timeout, on every message (outputs.py)
        self._emit(self._safe_message("safe", "starting"))
        if self.gated and (warning := gate_prior_warning(self.gate_cfg, self.classes)):
            self.notice(warning)
        try:
            while self._running:
                now = time.monotonic()
                if cfg.duration is not None and now - started >= cfg.duration:
                    break
                got = self._pull(now)
                if got:
                    last_data = now
                    self.pacer.arrived(now)
                else:
                    self._watchdog(now, last_data)
                self._heartbeat(now)
                self._drain_input_notices()
                if self.cue_inlet is not None and now >= next_cues:
                    self._pull_cues()
                    next_cues = now + 0.1
                if self.console is not None:
                    self.console.tick(now)
                if cfg.status and now >= next_status:
                    self._status(now - started)
                    next_status = now + 1.0
                if not got:  # wait for the next samples (woken as they arrive), never past the next duty,
                    now = time.monotonic()  # or poll for them while the next chunk is due
                    if self.pacer.poll_now(now):
                        yield_core()  # between polls, the stream library's receiving thread may need this core
                        continue
                    duty = min(self._next_heartbeat if self.state.safe else now + 0.005, now + 0.005)
                    self.source.wait(max(0.0, self.pacer.wake_at(now, duty) - now))
        finally:
            self._shutdown()
        stats = self.stats(time.monotonic() - started)
        stats["cpu_share"] = round((time.process_time() - cpu_started) / max(stats["seconds"], 1e-9), 4)  # of one core
        if cfg.stats_path is not None:
            cfg.stats_path.write_text(json.dumps(stats, indent=2))
        return stats

    def _pull_cues(self) -> None:
        try:
            self.cue_inlet.pull()
        except Exception as err:  # the cue stream is for scoring only: never end a session over it
            self.events[f"cue_input_error_{type(err).__name__}"] += 1

    def stop(self, *_: Any) -> None:
        self._running = False

    def _shutdown(self) -> None:
        msg = self._safe_message("stop", "shutdown")
        self.outputs.final(msg, encode(msg))  # the safe command goes out last, on every output
        self._log_row(msg)
        self.outputs.close()
        try:
            self.source.close()
        except Exception:
            pass
        if self._log is not None:
            self._log.close()
        if self.cue_inlet is not None:
            self._pull_cues()
            self.cue_inlet.close()
        if self.console is not None:
            self.console.close()
        if self.cfg.status:
            sys.stderr.write("\n")

    # -- the operator's actions (the console's controls) --------------------------------------------------------
    def emergency_stop(self) -> str:
        """Safe at once, and until an explicit :meth:`resume`."""
        if not self.estopped:
            self.estopped = True
            self.events["emergency_stop"] += 1
            self._enter_safe("emergency_stop")  # the safe message goes out now, not at the next hop
            self.notice("EMERGENCY STOP by the operator: safe until resumed")
        return "stopped"

    def resume(self) -> str:
        if self.estopped:
            self.estopped = False
            self.notice("resumed by the operator: decoding restarts from hold; a movement needs the full dwell on "
                        "windows that pass every check")
        return "resumed"

    @property
    def log_active(self) -> bool:
        return self._log is not None and self._log.error is None

    def start_log(self) -> tuple[bool, str]:
        if self._log is None or self._log.error is not None:  # none, or one that failed: a new file
            base = self._log_base = self._log_base or self.cfg.log_path or \
                Path(f"session-{time.strftime('%Y%m%d-%H%M%S')}.csv")
            path, number = base, 1
            while path.exists():  # a log stopped earlier in this session is kept, never overwritten
                number += 1
                path = base.with_name(f"{base.stem}-{number}{base.suffix}")
            self._log = SessionLog(path, LOG_FIELDS, open_now=False)  # opened by its thread: no disk wait here
            self.cfg.log_path = path
        return True, f"logging to {self.cfg.log_path}"

    def stop_log(self) -> str:
        if self._log is not None:
            self._log.close(wait=False)  # its thread writes what is queued and closes the file: no wait here
            self._log = None
        return "session log closed"

    def _note(self, kind: str, reason: str) -> dict[str, Any]:
        self.seq += 1
        msg = {"type": kind, "seq": self.seq, "t_wall": time.time(), "sample_index": self.samples_total,
               "command": "", "action": "", "level": 0.0, "safe": self.state.safe, "reason": reason}
        self._log_row(msg)
        return msg

    def mark(self, label: str) -> str:
        """An event mark: in the session log and on the LSL marker outputs (never to a hand)."""
        msg = self._note("mark", label)
        self.outputs.send_markers(msg, encode(msg))
        return f"marked {label!r}"

    def unblind(self) -> bool:
        """Reveal the condition; the unblinding itself is logged. Returns whether the session is sham."""
        self._note("unblind", "sham" if self.cfg.sham else "real")
        return self.cfg.sham

    # -- reporting -------------------------------------------------------------------------------------------
    def gate_settings(self) -> dict[str, Any] | None:
        """The gate in force and where it comes from (the model's own, or a rest gate on a class), or None."""
        if not self.gated:
            return None
        return dataclasses.asdict(self.gate_cfg) | {"source": "model" if self.rest_gate is None else "rest_class"}

    def stats(self, seconds: float) -> dict[str, Any]:
        ratio = self.amplitude.last_ratio
        return {
            "seconds": round(seconds, 3), "decisions": self.decisions, "samples_received": self.samples_total,
            "hop_samples": self.hop_in, "late_hops": self.late_hops, "superseded_hops": self.superseded_hops,
            "latency_ms": percentiles(self.latencies),
            "age_ms": percentiles(self.ages), "max_age_ms": self.cfg.max_age_ms,
            "withheld_hops": dict(self.withheld),
            "clock": {"timestamps_ahead_ms_max": round(self.clock_ahead_max * 1000, 3),
                      "offset_s": getattr(self.source, "clock_offset", None),
                      "ahead_tolerance_ms": AHEAD_TOLERANCE_S * 1000,
                      "faults": self.events["clock_fault"], "last_fault": self.clock_fault_reason},
            "settle_seconds": self.spec.settle_samples / self.spec.sfreq_in,
            "amplitude": {"passed": self.amplitude.passed, "failures": self.amplitude.failures,
                          "ratio_min": float(ratio.min()) if ratio is not None else None,
                          "ratio_max": float(ratio.max()) if ratio is not None else None},
            "alignment": self.alignment.source,
            # the rows of the decoder's window: the channels, or the leading channel mix run on arrival
            "decoder_input": {"channels": self.decoder.n_chans, "rows": int(self.decoder.window.shape[0]),
                              "channel_mix_on_arrival": self.decoder.mix is not None},
            # how the loop met the chunks: their pace, and how many came while it was polling for them
            "input_pacing": {"poll_ahead_ms": self.pacer.ahead_s * 1000, "chunk_interval_ms": self.pacer.interval_ms,
                             "chunks": self.pacer.chunks, "chunks_met_polling": self.pacer.in_window},
            "actions": self.actions,
            "gate": self.gate_settings(),
            "outputs": self.outputs.stats,
            "session_log": None if self._log is None else {"rows": self._log.rows_written, "error": self._log.error},
            "cues": self._cue_scores(),
            "notices": self.notices,
            "events": dict(self.state.events) | dict(self.events),
            "sham": None if self.cfg.condition_code is not None else self.cfg.sham,  # blinded: the code only
            "condition_code": self.cfg.condition_code,
        }

    def _cue_scores(self) -> dict[str, Any] | None:
        if self.cue_inlet is None:
            return None
        from .cues import score_cues

        window = self.meta["window"]
        scores = score_cues(list(self._scored), self.cue_inlet.cues, self.classes, window["tmin"], window["tmax"],
                            self.cfg.hop_ms / 1000)
        return scores | {"unmatched_labels": self.cue_inlet.unmatched}

    def _status(self, elapsed: float) -> None:
        lat = list(self.latencies)[-200:]
        age = list(self.ages)[-200:]
        p = lambda v, q: f"{np.percentile(v, q):5.1f}" if v else "  -  "  # noqa: E731
        sys.stderr.write(
            f"\r[{elapsed:6.1f} s] {self.decisions / max(elapsed, 1e-9):5.1f} dec/s | latency p50 {p(lat, 50)} "
            f"p99 {p(lat, 99)} ms | age p50 {p(age, 50)} ms | withheld {sum(self.withheld.values())} | "
            f"{'SAFE (' + self.state.reason + ')' if self.state.safe else 'decoding'}   "
        )
        sys.stderr.flush()
