"""The one decision chain: from samples in the model's channel order and units to the hand's command.

``bmi serve`` feeds it a live source, after its own checks of the connection, the sender's clock and each
window's age on the local clock; ``bmi rehearse``, the demo and the gate benchmarks feed it a recording one hop
at a time (:mod:`.closed_loop`), without sockets or a wall clock. Everything in between is here, once, so what a
rehearsal reports is what the rig would have done:

- :class:`SignalChain`, samples -> windows: the raw checks (non-finite or saturated chunks, flat channels, steps),
  the causal preprocessing of :mod:`datasets.dsp` with its settling time, the amplitude check against training,
  the session's alignment, the phase rings, the artifact check on the band-passed samples, and at every hop the
  newest window through the decoder, or the reason it may not be decoded.
- :class:`CommandChain`, probabilities -> command: the smoothing, the gate (a gated decoder's, or a rest gate on a
  class), the sham, the hold every (re)start begins from, and the hand's action.

With decimation the filtered signal is kept at the input rate and the window is every ``decim``-th sample counted
back from the newest one, so no decision waits for a sample the decimation keeps (training windows start at any
phase too). A window is decoded only when it is

- settled: the filters have run for their settling time since the last (re)start (at start, after a gap or bad
  data, for every new connection);
- plausible: with an amplitude after the band-pass within ``max_amplitude_ratio`` of the training data's, finite,
  not saturated, never flat (a flat channel restarts the chain like a dropout), free of steps (a raw step far
  beyond the typical sample change restarts the filters at the new level) and of artifacts (no band-passed peak
  above ``artifact_ratio`` x the channel's training RMS in the window);
- aligned, for models with Euclidean alignment (a training subject's matrix, a saved one, or one estimated from
  the session's first seconds);
- and, where the caller has a clock, fresh (``max_age``).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from datasets.dsp import CausalPreprocessor, PreprocessingSpec

from .actions import SAFE_ACTION, level_classes, plan_actions
from .alignment import AlignmentPlan, estimate_alignment, session_normalizer
from .buffer import PhaseRings, RingBuffer
from .model import DecoderSession
from .safety import AmplitudeCheck, FlatDetector, JumpDetector, SafetyConfig, check_chunk
from .sham import ShamDecoder
from .smoothing import GateConfig, GatedSmoother, SmoothingConfig, Smoother, gate_in_force


@dataclass
class ChainConfig:
    """The decision chain's settings (``bmi serve``'s flags of the same names; ``ServeConfig`` adds the rest)."""

    hop_ms: float = 50.0
    smoothing: SmoothingConfig = field(default_factory=SmoothingConfig)
    safety: SafetyConfig = field(default_factory=SafetyConfig)
    level_classes: tuple[str, str] | None = None  # None: the classes mapped to grasp and open
    gate: dict[str, float] = field(default_factory=dict)  # the gate's settings over the metadata's (or the defaults)
    gate_rest_class: str | None = None  # a model without a gate: gate its commands on 1 - P(this class)
    actions: dict[str, str] = field(default_factory=dict)  # class -> grasp|open|hold, beyond the defaults
    max_amplitude_ratio: float = 100.0
    check_seconds: float = 2.0
    artifact_ratio: float = 50.0  # a window peak above this x the training RMS is an artifact (0: off)
    jump_ratio: float = 100.0  # a raw step this many times the typical sample change restarts the filters (0: off)
    sham: bool = False
    sham_source: Any = None  # a session log whose decisions the sham replays (else drawn at random)
    sham_seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("hop_ms", "max_amplitude_ratio", "check_seconds"):
            if not getattr(self, name) > 0:
                raise ValueError(f"'{name.replace('_', '-')}' ({getattr(self, name)}) must be positive.")
        for name in ("artifact_ratio", "jump_ratio"):
            if getattr(self, name) < 0:
                raise ValueError(f"'{name.replace('_', '-')}' ({getattr(self, name)}) must be >= 0 (0 turns the check off).")
        if self.max_amplitude_ratio < 1:
            raise ValueError(f"'max-amplitude-ratio' ({self.max_amplitude_ratio}) must be at least 1.")


@dataclass
class Window:
    """What a hop gave: the reason its window was not decoded, or the model's probabilities and its raw gate
    probability (NaN for a decoder without a gate output)."""

    reason: str | None
    probabilities: np.ndarray | None = None
    gate: float = float("nan")


@dataclass
class Command:
    """A decided window: the command, the hand's action (hold until a movement earned the dwell), the smoothed
    confidence and level, the probabilities sent, the gate the rules saw (NaN without a gate) and whether the
    chain is still holding."""

    command: str
    action: str
    confidence: float
    level: float
    probabilities: np.ndarray
    gate: float
    holding: bool


def safe_command(classes: list[str], wanted: str | None) -> str:
    """The command of the safe state: ``wanted``, else the rest class where the model has one, else "hold"."""
    command = wanted if wanted is not None else ("rest" if "rest" in classes else "hold")
    if command not in classes and command != "hold":
        raise ValueError(f"'safe-command' ({command!r}) must be 'hold' or one of the classes {classes}.")
    return command


class CommandChain:
    """Probabilities -> command, on stream time. Every (re)start begins from hold (:meth:`reset`)."""

    def __init__(self, meta: dict[str, Any], cfg: ChainConfig):
        self.classes = classes = list(meta["classes"])
        self.actions = plan_actions(classes, cfg.actions)
        self.safe_command = safe_command(classes, cfg.safety.safe_command)
        self.level_classes = cfg.level_classes if cfg.level_classes is not None else level_classes(self.actions)
        for c in self.level_classes or ():
            if c not in classes:
                raise ValueError(f"'level-classes' names {c!r}, not a class of the model {classes}.")
        self.gate_cfg: GateConfig | None = gate_in_force(meta, cfg.gate_rest_class, cfg.gate)
        # a rest gate on a decoder without a gate output: the gate is 1 - P(rest class) of each window
        self.rest_gate = classes.index(cfg.gate_rest_class) if cfg.gate_rest_class is not None else None
        if self.gate_cfg is not None:  # the rest command until the gate opens; the level from the gate
            self.smoother = GatedSmoother(classes, cfg.smoothing, self.gate_cfg, self.level_classes)
        else:
            self.smoother = Smoother(classes, cfg.smoothing, self.level_classes, hold=self.safe_command)
        self.sham = ShamDecoder(classes, cfg.hop_ms / 1000, cfg.sham_source, seed=cfg.sham_seed,
                                level_pair=self.level_classes, hold=self.safe_command,
                                hold_s=cfg.smoothing.dwell_s) if cfg.sham else None

    @property
    def gated(self) -> bool:
        """Whether a gate is in force (a gated decoder's own, or a rest gate on a class): the commands then wait
        for it to open, and every decision carries its value."""
        return self.gate_cfg is not None

    def reset(self) -> None:
        """Back to hold: the smoothing and the gate forget what came before, so the first movement after a
        (re)start needs the full dwell again."""
        self.smoother.reset()
        if self.sham is not None:
            self.sham.reset()

    def decide(self, probabilities: np.ndarray, model_gate: float, t: float) -> Command:
        """The command for a window ending at stream time ``t`` (s, the sample clock: a burst of windows cannot
        cross the dwell)."""
        probs = probabilities
        gate = float("nan")
        if self.gated:
            gate = model_gate if self.rest_gate is None else 1.0 - float(probs[self.rest_gate])
        if self.sham is not None:  # the decoder still ran, so timing is identical; its output is not used
            fake = self.sham.next()
            command, confidence, level, probs = fake["command"], fake["confidence"], fake["level"], fake["probabilities"]
            holding = fake.get("holding", False)
            if self.gated:  # the wire carries a gate either way; a sham's is its own rest probability's complement
                gate = 1.0 - float(probs[self.classes.index(self.gate_cfg.rest_class)])
        else:
            command, confidence, level, _ = (self.smoother.update(probs, t, gate) if self.gated
                                             else self.smoother.update(probs, t))
            holding = self.smoother.holding
        # from hold until a movement earned the dwell, whatever the held class is mapped to
        action = SAFE_ACTION if holding else self.actions[command]
        return Command(command, action, float(confidence), float(level), np.asarray(probs), float(gate), holding)


class SignalChain:
    """Samples (``[n_chans, n]``, the model's channels in its order and units) -> windows -> probabilities.

    Feed chunks as they arrive (:meth:`feed`); when :meth:`hop_due` says a hop of samples has come, :meth:`window`
    decodes the newest window (the one ending at the newest sample: older hops in the same chunk are superseded)
    or says why not. ``events`` counts what was discarded; ``notice`` tells the operator what they must know;
    ``on_aligned(matrix)`` runs when the session's alignment has been estimated. ``views``: keep the raw and
    filtered samples for a display (the console).
    """

    def __init__(self, decoder: DecoderSession, cfg: ChainConfig, alignment: AlignmentPlan, *,
                 events: Counter | None = None, notice: Callable[[str], None] | None = None,
                 on_aligned: Callable[[np.ndarray], None] | None = None, views: bool = False):
        self.decoder, self.cfg, self.alignment = decoder, cfg, alignment
        self.events = events if events is not None else Counter()
        self.notice = notice or (lambda text: None)
        self.on_aligned = on_aligned
        self.views = views
        meta = decoder.meta
        self.spec = spec = PreprocessingSpec.from_dict(meta["preprocessing"])
        self.pre = CausalPreprocessor(spec)  # refuses zero-phase (offline-only) models
        self.norm = meta["normalization"]
        self.n_times, decim = decoder.n_times, spec.decim
        n_chans = len(spec.ch_names)
        # filtered samples -> the decoder's window rows: normalised (aligned), and mixed when the decoder's mix runs here
        self._rows = decoder.rows_from(session_normalizer(self.norm, alignment.matrix))
        self._align_data: list[np.ndarray] = []
        self.hop = max(1, int(round(cfg.hop_ms / 1000 * spec.sfreq_in)))
        self.flat_samples = max(2, int(round(cfg.safety.flat_ms / 1000 * spec.sfreq_in)))
        # the raw checks run on each chunk as it arrives; a decision only reads what they found
        self.flat = FlatDetector(n_chans, self.flat_samples, cfg.safety.flat_threshold)
        self.jumps = JumpDetector(cfg.jump_ratio) if cfg.jump_ratio else None
        rms = np.asarray(self.norm["rms"], dtype=np.float32)
        self._artifact_limit = np.where(rms > 0, cfg.artifact_ratio * rms, np.inf).astype(np.float32)[:, None] \
            if cfg.artifact_ratio else None
        self._window_span = (self.n_times - 1) * decim  # input samples from a window's first to its last
        self.amplitude = AmplitudeCheck(self.norm["rms"], spec.ch_names, int(cfg.check_seconds * spec.sfreq_out),
                                        cfg.max_amplitude_ratio)
        self.raw_ring = RingBuffer(n_chans, self.flat_samples)  # a display's channel view only
        # filtered, in the data's units: kept only for a display and the alignment's refill
        self.filtered = PhaseRings(n_chans, self.n_times, decim)
        # the same samples normalised as they arrive (the decoder's window is a copy of a view): a decision copies
        # its window instead of normalising it (0.18 -> 0.09 ms at 306 channels, cold caches; an aligned window
        # was 306 x 306 x 250 multiply-adds per decision, now 306 x 306 per sample once); and, when the decoder
        # begins with a channel mix, mixed as they arrive too (DecoderSession.rows_from): K rows, not C channels
        self.rows = PhaseRings(decoder.window.shape[0], self.n_times, decim)
        self.samples = 0  # samples taken so far: the stream's sample index
        self.superseded_hops = 0  # hop points merged into a later decision (several hops in one chunk)
        self.restart()

    @property
    def t(self) -> float:
        """Stream time (s) on the sample clock: the newest sample's end."""
        return self.samples / self.spec.sfreq_in

    def restart(self) -> None:
        """After a gap, bad data or a new connection the filters restart (settled state for the next sample)
        and decisions wait for them to settle and for the window to refill with clean data."""
        self.pre.reset()
        self.raw_ring.clear()
        self.filtered.clear()
        self.rows.clear()
        self._since_hop = 0
        self._settle_left = self.spec.settle_out * self.spec.decim  # input samples; whole decimation steps
        self.flat.reset()
        self._flat_seen = False
        if self.jumps is not None:
            self.jumps.reset()
        self._since_artifact = np.inf  # filtered samples after the newest one above the artifact limit

    def new_session(self) -> None:
        """A new connection: the amplitude is checked again, and the chain restarts."""
        self.amplitude.restart()
        self.restart()

    def discard(self, n: int, reason: str) -> None:
        """``n`` samples that arrived but were refused before the chain (e.g. on the sender's clock)."""
        self.events[f"discarded_samples_{reason}"] += n
        self.samples += n

    def feed(self, chunk: np.ndarray) -> str | None:
        """Take a chunk. A non-finite or saturated chunk is discarded and the chain restarts: returns why."""
        n = chunk.shape[1]
        problem = check_chunk(chunk, self.cfg.safety)
        if problem:
            self.discard(n, problem)
            self.restart()
            return problem
        if self.views:
            self.raw_ring.append(chunk)
        self._flat_seen |= self.flat.add(chunk)
        if self.jumps is not None:
            self.jumps.add(chunk)
        out = self._settled(self.pre.filter(chunk).astype(np.float32))
        if out.shape[1]:
            if self.views or self.alignment.estimate_samples:  # its only readers: a display, the refill
                self.filtered.append(out)
            self.rows.append(self._rows(out))
            self._watch_artifacts(out)
            self._calibrate(self.pre.decimate(out))  # may estimate the alignment: the rows are then refilled
        self.samples += n
        self._since_hop += n
        return None

    def hop_due(self) -> bool:
        """Whether a hop of samples has come since the last decision point (then one is due, on the newest
        window: older hop points in the same chunk are superseded)."""
        if self._since_hop < self.hop:
            return False
        self.superseded_hops += self._since_hop // self.hop - 1
        self._since_hop %= self.hop
        return True

    def window(self, *, stopped: bool = False, age_s: Callable[[], float] | None = None,
               max_age_s: float = float("inf")) -> Window:
        """The newest window through the decoder, or why not. ``stopped``: the operator's emergency stop, which
        outranks every other reason (the data are still watched). ``age_s()``: the newest sample's age on the
        caller's clock; a window older than ``max_age_s`` is not decoded (a backlog is filtered, never decoded).
        After a flat stretch or a step the chain has restarted."""
        restart = self._restart_reason()
        if restart is not None:
            self.restart()
        if stopped:
            return Window("emergency_stop")
        if restart is not None:
            return Window(restart)
        reason = self._withheld_reason()
        if reason is None and age_s is not None and age_s() > max_age_s:
            reason = "late"
        if reason is None and self._since_artifact <= self._window_span:
            reason = "artifact"
        if reason is not None:
            return Window(reason)
        # every decim-th normalised sample up to the newest (a view), copied into the decoder's input
        np.copyto(self.decoder.window, self.rows.latest(self.n_times))
        probs = self.decoder.predict()
        return Window(None, probs, self.decoder.gate if self.decoder.gated else float("nan"))

    def _restart_reason(self) -> str | None:
        """Raw data since the last hop that make the filter state worthless: start again, as after a dropout."""
        flat, self._flat_seen = self._flat_seen, False
        if self.jumps is not None and self.jumps.check() and not flat:
            return "jump"  # restarted filters settle at the new level instead of ringing for a second
        return "flat" if flat else None  # a stuck amplifier or a lost electrode

    def _withheld_reason(self) -> str | None:
        """Why the newest window may not be decoded yet (other than its age and artifacts), or None."""
        if self.amplitude.failures and not self.amplitude.passed:
            return "amplitude"
        if self._settle_left or self.rows.count < self.n_times:
            return "settling"
        if not self.amplitude.passed:
            return "checking_amplitude"
        if self.alignment.estimate_samples:
            return "aligning"
        return None

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
        """The first settled samples of a session (at the model's rate, decimated from the first settled sample
        on, as offline) check the amplitude and may estimate the alignment."""
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
                self._rows = self.decoder.rows_from(session_normalizer(self.norm, matrix))
                self.rows.refill(self.filtered, self._rows)  # what it held was normalised unaligned
                self.alignment.matrix, self.alignment.estimate_samples, self._align_data = matrix, 0, []
                if self.on_aligned is not None:
                    self.on_aligned(matrix)
