"""A recording through the rig's own decision chain, as fast as the CPU goes, and what the hand did during it.

:func:`decode_recording` feeds a recording (already in the model's channel order and units) through the pieces
``bmi serve`` runs (:class:`datasets.dsp.CausalPreprocessor` chunk by chunk, the settling time, the window of
every ``decim``-th filtered sample ending at the newest one, the normaliser, the decoder's leading channel mix on
arrival when it has one, :class:`~exports.runtime.model.DecoderSession`, then :class:`~exports.runtime.smoothing.Smoother` or,
for a gated decoder or a rest gate, :class:`~exports.runtime.smoothing.GatedSmoother`), one decision per hop on the stream's
sample clock, without the network, the wall clock or the stream checks (a recording has no stalls). A model trained
with Euclidean alignment takes the session's matrix as the server does (:mod:`~exports.runtime.alignment`): a
training subject's, a saved one, or one estimated from the recording's first seconds, decisions withheld meanwhile.
:func:`score_commands` measures the commands against the session's cues: false movement commands per minute
during rest cues, and for every movement cue the time to its first correct command. Used by
``scripts/bench_gate.py`` and the gate's tests; light (numpy and the runtime's own modules).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from datasets.dsp import CausalPreprocessor, PreprocessingSpec

from .actions import SAFE_ACTION, plan_actions
from .alignment import AlignmentPlan, choose_alignment, estimate_alignment, session_normalizer
from .buffer import PhaseRings
from .model import DecoderSession
from .smoothing import GatedSmoother, SmoothingConfig, Smoother, gate_in_force


@dataclass
class Windows:
    """Every decision point of a recording, before any smoothing or gate rule: the stream time of its window's
    last sample (s), the model's probabilities and (gated decoders) its raw gate probability (NaN otherwise)."""

    t: np.ndarray
    probabilities: np.ndarray
    gate: np.ndarray
    meta: dict[str, Any]
    alignment: AlignmentPlan  # the matrix that aligned the windows and where it came from


@dataclass
class Decisions:
    """One row per decision: the stream time of its window's last sample (s), the command, its hand action,
    the model's probabilities and the gate the rules saw (the model's, or 1 - P(rest) under a rest gate; NaN
    without a gate)."""

    t: np.ndarray
    command: list[str]
    action: list[str]
    probabilities: np.ndarray
    gate: np.ndarray
    classes: list[str]
    alignment: AlignmentPlan | None = None  # the matrix that aligned the windows and where it came from


def decode_recording(model_path: str | Path, data: np.ndarray, *, hop_ms: float = 50.0,
                     smoothing: SmoothingConfig | None = None, gate: dict[str, float] | None = None,
                     actions: dict[str, str] | None = None, rest_gate: str | None = None,
                     alignment: AlignmentPlan | None = None) -> Decisions:
    """Decisions on ``data`` (``[n_chans, n_samples]``, the model's channels in its order and units):
    :func:`decode_windows` then :func:`decide`."""
    return decide(decode_windows(model_path, data, hop_ms=hop_ms, alignment=alignment), smoothing=smoothing,
                  gate=gate, actions=actions, rest_gate=rest_gate)


def decode_windows(model_path: str | Path, data: np.ndarray, *, hop_ms: float = 50.0,
                   alignment: AlignmentPlan | None = None) -> Windows:
    """The model on ``data`` (``[n_chans, n_samples]``, the model's channels in its order and units), arriving in
    chunks of one hop: one window per hop once the filters have settled and a window has filled. ``alignment``
    (from :func:`~exports.runtime.alignment.choose_alignment`, as ``bmi serve --subject / --align-seconds /
    --alignment``) is the session's alignment; by default the model's only training subject's, if it has
    alignment at all."""
    decoder = DecoderSession(model_path, warmup=1)
    meta = decoder.meta
    spec = PreprocessingSpec.from_dict(meta["preprocessing"])
    if data.shape[0] != len(spec.ch_names):
        raise ValueError(f"'data' has {data.shape[0]} channels; the model takes {len(spec.ch_names)} ({spec.ch_names}).")
    plan = alignment if alignment is not None else choose_alignment(meta, None, None, None)
    pre = CausalPreprocessor(spec)
    rows = decoder.rows_from(session_normalizer(meta["normalization"], plan.matrix))  # the window's rows, as the server
    hop = max(1, int(round(hop_ms / 1000 * spec.sfreq_in)))
    decim = spec.decim
    need, settle = decoder.n_times * decim, spec.settle_out * decim  # input samples, as the server counts them
    filtered = PhaseRings(data.shape[0], decoder.n_times, decim)  # as the server: the filtered samples, and ...
    normalized = PhaseRings(decoder.window.shape[0], decoder.n_times, decim)  # ... the decoder's rows of them
    have = 0  # filtered input samples so far
    to_align, aligning = plan.estimate_samples, []  # the session's own alignment: its first settled samples
    t, probs_out, gates = [], [], []
    for start in range(0, data.shape[1] - hop + 1, hop):
        out = pre.filter(np.asarray(data[:, start : start + hop], dtype=np.float32)).astype(np.float32)
        filtered.append(out)
        normalized.append(rows(out))
        have += out.shape[1]
        if to_align:
            aligning.append(out)
            if -(-(have - settle) // decim) >= to_align:  # model-rate samples from the first settled one, as the server
                first = np.concatenate(aligning, axis=1)[:, settle::decim][:, :to_align]
                matrix = estimate_alignment(first, decoder.n_times)
                plan = AlignmentPlan(matrix, plan.source)
                rows = decoder.rows_from(session_normalizer(meta["normalization"], matrix))
                to_align, aligning = 0, []
                normalized.refill(filtered, rows)  # what it held was normalised unaligned
        if have - settle < need or to_align:  # decisions withheld while the filters settle or the alignment is estimated
            continue
        # every decim-th normalised sample up to the newest, copied into the decoder's input as the server does
        np.copyto(decoder.window, normalized.latest(decoder.n_times))
        probs_out.append(decoder.predict())
        t.append((start + hop) / spec.sfreq_in)
        gates.append(decoder.gate if decoder.gated else np.nan)
    return Windows(np.asarray(t), np.asarray(probs_out).reshape(len(t), len(meta["classes"])),
                   np.asarray(gates, dtype=np.float64), meta, plan)


def decide(windows: Windows, *, smoothing: SmoothingConfig | None = None, gate: dict[str, float] | None = None,
           actions: dict[str, str] | None = None, rest_gate: str | None = None) -> Decisions:
    """The server's rules on decoded windows: :class:`~exports.runtime.smoothing.Smoother` or, for a gated
    decoder or a rest gate, :class:`~exports.runtime.smoothing.GatedSmoother`, on stream time. ``gate`` overrides
    the gate's settings; ``rest_gate`` names the rest class of a model without a gate to gate it on
    ``1 - P(rest_gate)`` (``bmi serve --gate-rest-class``). The same windows can be decided under many settings."""
    meta = windows.meta
    classes = meta["classes"]
    act = plan_actions(classes, actions or {})
    smoothing = smoothing or SmoothingConfig()
    gate_cfg = gate_in_force(meta, rest_gate, gate or {})
    if gate_cfg is None:
        hold = "rest" if "rest" in classes else "hold"  # the server's default safe command: decisions start there
        smoother, gates = Smoother(classes, smoothing, hold=hold), np.full(len(windows.t), np.nan)
    else:  # a rest gate: 1 - P(rest) is the gate
        smoother = GatedSmoother(classes, smoothing, gate_cfg)
        gates = windows.gate if rest_gate is None else \
            1.0 - windows.probabilities[:, classes.index(rest_gate)].astype(np.float64)  # as the server's float()
    commands, actions = [], []
    for t, p, g in zip(windows.t, windows.probabilities, gates):
        commands.append((smoother.update(p, t) if gate_cfg is None else smoother.update(p, t, g))[0])
        actions.append(SAFE_ACTION if smoother.holding else act[commands[-1]])  # as the server's decisions
    return Decisions(windows.t, commands, actions, windows.probabilities,
                     np.asarray(gates, dtype=np.float64), classes, windows.alignment)


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
    rest_minutes, false_onsets, rest_decisions, rest_moving, rest_cues, rest_cues_moved_in = 0.0, 0, 0, 0, 0, 0
    latencies, hits, n_movement, late_onsets, previous = [], 0, 0, 0, None
    gaps, gaps_moved_in, gaps_moved_in_late, gap_decisions, gap_moving = 0, 0, 0, 0, 0
    for (onset, label), seen_whole in zip(cues, whole):
        inside = (t >= onset) & (t < onset + cue_seconds)
        before, previous = previous, (onset, label)
        if before is not None:
            grace = late_s if late_s is not None and before[1] != rest_class else 0.0
            gap_start = before[0] + cue_seconds + grace
            in_gap = (t >= gap_start) & (t < onset)
            if onset - gap_start >= MIN_GAP_S and in_gap.any():
                gaps += 1
                gap_decisions += int(in_gap.sum())
                gap_moving += int((moving & in_gap).sum())
                moved = np.flatnonzero(moving & in_gap)
                gaps_moved_in += bool(len(moved))
                # only the movement just cued, held past its late answer: the hand slow to let go, not moving at rest
                gaps_moved_in_late += bool(len(moved)) and all(command[i] == before[1] for i in moved)
        if not seen_whole:
            continue
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
              "gaps": gaps, "gaps_moved_in": gaps_moved_in, "gaps_moved_in_late": gaps_moved_in_late,
              "gap_decisions": gap_decisions, "gap_moving": gap_moving, "latencies_s": latencies}
    return {**command_rates(counts), "late_onsets": late_onsets, "n_gaps": gaps,
            "n_rest_cues": rest_cues, "n_movement_cues": n_movement,
            "n_decisions": int(len(t)), "n_cues_unscored": n_unscored, "counts": counts}
