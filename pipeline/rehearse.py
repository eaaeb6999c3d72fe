"""``bmi rehearse``: an exported model's closed loop on cued recordings, scored against their cues.

Each recording goes through the rig's own decision chain (:func:`exports.runtime.closed_loop.decode_recording`:
the causal filters chunk by chunk, onnxruntime, the server's smoothing and gate, one decision per hop) as fast as
the CPU goes, and the commands are scored against the recording's cues
(:func:`~exports.runtime.closed_loop.score_commands`): false movement commands per minute of rest cues (and how
many of them were late: the class of the movement cue just ended, while the window still held mostly it), the share
of rest decisions that moved the hand, the rest cues and the gaps between cues the hand moved in, the share of
movement cues answered by their own command, and the time to it. Comma-separated gate settings are each tried, so a
lab can choose a gate's threshold and dwell on a held-out calibration run of its own patient (the trade-off that
docs/benchmarks/gate.rst measures on the project's data), and so are comma-separated EMA weights (``--ema-alpha``:
how strongly the server smooths the probabilities). A model trained with Euclidean alignment takes the session's matrix as
``bmi serve`` does (``--subject``, ``--align-seconds``, ``--alignment``); each recording is a session of its own.
Cues that begin before a recording's first decision (filters settling, alignment being estimated) or run past its last
sample are not scored.
``--min-hits`` picks a setting (:func:`choose_gate`) and prints the ``bmi serve`` options that apply it.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add ``bmi rehearse`` to the ``bmi`` command's subparsers (:func:`pipeline.cli.build_parser`)."""
    p = subparsers.add_parser(
        "rehearse", help="score an exported model's closed loop (commands, gate) against a cued recording's cues",
        description="Stream cued recordings through the rig's own decision chain (causal filters chunk by chunk, "
                    "onnxruntime, the server's smoothing and gate, one decision per hop) as fast as the CPU goes and "
                    "score the commands against the cues: false movement commands per minute of rest cues, the share "
                    "of rest decisions that moved the hand, the rest cues and the gaps between cues it moved in "
                    "(after a movement cue, the gap's first half window is its late answer), the share of movement "
                    "cues answered by their own command "
                    "and the time to it. Comma-separated gate settings are each tried, to choose a gate's threshold "
                    "and dwell on a held-out calibration run of the patient.")
    p.add_argument("model", help="an ONNX file from bmi export")
    p.add_argument("--data", required=True, metavar="CONFIG.yaml",
                   help="config whose data: section names the cued recordings (files, events, rename)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="dotted override of that config")
    p.add_argument("--gate-rest-class", metavar="CLASS",
                   help="a model without a gate: gate it on 1 - P(CLASS), as bmi serve --gate-rest-class")
    p.add_argument("--gate-threshold", metavar="T[,T...]",
                   help="gate thresholds to try (default: the model's, or bmi serve --gate-rest-class's)")
    p.add_argument("--gate-dwell-ms", metavar="MS[,MS...]", help="gate dwells to try (default: the model's or 200)")
    p.add_argument("--ema-alpha", metavar="A[,A...]",
                   help="EMA weights of the newest window to try, as bmi serve --ema-alpha (default: its 0.3)")
    p.add_argument("--rest-class", default="rest", help="the class whose cues are rest (default rest)")
    p.add_argument("--action", action="append", metavar="CLASS=ACTION",
                   help="hand action of a class, as bmi serve --action (repeatable)")
    g = p.add_argument_group("Euclidean alignment (models trained with it), as bmi serve")
    g.add_argument("--subject", help="training subject whose alignment matrix to use")
    g.add_argument("--align-seconds", type=float, metavar="N",
                   help="estimate each recording's alignment from its first N seconds (no decisions meanwhile)")
    g.add_argument("--alignment", type=Path, metavar="FILE", help="alignment file saved by bmi serve --save-alignment")
    p.add_argument("--min-hits", type=float, metavar="FRACTION",
                   help="choose the setting that moves the hand least where no movement was cued (share of "
                        "decisions in rest cues and gaps between cues, then false movements per minute) among those "
                        "that answer at least FRACTION of the movement cues, and print its bmi serve options")
    p.add_argument("--decisions", type=Path, metavar="FILE.csv",
                   help="write every hop's decision (sample index, command, action, why withheld, probabilities) "
                        "under the one setting tried, or the one --min-hits chose, as bmi serve's session log has them")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_main)


def _values(text: str | None, name: str, scale: float = 1.0) -> list[float | None]:
    if text is None:
        return [None]
    try:
        return [float(v) * scale for v in text.split(",")]
    except ValueError:
        raise ValueError(f"'{name}' ({text!r}) must be numbers separated by commas, e.g. 0.6,0.7,0.8.") from None


class CuedRecording(NamedTuple):
    """A recording for a rehearsal: the model's channels in its order (``[n_chans, n]``), its cues (onset s, class)
    on the data's own clock, the cues' typical length (s), and the sample indices where the stream stalled."""

    path: Path
    data: np.ndarray
    cues: list
    cue_s: float
    restarts: tuple[int, ...] = ()


#: annotations that mark a discontinuity (MNE's: a skip in acquisition, a boundary between joined recordings):
#: the stream stalled there, and the rig's chain restarts
STALL_MARKS = ("BAD_ACQ_SKIP", "EDGE boundary", "BAD boundary")


def read_cued(files: list[Path], data_cfg, ch_names: list[str]) -> list[CuedRecording]:
    """Each recording as a :class:`CuedRecording`."""
    from datasets.reading import read_raw

    out = []
    for path in files:
        raw = read_raw(path, data_cfg)
        missing = [c for c in ch_names if c not in raw.ch_names]
        if missing:
            raise ValueError(f"{path} lacks the model's channels {missing[:5]}{' ...' if len(missing) > 5 else ''} "
                             "(set data.rename if the names differ only in style).")
        cued = [a for a in raw.annotations if a["description"] in data_cfg.events]
        if not cued:
            raise ValueError(f"{path} has no cue the config's events name ({sorted(data_cfg.events)}); its annotations "
                             f"are {sorted(set(raw.annotations.description))[:10]}.")
        # onsets on the data's own clock (0 at its first sample), as the decisions' times are
        offset = raw.first_time if raw.annotations.orig_time is not None else 0.0
        cues = [(float(a["onset"]) - offset, data_cfg.events[a["description"]]) for a in cued]
        restarts = tuple(sorted({int(round((float(a["onset"]) - offset) * raw.info["sfreq"]))
                                 for a in raw.annotations if a["description"] in STALL_MARKS}))
        out.append(CuedRecording(path, raw.get_data(picks=ch_names).astype(np.float32), cues,
                                 float(np.median([float(a["duration"]) for a in cued])), restarts))
    return out


def cued_part(recording, start_s: float, end_s: float, sfreq: float):
    """A :func:`read_cued` recording between two times (s), with the cues that lie whole inside it, on its own
    clock (0 at ``start_s``)."""
    path, data, cues, cue_s, restarts = recording
    first, last = int(round(start_s * sfreq)), int(round(min(end_s, data.shape[1] / sfreq) * sfreq))
    return CuedRecording(path, data[:, first:last], [(t - start_s, c) for t, c in cues if start_s <= t and t + cue_s <= end_s],
                         cue_s, tuple(r - first for r in restarts if first < r < last))


def rehearse(model: str | Path, recordings, gate_settings: list[dict[str, float]], rest_gate: str | None = None,
             rest_class: str = "rest", actions: dict[str, str] | None = None,
             alignment: dict[str, Any] | None = None, ema_alphas: list[float | None] = (None,)) -> list[dict[str, Any]]:
    """One row per EMA weight and gate setting (``ema_alphas`` outer; None: the server's default smoothing): the
    scores over every recording (their counts pooled, then the rates). Each recording is decoded once; only the
    server's rules run again for each setting. ``alignment``: ``subject``, ``align_seconds`` or ``path``, as
    :func:`exports.runtime.alignment.choose_alignment` takes them (each recording a session of its own)."""
    from exports.onnx import read_model_metadata
    from exports.runtime.alignment import choose_alignment
    from exports.runtime.closed_loop import command_rates, decide, decode_windows, late_seconds, score_commands
    from exports.runtime.smoothing import SmoothingConfig

    from .metrics import wilson_interval

    if not recordings:
        raise ValueError("rehearse needs at least one cued recording (data.files).")
    smoothings = [SmoothingConfig() if a is None else SmoothingConfig(alpha=a) for a in ema_alphas]  # before decoding

    meta = read_model_metadata(model)
    align = {"subject": None, "align_seconds": None, "path": None, **(alignment or {})}
    sfreq = meta["preprocessing"]["sfreq_in"]
    # a cue running past its recording's last sample (half a sample's rounding allowed) is not scored
    decoded = [(decode_windows(model, r.data, alignment=choose_alignment(meta, **align), restarts=r.restarts),
                r.cues, r.cue_s, (r.data.shape[1] + 0.5) / sfreq) for r in recordings]
    late_s = late_seconds(meta)
    rows = []
    for smoothing, gate in itertools.product(smoothings, gate_settings):
        scores = [score_commands(decide(windows, smoothing=smoothing, gate=gate or None, rest_gate=rest_gate,
                                        actions=actions), cues, cue_s,
                                 rest_class=rest_class, from_s=windows.first_decoded_t,
                                 late_s=late_s, until_s=until_s)
                  for windows, cues, cue_s, until_s in decoded]
        n = {k: sum(s["counts"][k] for s in scores) for k in scores[0]["counts"] if k != "latencies_s"}
        n["latencies_s"] = [x for s in scores for x in s["counts"]["latencies_s"]]
        rates = command_rates(n)
        rows.append({"gate": gate, "ema_alpha": smoothing.alpha,
                     **{k: rates[k] for k in ("false_movements_per_min", "movement_time_during_rest",
                                              "movement_hit_rate", "time_to_correct_s")},
                     "false_onsets": n["false_onsets"], "late_onsets": n["late_onsets"],
                     "hits_interval": wilson_interval(n["hits"], n["movement_cues"]),  # 95 %: few cues say little
                     "rest_minutes": round(n["rest_minutes"], 3), "rest_cues": n["rest_cues"],
                     "rest_cues_moved_in": n["rest_cues_moved_in"], "movement_cues": n["movement_cues"],
                     # between cues, where the hand should rest too (closed_loop.score_commands)
                     "gaps": n["gaps"], "gaps_moved_in": n["gaps_moved_in"], "gaps_moved_in_late": n["gaps_moved_in_late"],
                     "movement_time_between_cues": rates["movement_time_between_cues"],
                     "movement_time_uncued": rates["movement_time_uncued"],
                     "cues_unscored": sum(s["n_cues_unscored"] for s in scores),
                     "alignment": sorted({windows.alignment.source for windows, *_ in decoded})})
    return rows


DECISION_FIELDS = ["recording", "sample_index", "t_window_end", "command", "action", "reason", "gate", "probabilities"]


def write_decisions(path: Path, model: str | Path, recordings: list[CuedRecording], row: dict[str, Any],
                    rest_gate: str | None, actions: dict[str, str] | None, alignment: dict[str, Any] | None) -> Path:
    """Every hop of every recording under one of :func:`rehearse`'s settings (``row``), to a CSV file written
    atomically: the decision chain's output as ``bmi serve --log`` records its decisions (a withheld hop holds,
    with its reason)."""
    import csv
    import io

    from datasets.atomic import write_text
    from exports.onnx import read_model_metadata
    from exports.runtime.alignment import choose_alignment
    from exports.runtime.closed_loop import decode_recording
    from exports.runtime.smoothing import SmoothingConfig

    meta = read_model_metadata(model)
    align = {"subject": None, "align_seconds": None, "path": None, **(alignment or {})}
    smoothing = SmoothingConfig() if row["ema_alpha"] is None else SmoothingConfig(alpha=row["ema_alpha"])
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, DECISION_FIELDS, lineterminator="\n")
    writer.writeheader()
    for r in recordings:
        d = decode_recording(model, r.data, smoothing=smoothing, gate=row["gate"] or None, actions=actions,
                             rest_gate=rest_gate, alignment=choose_alignment(meta, **align), restarts=r.restarts)
        for i in range(len(d.t)):
            decided = not d.reason[i]
            writer.writerow({"recording": str(r.path), "sample_index": int(d.sample_index[i]),
                             "t_window_end": round(float(d.t[i]), 6), "command": d.command[i], "action": d.action[i],
                             "reason": d.reason[i], "gate": "" if np.isnan(d.gate[i]) else round(float(d.gate[i]), 6),
                             "probabilities": json.dumps({c: round(float(p), 6) for c, p in zip(d.classes, d.probabilities[i])})
                             if decided else ""})
    return write_text(path, buffer.getvalue())


def choose_gate(rows: list[dict[str, Any]], min_hits: float, by: str = "movement_time_uncued") -> dict[str, Any] | None:
    """The row that moves the hand least where no movement was cued among those answering at least ``min_hits`` of
    the movement cues: the smallest share of decisions commanding a movement in rest cues and in the gaps between
    cues together (``movement_time_uncued``: what the aperture shows; continuous, so less noisy than counting
    onsets on a short run; the gaps nearly triple the demo's rest-like decisions and count a hand slow to let go),
    then the fewest false movements per minute, more hits, the quicker correct command. None when no row answers
    enough cues. ``by``: the share to minimise (``movement_time_during_rest``: rest cues only, the rule before)."""
    if not 0 <= min_hits <= 1:
        raise ValueError(f"'--min-hits' ({min_hits:g}) must be a fraction of the movement cues, in [0, 1].")
    eligible = [r for r in rows if r["movement_hit_rate"] is not None and r["movement_hit_rate"] >= min_hits - 1e-9]

    def order(r):
        return (r[by] or 0.0, r["false_movements_per_min"] or 0.0, -r["movement_hit_rate"],
                r["time_to_correct_s"] if r["time_to_correct_s"] is not None else float("inf"))

    return min(eligible, key=order) if eligible else None


#: what ``bmi demo --rest-gate`` and ``bmi calibrate`` try when they choose a rest gate on held-out data themselves
CHOICE_GRID = tuple({"threshold": t, "dwell_s": d} for t in (0.6, 0.7, 0.8, 0.85) for d in (0.2, 0.35, 0.5))
#: ... each under the server's default smoothing (None: EMA weight 0.3) and a heavier one, which halved the flat
#: decoder's false movements on the synthetic EEG session (10.0 -> 5.6 per minute, hits 0.96 -> 0.87; under the
#: rest gate 2.2 -> 0.6: scripts/bench_gate.py --quick --datasets synthetic_eeg,synthetic_meg --bands mu_beta
#: --models flat --seeds 0,1,2 --ema-alpha 0.1, 2026-11-27; this measurement is not on the docs site)
CHOICE_EMA_ALPHAS = (None, 0.1)
CHOICE_MIN_HITS = 0.75


def choose_rest_gate(model: str | Path, recordings, rest_class: str = "rest",
                     min_hits: float = CHOICE_MIN_HITS, actions: dict[str, str] | None = None) -> dict[str, Any]:
    """A rest gate on ``1 - P(rest_class)`` chosen on cued ``recordings`` (:func:`read_cued`) as ``bmi rehearse
    --min-hits`` chooses, over :data:`CHOICE_GRID` less the settings a window with no evidence would open
    (:func:`~exports.runtime.smoothing.gate_prior_warning`), each with every weight of :data:`CHOICE_EMA_ALPHAS`:
    ``chosen`` (a row, or None when none answers ``min_hits`` of the movement cues), ``serve_options`` (None with
    it; the gate's options and ``--ema-alpha``) and every row (``rows``). ``actions``: the hand action of classes
    not named like one (``--action``), as the server will be given them."""
    from exports.onnx import read_model_metadata
    from exports.runtime.smoothing import gate_in_force, gate_prior_warning

    meta = read_model_metadata(model)
    grid = [g for g in CHOICE_GRID if not gate_prior_warning(gate_in_force(meta, rest_class, g), meta["classes"])]
    rows = rehearse(model, recordings, grid, rest_gate=rest_class, actions=actions, ema_alphas=CHOICE_EMA_ALPHAS)
    chosen = choose_gate(rows, min_hits)
    options = serve_options(gate_in_force(meta, rest_class, chosen["gate"]), rest_class,
                            chosen["ema_alpha"]) if chosen else None
    return {"chosen": chosen, "serve_options": options, "rows": rows, "min_hits": min_hits}


def serve_options(gate, rest_gate: str | None, ema_alpha: float | None = None) -> list[str]:
    """The ``bmi serve`` options that apply gate settings in force (a :class:`~exports.runtime.smoothing.GateConfig`,
    or None for no gate) and an EMA weight (None: the server's default)."""
    gate_options = [] if gate is None else [*(["--gate-rest-class", rest_gate] if rest_gate else []),
                                            "--gate-threshold", f"{gate.threshold:g}",
                                            "--gate-dwell-ms", f"{gate.dwell_s * 1000:g}"]
    return gate_options + ([] if ema_alpha is None else ["--ema-alpha", f"{ema_alpha:g}"])


def _main(args: argparse.Namespace) -> int:
    from datasets.config import DataConfig
    from datasets.reading import list_recordings
    from datasets.typed import apply_overrides, from_mapping, load_yaml
    from exports.onnx import read_model_metadata
    from exports.runtime.actions import parse_action_args
    from exports.runtime.alignment import choose_alignment
    from exports.runtime.smoothing import SmoothingConfig, gate_in_force, gate_prior_warning

    meta = read_model_metadata(args.model)
    if args.min_hits is not None:
        choose_gate([], args.min_hits)  # a bad fraction is refused before the work
    alignment = {"subject": args.subject, "align_seconds": args.align_seconds, "path": args.alignment}
    choose_alignment(meta, **alignment)  # refuse a wrong choice before reading the recordings
    raw = apply_overrides(load_yaml(args.data), args.set)
    data_cfg = from_mapping(DataConfig, raw.get("data", raw), "data")
    if args.rest_class not in data_cfg.class_names:
        raise ValueError(f"'--rest-class' ({args.rest_class!r}) is not one of the config's classes {data_cfg.class_names}.")
    settings = [{k: v for k, v in (("threshold", t), ("dwell_s", d)) if v is not None}
                for t, d in itertools.product(_values(args.gate_threshold, "--gate-threshold"),
                                              _values(args.gate_dwell_ms, "--gate-dwell-ms", 1 / 1000))]
    gates = [gate_in_force(meta, args.gate_rest_class, g) for g in settings]  # in force (defaults), or refused now
    alphas = _values(args.ema_alpha, "--ema-alpha")
    for alpha in (a for a in alphas if a is not None):  # refused before the recordings are read, as bmi serve does
        SmoothingConfig(alpha=alpha)
    if args.decisions is not None and args.min_hits is None and len(settings) * len(alphas) > 1:
        raise ValueError(f"'--decisions' writes one setting's decisions; {len(settings) * len(alphas)} settings are to "
                         "be tried: give one (one --gate-threshold, --gate-dwell-ms and --ema-alpha) or --min-hits "
                         "to choose one.")
    files = [r.path for r in list_recordings(data_cfg, Path(args.data).resolve().parent)]  # files or BIDS
    recordings = read_cued(files, data_cfg, meta["preprocessing"]["ch_names"])
    rows = rehearse(args.model, recordings, settings, args.gate_rest_class, args.rest_class,
                    parse_action_args(args.action), alignment, alphas)
    chosen = choose_gate(rows, args.min_hits) if args.min_hits is not None else None
    if args.decisions is not None and (args.min_hits is None or chosen is not None):
        write_decisions(args.decisions, args.model, recordings, chosen or rows[0], args.gate_rest_class,
                        parse_action_args(args.action), alignment)
    in_force = gate_in_force(meta, args.gate_rest_class, chosen["gate"]) if chosen else None
    alpha = chosen["ema_alpha"] if chosen and args.ema_alpha is not None else None
    options = serve_options(in_force, args.gate_rest_class, alpha) if chosen and (in_force or alpha) else None
    if args.json:
        choice = {"chosen": chosen, "serve_options": options} if args.min_hits is not None else {}
        print(json.dumps({"model": str(args.model), "recordings": [str(r[0]) for r in recordings], "rows": rows,
                          **choice}))
        return 0
    rest_min = rows[0]["rest_minutes"]
    unscored = rows[0]["cues_unscored"]
    print(f"{len(recordings)} recording(s): {rest_min:.1f} min of rest cues, {rows[0]['movement_cues']} movement cues"
          + (f" ({unscored} cue(s) before the first decision or past the end of the data not scored)" if unscored else ""))
    if meta["normalization"].get("alignment"):
        print(f"alignment: {'; '.join(rows[0]['alignment'])}")
    for warning in sorted({gate_prior_warning(g, meta["classes"]) for g in gates if g} - {None}):
        print(f"warning: {warning}")
    ema = args.ema_alpha is not None  # a column of its own only when the weights are being tried
    print(f"{'gate threshold / dwell':>24}  {'EMA weight  ' if ema else ''}{'false moves/min at rest':>23}  "
          f"{'late onsets':>11}  {'moving at rest':>14}  {'rest cues moved in':>18}  {'gaps moved in':>13}  "
          f"{'moving, no cue':>14}  {'hits (95% interval)':>19}  {'time to correct (s)':>19}")

    def fmt(value, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    def moved_in(r, what: str = "rest_cues") -> str:
        return f"{r[what + '_moved_in']} of {r[what]}" if r[what] else "-"

    def late(r) -> str:
        return f"{r['late_onsets']} of {r['false_onsets']}"

    for r in rows:
        g = gate_in_force(meta, args.gate_rest_class, r["gate"])  # the row's own setting, as the choice reads it
        label = "no gate" if g is None else f"{g.threshold:g} / {g.dwell_s * 1000:g} ms"
        weight = f"{r['ema_alpha']:>10g}  " if ema else ""
        print(f"{label:>24}  {weight}{fmt(r['false_movements_per_min'], '23.2f')}  {late(r):>11}  "
              f"{fmt(r['movement_time_during_rest'], '14.3f')}  "
              f"{moved_in(r):>18}  {moved_in(r, 'gaps'):>13}  {fmt(r['movement_time_uncued'], '14.3f')}  "
              f"{hits_text(r):>19}  "
              f"{fmt(r['time_to_correct_s'], '19.2f')}")
    if args.min_hits is None:
        return 0
    if chosen is None:
        print(f"no setting answers {args.min_hits:.0%} of the movement cues; try lower thresholds or dwells")
    else:
        what = "no gate" if in_force is None else f"{in_force.threshold:g} / {in_force.dwell_s * 1000:g} ms"
        what += f", EMA weight {alpha:g}" if alpha is not None else ""
        hint = " (the model has none; add --gate-rest-class CLASS to try one)" if in_force is None else ""
        serve = f" -> bmi serve {args.model} ... {' '.join(options)}" if options else ""
        print(f"chosen (least moving where no movement was cued, rest cues and gaps, with hits >= {args.min_hits:g}): "
              f"{what}{hint}{serve}")
        print(f"its hits: {hits_text(chosen)} over {chosen['movement_cues']} movement cues (in brackets the 95% "
              "interval of the rate behind them: a few cues pin it loosely)")
    return 0


def hits_text(row: dict[str, Any]) -> str:
    """A row's hit rate with its 95 % interval, e.g. ``0.77 (0.50-0.92)``."""
    if row["movement_hit_rate"] is None:
        return "-"
    lo, hi = row["hits_interval"]
    return f"{row['movement_hit_rate']:.2f} ({lo:.2f}-{hi:.2f})"


def uncued_text(row: dict[str, Any]) -> str:
    """What a row's choice minimised, in words: e.g. ``3% of rest decisions moving (5% with the gaps between cues)``."""
    at_rest = row["movement_time_during_rest"]
    rest = "no rest cue" if at_rest is None else f"{at_rest:.0%} of rest decisions moving"
    return rest + (f" ({row['movement_time_uncued']:.0%} with the gaps between cues)" if row.get("gaps") else "")
