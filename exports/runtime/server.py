"""The real-time decoding loop: a live stream in -> the decision chain -> every controller out.

One thread, no waiting on the stream: every pass pulls what has arrived and feeds it to the decision chain
(:mod:`.chain`: the SAME causal preprocessing as training, the safety checks on the data, the decoder, smoothing,
gate and actions, shared with ``bmi rehearse``); once a hop of samples (on the stream's sample clock) has arrived
the chain decodes the newest window, the one ending at the newest sample, so a decision never waits for a hop
boundary inside a chunk. Between chunks the loop sleeps until the input wakes it, or polls from shortly before
the next chunk is due (:mod:`.pacing`).

What a live stream adds to a recording, and this loop checks, is a connection (each checked against the model:
channels, rate, units; :mod:`.layout`), a sender's clock (:meth:`Server._clock_problem`), a window's age on the
local clock (no window older than ``max_age_ms`` is decoded or sent: a backlog after a stall is filtered, to keep
the filter state, never decoded), a stream that stops (``stale_ms``), and the operator's emergency stop. The safe
state is the default, left only for a window that passed all of it.

Every output gets every message independently of the others, the session log is written by a thread,
and SIGINT/SIGTERM send the safe command last on every output.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import time
from collections import Counter, deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from .actions import SAFE_ACTION
from .alignment import choose_alignment, save_alignment
from .chain import ChainConfig, CommandChain, SignalChain
from .clock import AHEAD_TOLERANCE_S
from .inputs import open_input
from .layout import Layout, StreamDescription, StreamMismatch, plan_layout
from .model import DecoderSession
from .outputs import OutputSet, encode
from .pacing import ArrivalPacer, yield_core
from .safety import SafetyState
from .session_log import SessionLog
from .smoothing import gate_prior_warning
from .stats import percentiles
from .terminal import NOTICES as log, STATUS as status_log

LOG_FIELDS = ["type", "seq", "t_wall", "t_window_end", "sample_index", "command", "action", "confidence", "level",
              "probabilities", "latency_ms", "age_ms", "safe", "reason", "sham", "condition_code", "gate"]


@dataclass
class ServeConfig(ChainConfig):
    """``bmi serve``'s settings: the decision chain's (:class:`~exports.runtime.chain.ChainConfig`) and the live
    stream's, the outputs', the console's and the session's."""

    max_age_ms: float = 150.0
    rename: str | Mapping[str, str] | None = None  # None: none for live streams, the training rule for replay:
    units: str | None = None  # override the stream's declared units
    on_unit_mismatch: str = "scale"
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
    condition_code: str | None = None  # a blinded (planned) session: the log records this code, never the condition
    status: bool = True
    allow_remote: bool = False
    token: str | None = None
    resolve_timeout: float = 10.0
    hello_timeout: float = 2.0
    split_mix: bool = True  # the decoder's leading channel mix on samples as they arrive (DecoderSession)
    poll_ahead_ms: float = 0.5  # poll the input from this long before the next chunk is due (pacing.ArrivalPacer)

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.max_age_ms > 0:
            raise ValueError(f"'max-age-ms' ({self.max_age_ms}) must be positive.")
        if not self.poll_ahead_ms >= 0:
            raise ValueError(f"'poll-ahead-ms' ({self.poll_ahead_ms}) must be >= 0 (0: always sleep until woken).")
        if self.on_unit_mismatch not in ("scale", "refuse"):
            raise ValueError(f"'on-unit-mismatch' ({self.on_unit_mismatch!r}) must be 'scale' or 'refuse'.")


class Server:
    """``bmi serve``: one model, one live input, every output, until stopped.

    Construction loads the model, plans the decision chain, opens the outputs and connects the input; a stream
    known at once (LSL, replay) is checked against the model here, a TCP client when it says hello. Nothing
    is decoded before :meth:`run`. If any of it fails, what was opened is closed again and the error raised.

    Parameters
    ----------
    model_path : str or Path
        An ONNX file written by ``bmi export`` (its metadata says the channels, rate, units, preprocessing and
        classes the stream is checked and processed against).
    input_spec : str
        ``lsl:NAME[?source_id=ID]``, ``tcp://HOST:PORT`` or ``replay:FILE`` (:func:`~exports.runtime.inputs.open_input`).
    output_specs : list of str
        ``udp://``, ``tcp://``, ``serial:`` or ``lsl:`` outputs (:func:`~exports.runtime.outputs.open_output`);
        each gets every message.
    cfg : ServeConfig
        The settings; ``cfg.safety.safe_command`` is set here to the safe command the model allows.

    Raises
    ------
    StreamMismatch
        The stream's channels, rate or units cannot feed the model (:mod:`~exports.runtime.layout`).
    ValueError
        An unknown or malformed input or output spec, a non-loopback address without ``allow_remote`` (and a
        token for listening), settings that disagree with the model, or a model the runtime cannot run
        (zero-phase filtering, a corrupt file).
    FileNotFoundError
        The model or the replay file does not exist.
    RuntimeError
        No LSL stream of that name, or several; a serial device that cannot be opened.
    """

    def __init__(self, model_path: str | Path, input_spec: str, output_specs: list[str], cfg: ServeConfig):
        self.cfg = cfg
        self.events: Counter = Counter()
        self.notices: list[str] = []
        self.decoder = DecoderSession(model_path, split_mix=cfg.split_mix)
        self.meta = meta = self.decoder.meta
        self.classes = meta["classes"]
        self.commands = CommandChain(meta, cfg)
        cfg.safety.safe_command = self.commands.safe_command  # the safe messages carry it
        self.actions = self.commands.actions
        self.alignment = choose_alignment(meta, cfg.subject, cfg.align_seconds, cfg.alignment_path)
        self.chain = SignalChain(self.decoder, cfg, self.alignment, events=self.events, notice=self.notice,
                                 on_aligned=self._aligned, views=bool(cfg.console))
        self.spec = self.chain.spec
        self.trained_on = {"kind": "recordings", "filter_start": "recording_start", **(meta.get("source") or {})}
        self.state = SafetyState()
        self.seq = 0
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
        if (trained_on := self.trained_on["filter_start"]) != "recording_start":  # cut trials: say what differs online
            self.notice("the model was trained on cut trials " + (
                "that came filtered: the server applies no filter, so the stream must arrive filtered the same way"
                if trained_on == "preprocessed" else
                "filtered from each trial's start; here the filters run continuously from the stream's start, "
                "so windows agree with training once both have settled (docs: data/epochs_files)"))
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
                log.info("operator console: open %s", self.console.url)
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
        self.pacer.restart()
        if self._connection > 1:
            self.events["stream_connections"] += 1
            self._enter_safe("new_connection")
        self.commands.reset()
        self.chain.new_session()

    def notice(self, text: str) -> None:
        """Something the operator must know: the status log (stderr by default), the stats and the console's
        event log."""
        self.notices.append(text)
        log.warning(text)
        if self.console is not None:
            self.console.event(text)

    def _reset_pipeline(self) -> None:
        """After a gap, bad data or a new connection the chain restarts from hold."""
        self.chain.restart()
        self.commands.reset()

    @property
    def samples_total(self) -> int:
        """Samples taken from the stream so far, refused ones included: the stream's sample index."""
        return self.chain.samples

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
        """Safe now; decoding restarts from hold (:meth:`CommandChain.reset`): the first movement after it needs
        the full dwell again (as after the start)."""
        self.commands.reset()
        if self.state.enter(reason):
            self._emit(self._safe_message("safe", reason))
            self._next_heartbeat = time.monotonic() + self.cfg.hop_ms / 1000

    # -- decoding ------------------------------------------------------------------------------------------
    def _aligned(self, matrix: np.ndarray) -> None:
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
        problem = self.chain.feed(chunk)
        if problem:
            self._enter_safe(problem)
        elif self.chain.hop_due():
            self._hop(t_last, t_received)  # the window ends at the newest sample

    def _hop(self, t_window_end: float, t_received: float) -> None:
        max_age_s = self.cfg.max_age_ms / 1000
        window = self.chain.window(stopped=self.estopped, age_s=lambda: self.source.clock() - t_window_end,
                                   max_age_s=max_age_s)
        if window.reason is not None:
            self.withheld[window.reason] += 1
            self._enter_safe(window.reason)
            return
        decision = self.commands.decide(window.probabilities, window.gate, self.chain.t)
        age = self.source.clock() - t_window_end
        if age > max_age_s:  # decoded too late to act on
            self.withheld["late"] += 1
            self._enter_safe("late")
            return
        if self.state.safe:
            self.events[f"resumed_after_{self.state.reason}"] += 1
            self.state.clear()
        latency = (time.monotonic() - t_received) * 1000
        self.latencies.append(latency)
        self.ages.append(age * 1000)
        self.decision_times.append(time.monotonic())
        self._scored.append((t_window_end, int(np.argmax(decision.probabilities)), decision.command))
        self.decisions += 1
        if latency > self.cfg.hop_ms:
            self.late_hops += 1
        self.seq += 1
        msg = {"type": "decision", "seq": self.seq, "t_wall": time.time(), "t_window_end": round(t_window_end, 6),
               "sample_index": self.samples_total, "command": decision.command, "action": decision.action,
               "confidence": round(decision.confidence, 6), "level": round(decision.level, 6),
               "probabilities": {c: round(float(p), 6) for c, p in zip(self.classes, decision.probabilities)},
               "latency_ms": round(latency, 3), "age_ms": round(age * 1000, 3), "safe": False, "reason": ""}
        if self.commands.gated:
            msg["gate"] = round(decision.gate, 6)
        self._emit(msg)

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
        self.chain.discard(n, "clock")
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
        """Decode until :meth:`stop` (SIGINT, SIGTERM) or ``cfg.duration`` seconds; returns the session's stats.

        Installs the signal handlers, opens the session log, sends the safe message ``starting`` first and the
        safe message ``stop`` last on every output (also when the loop raises), and writes the stats to
        ``cfg.stats_path`` when set.

        Returns
        -------
        dict
            :meth:`stats`, plus ``cpu_share``: the process's CPU time over the session's wall time (of one core).
        """
        cfg = self.cfg
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self.stop)
        if cfg.log_path is not None:
            self._log = SessionLog(cfg.log_path, LOG_FIELDS)
        started, cpu_started = time.monotonic(), time.process_time()
        last_data, self._next_heartbeat, next_status, next_cues = started, started, started + 1.0, started
        self.outputs.announce(cfg.safety.stale_ms, cfg.hop_ms)  # the controller timeout, on every message (outputs.py)
        self._emit(self._safe_message("safe", "starting"))
        if self.commands.gated and (warning := gate_prior_warning(self.commands.gate_cfg, self.classes)):
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
        """End :meth:`run` after the current pass (a signal handler: takes and ignores its arguments)."""
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
            status_log.info("\n")  # the status line ends

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
        """Lift an :meth:`emergency_stop`. Decoding restarts from hold: a movement needs the full dwell on
        windows that pass every check, so the hand does not move at once. Returns the console's reply."""
        if self.estopped:
            self.estopped = False
            self.notice("resumed by the operator: decoding restarts from hold; a movement needs the full dwell on "
                        "windows that pass every check")
        return "resumed"

    @property
    def log_active(self) -> bool:
        """Whether a session log is open and has not failed."""
        return self._log is not None and self._log.error is None

    def start_log(self) -> tuple[bool, str]:
        """Start a session log from the console, if none is being written.

        The file is ``cfg.log_path`` or ``session-YYYYmmdd-HHMMSS.csv``, numbered ``-2``, ``-3`` ... rather than
        overwrite an existing one; the writer thread opens it, so the loop never waits on a disk (a failure shows
        in :attr:`log_active` and the stats). Returns ``(True, message)`` for the console.
        """
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
        """Close the session log without waiting (its thread writes what is queued); returns the console's reply."""
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
        if not self.commands.gated:
            return None
        source = "model" if self.commands.rest_gate is None else "rest_class"
        return dataclasses.asdict(self.commands.gate_cfg) | {"source": source}

    def stats(self, seconds: float) -> dict[str, Any]:
        """The session's report (what ``--stats`` writes), JSON-ready.

        Decisions and samples, latency and age percentiles (ms), withheld hops by reason, the clock checks, the
        amplitude check, the alignment, the decoder's input, the input pacing, the actions and gate in force,
        per-output counts, the session log, cue scores (with ``--cues``), notices and events. A blinded session
        (``condition_code``) reports the code only, never whether it was sham.

        Parameters
        ----------
        seconds : float
            The session's duration so far (wall clock), for the report and the rates.
        """
        amplitude, ratio = self.chain.amplitude, self.chain.amplitude.last_ratio
        return {
            "seconds": round(seconds, 3), "decisions": self.decisions, "samples_received": self.samples_total,
            "hop_samples": self.chain.hop, "late_hops": self.late_hops, "superseded_hops": self.chain.superseded_hops,
            "latency_ms": percentiles(self.latencies),
            "age_ms": percentiles(self.ages), "max_age_ms": self.cfg.max_age_ms,
            "withheld_hops": dict(self.withheld),
            "clock": {"timestamps_ahead_ms_max": round(self.clock_ahead_max * 1000, 3),
                      "offset_s": getattr(self.source, "clock_offset", None),
                      "ahead_tolerance_ms": AHEAD_TOLERANCE_S * 1000,
                      "faults": self.events["clock_fault"], "last_fault": self.clock_fault_reason},
            "settle_seconds": self.spec.settle_samples / self.spec.sfreq_in,
            "amplitude": {"passed": amplitude.passed, "failures": amplitude.failures,
                          "ratio_min": float(ratio.min()) if ratio is not None else None,
                          "ratio_max": float(ratio.max()) if ratio is not None else None},
            "alignment": self.alignment.source,
            "trained_on": self.trained_on,
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
        status_log.info(
            f"\r[{elapsed:6.1f} s] {self.decisions / max(elapsed, 1e-9):5.1f} dec/s | latency p50 {p(lat, 50)} "
            f"p99 {p(lat, 99)} ms | age p50 {p(age, 50)} ms | withheld {sum(self.withheld.values())} | "
            f"{'SAFE (' + self.state.reason + ')' if self.state.safe else 'decoding'}   "
        )
