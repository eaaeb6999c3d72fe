"""A recording through the rig's own decision chain, as fast as the CPU goes, and what the hand did during it.

:func:`decode_windows` feeds a recording (already in the model's channel order and units) to
:class:`~exports.runtime.chain.SignalChain`, the code ``bmi serve`` runs, one hop at a time on the stream's sample
clock: the same causal preprocessing and settling, the same checks on the data (flat channels, steps,
artifacts, amplitude, non-finite or saturated samples), the same alignment, and at every hop the newest window
through the decoder or the reason it was withheld. :func:`decide` runs
:class:`~exports.runtime.chain.CommandChain` (smoothing, gate, hold, actions) over those hops, as the server does,
so the same windows can be decided under many settings. What only a live stream has (a sender's clock, a
window's age, the operator's stop) does not arise; a stall of the stream, where the recording marks one
(``restarts``), restarts the chain as the server's stale watchdog does.

:func:`score_commands` measures the commands against the session's cues: false movement commands per minute
during rest cues, and for every movement cue the time to its first correct command. Used by ``bmi rehearse``,
the demo and ``scripts/bench_gate.py``; light (numpy and the runtime's own modules).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .actions import SAFE_ACTION
from .alignment import AlignmentPlan, choose_alignment
from .chain import ChainConfig, CommandChain, SignalChain
from .model import DecoderSession
from .smoothing import SmoothingConfig


@dataclass
class Windows:
    """Every hop of a recording, before any smoothing or gate rule: its sample index (samples so far), the stream
    time of its window's last sample (s), why it was withheld ("" for a decoded window), the model's
    probabilities (NaN when withheld) and (gated decoders) its raw gate probability (NaN otherwise)."""

    sample_index: np.ndarray
    t: np.ndarray
    reason: list[str]
    probabilities: np.ndarray
    gate: np.ndarray
    meta: dict[str, Any]
    alignment: AlignmentPlan  # the matrix that aligned the windows and where it came from
    config: ChainConfig

    @property
    def first_decoded_t(self) -> float:
        """The stream time of the first decoded window (inf when none was)."""
        decoded = [t for t, r in zip(self.t, self.reason) if not r]
        return decoded[0] if decoded else float("inf")


@dataclass
class Decisions:
    """One row per hop (and per chunk refused as non-finite or saturated): its sample index, the stream time of its window's last sample (s), the command (the safe
    command while withheld), its hand action, why it was withheld ("" for a decision), the probabilities sent
    (NaN when withheld) and the gate the rules saw (the model's, or 1 - P(rest) under a rest gate; NaN without a
    gate or when withheld)."""

    t: np.ndarray
    command: list[str]
    action: list[str]
    probabilities: np.ndarray
    gate: np.ndarray
    classes: list[str]
    alignment: AlignmentPlan | None = None  # the matrix that aligned the windows and where it came from
    reason: list[str] | None = None
    sample_index: np.ndarray | None = None

    def decided(self) -> Decisions:
        """Only the decoded hops (the messages the server sends as decisions)."""
        keep = np.array([not r for r in self.reason]) if self.reason is not None else np.ones(len(self.t), bool)
        return Decisions(self.t[keep], [c for c, k in zip(self.command, keep) if k],
                         [a for a, k in zip(self.action, keep) if k], self.probabilities[keep], self.gate[keep],
                         self.classes, self.alignment, [""] * int(keep.sum()),
                         None if self.sample_index is None else self.sample_index[keep])


def decode_recording(model_path: str | Path, data: np.ndarray, *, hop_ms: float = 50.0,
                     smoothing: SmoothingConfig | None = None, gate: dict[str, float] | None = None,
                     actions: dict[str, str] | None = None, rest_gate: str | None = None,
                     alignment: AlignmentPlan | None = None, config: ChainConfig | None = None,
                     restarts: Sequence[int] = ()) -> Decisions:
    """Decisions on ``data`` (``[n_chans, n_samples]``, the model's channels in its order and units):
    :func:`decode_windows` then :func:`decide`."""
    windows = decode_windows(model_path, data, hop_ms=hop_ms, alignment=alignment, config=config, restarts=restarts)
    return decide(windows, smoothing=smoothing, gate=gate, actions=actions, rest_gate=rest_gate)


def decode_windows(model_path: str | Path, data: np.ndarray, *, hop_ms: float = 50.0,
                   alignment: AlignmentPlan | None = None, config: ChainConfig | None = None,
                   restarts: Sequence[int] = ()) -> Windows:
    """The decision chain's windows on ``data`` (``[n_chans, n_samples]``, the model's channels in its order and
    units), arriving in chunks of one hop. ``config``: the chain's checks as ``bmi serve`` takes them (its
    defaults by default; ``hop_ms`` sets the hop when no config is given). ``restarts``: sample indices where the
    stream stalled (the samples before and after are not contiguous): the chain restarts there, as the server
    does after a stall, and the next hops start from it. ``alignment`` (from
    :func:`~exports.runtime.alignment.choose_alignment`, as ``bmi serve --subject / --align-seconds /
    --alignment``) is the session's alignment; by default the model's only training subject's, if it has
    alignment at all."""
    cfg = config if config is not None else ChainConfig(hop_ms=hop_ms)
    decoder = DecoderSession(model_path, warmup=1)
    meta = decoder.meta
    n_model = len(meta["preprocessing"]["ch_names"])
    if data.shape[0] != n_model:
        raise ValueError(f"'data' has {data.shape[0]} channels; the model takes {n_model} "
                         f"({meta['preprocessing']['ch_names']}).")
    plan = alignment if alignment is not None else choose_alignment(meta, None, None, None)
    plan = AlignmentPlan(plan.matrix, plan.source, plan.estimate_samples)  # the chain fills in an estimate: a copy
    chain = SignalChain(decoder, cfg, plan)
    index, t, reasons, probs_out, gates = [], [], [], [], []
    n_classes = len(meta["classes"])
    bounds = sorted({0, data.shape[1], *(int(r) for r in restarts if 0 < r < data.shape[1])})
    for first, last in zip(bounds[:-1], bounds[1:]):
        if first:
            chain.restart()  # a stall: the server's stale watchdog restarts the chain
        for start in range(first, last, chain.hop):
            problem = chain.feed(np.asarray(data[:, start : min(start + chain.hop, last)], dtype=np.float32))
            window = None
            if problem:
                window_reason = problem
            elif chain.hop_due():
                window = chain.window()
                window_reason = window.reason or ""
            else:
                continue
            index.append(chain.samples)
            t.append(chain.t)
            reasons.append(window_reason)
            decoded = window is not None and window.reason is None
            probs_out.append(window.probabilities if decoded else np.full(n_classes, np.nan, dtype=np.float32))
            gates.append(window.gate if decoded else np.nan)
    return Windows(np.asarray(index, dtype=np.int64), np.asarray(t), reasons,
                   np.asarray(probs_out, dtype=np.float32).reshape(len(t), n_classes),
                   np.asarray(gates, dtype=np.float64), meta, plan, cfg)


def decide(windows: Windows, *, smoothing: SmoothingConfig | None = None, gate: dict[str, float] | None = None,
           actions: dict[str, str] | None = None, rest_gate: str | None = None) -> Decisions:
    """The server's rules (:class:`~exports.runtime.chain.CommandChain`) on decoded windows: a withheld hop holds
    and starts the rules again from hold, as the server's safe state does. ``smoothing``, ``gate`` (the gate's
    settings over the model's), ``actions`` and ``rest_gate`` (the rest class of a model without a gate, to gate
    it on ``1 - P(rest_gate)``: ``bmi serve --gate-rest-class``) override the windows' chain settings. The same
    windows can be decided under many settings."""
    base = windows.config
    cfg = replace(base, smoothing=smoothing or base.smoothing, gate=base.gate if gate is None else gate,
                  actions=base.actions if actions is None else actions,
                  gate_rest_class=base.gate_rest_class if rest_gate is None else rest_gate)
    rules = CommandChain(windows.meta, cfg)
    commands, actions_out, probs, gates = [], [], [], []
    for t, reason, p, g in zip(windows.t, windows.reason, windows.probabilities, windows.gate):
        if reason:
            rules.reset()
            commands.append(rules.safe_command)
            actions_out.append(SAFE_ACTION)
            probs.append(p)
            gates.append(np.nan)
            continue
        decision = rules.decide(p, g, t)
        commands.append(decision.command)
        actions_out.append(decision.action)
        probs.append(decision.probabilities)
        gates.append(decision.gate)
    n_classes = len(windows.meta["classes"])
    return Decisions(windows.t, commands, actions_out, np.asarray(probs, dtype=np.float64).reshape(-1, n_classes),
                     np.asarray(gates, dtype=np.float64), rules.classes, windows.alignment,
                     list(windows.reason), windows.sample_index)


MIN_GAP_S = 0.5  # shorter spans between cues are not scored as gaps


def command_rates(c: dict[str, Any]) -> dict[str, Any]:
    """``score_commands``' rates from its ``counts`` (of one recording, or summed over several: ``bmi rehearse``)."""
    def share(part, whole):
        return part / whole if whole else None

    return {
        "false_movements_per_min": share(c["false_onsets"], c["rest_minutes"]),
        "spontaneous_movements_per_min": share(c["false_onsets"] - c["late_onsets"], c["rest_minutes"]),
        "movement_time_during_rest": share(c["rest_moving"], c["rest_decisions"]),
        "rest_cues_moving": share(c["rest_cues_moved_in"], c["rest_cues"]),
        "movement_time_between_cues": share(c["gap_moving"], c["gap_decisions"]),
        "gaps_moving": share(c["gaps_moved_in"], c["gaps"]),
        "movement_time_uncued": share(c["rest_moving"] + c["gap_moving"], c["rest_decisions"] + c["gap_decisions"]),
        "movement_hit_rate": share(c["hits"], c["movement_cues"]),
        "time_to_correct_s": float(np.median(c["latencies_s"])) if c["latencies_s"] else None,
    }


def late_seconds(meta: dict[str, Any]) -> float:
    """How long after a movement cue ends a command repeating it counts as late (``score_commands``' ``late_s``):
    half the model's window, while the window still holds mostly that movement."""
    return meta["window"]["seconds"] / 2


def score_commands(decisions: Decisions, cues: Sequence[tuple[float, str]], cue_seconds: float,
                   rest_class: str = "rest", respond_seconds: float | None = None,
                   from_s: float | None = None, late_s: float | None = None,
                   until_s: float | None = None) -> dict[str, Any]:
    """The hand's behaviour against the cues ``(onset s, class)``, each lasting ``cue_seconds``; cues beginning
    before ``from_s`` (e.g. the first decision) are left out and counted in ``n_cues_unscored``, and so are cues
    ending after ``until_s`` (e.g. a stream's last decision), though the gap before such a cue is scored.

    - ``false_movements_per_min``: onsets of a movement command (an action other than hold, after a decision
      that was not that command) whose decision falls in a rest cue, per minute of rest cues;
    - ``late_onsets``: those of them that repeat the class of the movement cue just before, less than
      ``late_s`` after it ended (e.g. half the decoder's window: the window still holds mostly that movement):
      the right command, late, rather than a movement from rest; ``spontaneous_movements_per_min`` the others;
    - ``movement_time_during_rest``: the share of rest-cue decisions whose action is a movement;
    - ``rest_cues_moving``: the share of rest cues with at least one such decision (the hand not still there);
    - ``movement_time_between_cues`` and ``gaps_moving``: the same in the gaps between consecutive cues, where no
      cue asks for anything and the hand should rest; the first ``late_s`` of a gap after a movement cue are left
      out (the window still holds the movement). Spans under ``MIN_GAP_S`` are no gaps (cue durations that vary
      about ``cue_seconds``); None where the cues leave none (e.g. EEGMMIDB's runs). ``gaps_moved_in_late``
      counts the gaps where every moving decision repeats the movement cue just before (held past its late answer);
    - ``movement_time_uncued``: the share of decisions commanding a movement where none was cued, in rest cues and
      gaps together (what ``bmi rehearse --min-hits`` minimises);
    - ``time_to_correct_s``: for each movement cue, the first decision in [onset, onset + ``respond_seconds``
      (default the cue)] whose command is the cue's class: median seconds after the onset, and
      ``movement_hit_rate``, the share of movement cues that got one.
    """
    respond = cue_seconds if respond_seconds is None else respond_seconds
    scored = [c for c in cues if from_s is None or c[0] >= from_s]
    n_unscored, cues = len(cues) - len(scored), scored
    whole = [until_s is None or c[0] + cue_seconds <= until_s for c in cues]
    n_unscored += whole.count(False)
    t, command, action = decisions.t, decisions.command, decisions.action
    moving = np.array([a != SAFE_ACTION for a in action], dtype=bool)
    onset_of_movement = moving & np.r_[True, np.array(command[1:]) != np.array(command[:-1])]
    gap = _gap_counts(t, command, moving, cues, cue_seconds, rest_class, late_s)
    rest_minutes, false_onsets, rest_decisions, rest_moving, rest_cues, rest_cues_moved_in = 0.0, 0, 0, 0, 0, 0
    latencies, hits, n_movement, late_onsets = [], 0, 0, 0
    for k, ((onset, label), seen_whole) in enumerate(zip(cues, whole)):
        if not seen_whole:
            continue
        inside = (t >= onset) & (t < onset + cue_seconds)
        before = cues[k - 1] if k else None
        if label == rest_class:
            rest_minutes += cue_seconds / 60
            false_onsets += int((onset_of_movement & inside).sum())
            if late_s is not None and before is not None and before[1] != rest_class:
                late = onset_of_movement & inside & (t < before[0] + cue_seconds + late_s)
                late_onsets += sum(command[i] == before[1] for i in np.flatnonzero(late))
            rest_decisions += int(inside.sum())
            rest_moving += int((moving & inside).sum())
            rest_cues += 1
            rest_cues_moved_in += bool((moving & inside).any())
            continue
        if label not in decisions.classes:
            continue
        n_movement += 1
        window = np.flatnonzero((t >= onset) & (t < onset + respond))
        correct = [i for i in window if command[i] == label]
        if correct:
            hits += 1
            latencies.append(float(t[correct[0]] - onset))
    # what the rates are made of, to pool several recordings (bmi rehearse)
    counts = {"false_onsets": false_onsets, "late_onsets": late_onsets, "rest_minutes": rest_minutes,
              "rest_decisions": rest_decisions, "rest_moving": rest_moving, "rest_cues": rest_cues,
              "rest_cues_moved_in": rest_cues_moved_in, "hits": hits, "movement_cues": n_movement,
              **gap, "latencies_s": latencies}
    return {**command_rates(counts), "late_onsets": late_onsets, "n_gaps": gap["gaps"],
            "n_rest_cues": rest_cues, "n_movement_cues": n_movement,
            "n_decisions": int(len(t)), "n_cues_unscored": n_unscored, "counts": counts}


def _gap_counts(t: np.ndarray, command: list[str], moving: np.ndarray, cues: Sequence[tuple[float, str]],
                cue_seconds: float, rest_class: str, late_s: float | None) -> dict[str, int]:
    """The gaps between consecutive cues (:func:`score_commands`): how many, how many the hand moved in (and in how
    many only by holding the movement just cued), their decisions and the moving ones."""
    out = {"gaps": 0, "gaps_moved_in": 0, "gaps_moved_in_late": 0, "gap_decisions": 0, "gap_moving": 0}
    for before, (onset, _label) in zip(cues, cues[1:]):
        grace = late_s if late_s is not None and before[1] != rest_class else 0.0
        gap_start = before[0] + cue_seconds + grace
        in_gap = (t >= gap_start) & (t < onset)
        if onset - gap_start < MIN_GAP_S or not in_gap.any():
            continue
        out["gaps"] += 1
        out["gap_decisions"] += int(in_gap.sum())
        out["gap_moving"] += int((moving & in_gap).sum())
        moved = np.flatnonzero(moving & in_gap)
        out["gaps_moved_in"] += bool(len(moved))
        # only the movement just cued, held past its late answer: the hand slow to let go, not moving at rest
        out["gaps_moved_in_late"] += bool(len(moved)) and all(command[i] == before[1] for i in moved)
    return out
