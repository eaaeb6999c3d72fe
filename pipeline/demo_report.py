"""The demo's online results (from the session and rig logs) and its Markdown report with plots."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np



STARTUP_STATES = ("starting", "settling", "checking_amplitude", "aligning")

def read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def recording_cues(recording: Path, events: dict[str, str]) -> tuple[list[tuple[float, float, str]], float]:
    """(onset, end, class) of the mapped cues in a recording, and its duration in seconds."""
    import mne

    raw = mne.io.read_raw(recording, preload=False, verbose="error")
    cues = [(float(a["onset"] - raw.first_time), float(a["onset"] - raw.first_time + a["duration"]), events[a["description"]])
            for a in raw.annotations if a["description"] in events]
    return cues, raw.n_times / raw.info["sfreq"]


def online_results(streamed: dict[str, Any], recording: Path, meta: dict[str, Any], raw_data: dict[str, Any],
                   model_path: Path | None = None) -> dict[str, Any]:
    """Latency, safety events, and how often the streamed decisions agree with the cue on screen.

    A decision counts against a cue when its window ended inside the cue's decoding window
    (cue onset + tmin .. cue onset + tmax, the training window). The player loops the file, so stream
    time is mapped back to file time modulo the recording's length.
    """
    rows = read_csv(streamed["session_log"])
    decisions = [r for r in rows if r["type"] == "decision"]
    events = {str(k): v for k, v in raw_data["events"].items()}
    cues, duration = recording_cues(recording, events)
    tmin, tmax = meta["window"]["tmin"], meta["window"]["tmax"]
    hits, total, per_class = 0, 0, {}
    for r in decisions:
        if not r["t_window_end"]:
            continue
        t_file = (float(r["t_window_end"]) - streamed["t_start"]) % duration
        for onset, _end, name in cues:
            if onset + tmin <= t_file <= onset + tmax:
                total += 1
                hits += r["command"] == name
                per_class.setdefault(name, [0, 0])
                per_class[name][0] += r["command"] == name
                per_class[name][1] += 1
                break
    latencies = np.array([float(r["latency_ms"]) for r in decisions if r["latency_ms"]]) if decisions else np.array([np.nan])
    # start-up states are not events; a real event (stale, nonfinite, ...) has its own row before any re-settling
    safety = [r for r in rows if r["type"] == "safe" and r["reason"] not in STARTUP_STATES]
    rig_rows = read_csv(streamed["rig_log"])
    aligned: dict[str, Any] = {"n_trials": 0}
    offline_recording: dict[str, Any] | None = None
    if model_path is not None and cues:
        offline = offline_cue_predictions(recording, meta, model_path, cues, raw_data)
        aligned = aligned_scores(decisions, streamed, cues, duration, meta, offline)
        scored = [(meta["classes"].index(name), p) for (_o, _e, name), p in zip(cues, offline) if p is not None]
        if scored:
            from .metrics import scores

            offline_recording = scores(np.array([s[0] for s in scored]), np.array([s[1] for s in scored]))
            offline_recording["n_trials"] = len(scored)
    return {
        "aligned": aligned,
        "offline_recording": offline_recording,
        "n_decisions": len(decisions),
        "n_cue_decisions": total,
        "cue_agreement": hits / total if total else float("nan"),
        "per_class_agreement": {k: v[0] / v[1] for k, v in per_class.items()},
        "chance": 1 / len(meta["classes"]),
        "latency_p50_ms": float(np.nanpercentile(latencies, 50)),
        "latency_p99_ms": float(np.nanpercentile(latencies, 99)),
        "safety_events": len(safety),
        "safety_reasons": sorted({r["reason"] for r in safety}),
        "rig_messages": len(rig_rows),
        "latencies_ms": latencies.tolist(),
        "cues": cues,
        "duration": duration,
    }


def offline_cue_predictions(recording: Path, meta: dict[str, Any], model_path: Path,
                            cues: list[tuple[float, float, str]], raw_data: dict[str, Any]) -> list[int | None]:
    """The exported model's class for each cue's training window (ending at cue + tmax), computed offline: the
    whole recording, read as training read it (``raw_data``, the config's data section: channel names renamed by
    its rule), through the same causal preprocessing from its first sample (``datasets.dsp``), the metadata's
    normalisation, and onnxruntime. None where the window falls outside the recording."""
    import onnxruntime as ort

    from datasets.config import DataConfig
    from datasets.dsp import CausalPreprocessor, PreprocessingSpec, apply_normalization
    from datasets.reading import read_raw
    from datasets.typed import from_mapping

    spec = PreprocessingSpec.from_dict(meta["preprocessing"])
    raw = read_raw(recording, from_mapping(DataConfig, raw_data, "data"))
    data = raw.get_data(picks=list(spec.ch_names))
    out = CausalPreprocessor(spec).process(data)
    n_times, tmax = int(meta["window"]["n_times"]), float(meta["window"]["tmax"])
    session = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    preds: list[int | None] = []
    for onset, _end, _name in cues:
        stop = int(round((onset + tmax) * spec.sfreq_in / spec.decim))
        if stop - n_times < 0 or stop > out.shape[1]:
            preds.append(None)
            continue
        window = apply_normalization(out[None, :, stop - n_times : stop].astype(np.float32), meta["normalization"])
        preds.append(int(session.run(["probabilities"], {"signals": window.astype(np.float32)})[0].argmax(1)[0]))
    return preds


def aligned_scores(decisions: list[dict[str, str]], streamed: dict[str, Any], cues: list[tuple[float, float, str]],
                   duration: float, meta: dict[str, Any], offline: list[int | None]) -> dict[str, Any]:
    """Online decisions scored the way the offline test scores windows: for every cue the stream passed, the
    decision whose window ended closest to cue + tmax, within one hop. Beside it, the offline prediction of the
    same window, so a difference between online and offline is told apart from a difference of windows."""
    from .metrics import scores

    classes = list(meta["classes"])
    tmax = float(meta["window"]["tmax"])
    ends = np.array([(float(r["t_window_end"]) - streamed["t_start"]) for r in decisions if r["t_window_end"]])
    commands = [r["command"] for r in decisions if r["t_window_end"]]
    if len(ends) < 2:
        return {"n_trials": 0}
    hop = float(np.median(np.diff(ends)))
    rows = []
    for (onset, _end, name), off in zip(cues, offline):
        for loop in range(int(ends[-1] // duration) + 1):  # the player loops the file
            target = onset + tmax + loop * duration
            i = int(np.argmin(np.abs(ends - target)))
            if abs(ends[i] - target) <= hop and commands[i] in classes:
                rows.append((classes.index(name), classes.index(commands[i]), off))
    if not rows:
        return {"n_trials": 0, "hop_s": hop}
    y = np.array([r[0] for r in rows])
    online = np.array([r[1] for r in rows])
    both = [r for r in rows if r[2] is not None]
    result = {"n_trials": len(rows), "hop_s": hop, "online": scores(y, online)}
    if both:
        y_b = np.array([r[0] for r in both])
        result["offline_same_windows"] = scores(y_b, np.array([r[2] for r in both]))
        result["online_offline_agreement"] = float(np.mean([r[1] == r[2] for r in both]))
    return result


def _latency_histogram(latencies: list[float], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.2))
    ax.hist(latencies, bins=40, color="tab:purple")
    ax.set_xlabel("decision latency (ms): chunk received -> command sent")
    ax.set_ylabel("decisions")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def aperture_with_cues(streamed: dict[str, Any], online: dict[str, Any]) -> tuple[list[dict[str, Any]], list[tuple]]:
    """The rig log's rows (hand aperture over time) and the recording's cues on the same time axis, for
    ``exports.runtime.rig.plot_aperture`` (the demo draws it: this module stays below the runtime)."""
    rows = [dict(r, t_arrival=float(r["t_arrival"]), aperture=float(r["aperture"]), safe=int(r["safe"]))
            for r in read_csv(streamed["rig_log"])]
    decisions = [r for r in read_csv(streamed["session_log"]) if r["type"] == "decision" and r["t_window_end"]]
    cues = []
    if rows and decisions:
        # rig arrival (wall clock) <-> stream time through the first decision's pair of clocks
        first = decisions[0]
        offset = float(first["t_wall"]) - rows[0]["t_arrival"]
        t_file0 = (float(first["t_window_end"]) - streamed["t_start"]) % online["duration"]
        span = rows[-1]["t_arrival"] - rows[0]["t_arrival"]
        for onset, end, name in online["cues"]:
            for loop in (0, 1):
                s = onset + loop * online["duration"] - t_file0 + offset
                e = end + loop * online["duration"] - t_file0 + offset
                if e > 0 and s < span:
                    cues.append((max(s, 0), min(e, span), name))
    return rows, cues


STILL = 0.02  # aperture travel (of the 0..1 range) below which the hand counts as still during a cue


def hand_at_rest(rows: list[dict[str, Any]], cues: list[tuple], rest_class: str = "rest") -> dict[str, Any]:
    """What the aperture plot shows during rest cues (``aperture_with_cues``' rows and cues, one time axis):
    how many rest cues the hand moved in (travel of at least ``STILL``), and its travel over all of them. Only
    the rest cues the record holds whole count, as in the command scoring: one cut by the record's first or last
    row (``aperture_with_cues`` clips it there) is left out and counted in ``cut``."""
    t = np.array([r["t_arrival"] for r in rows]) - (rows[0]["t_arrival"] if rows else 0.0)
    aperture = np.array([r["aperture"] for r in rows])
    travel, cut = [], 0
    for start, end, name in cues:
        if name != rest_class:
            continue
        if not len(t) or start <= 0 or end >= t[-1]:
            cut += 1
            continue
        inside = (t >= start) & (t <= end)
        before = np.flatnonzero(t < start)  # the aperture the cue began with
        path = np.r_[aperture[before[-1:]], aperture[inside]]
        travel.append(float(np.abs(np.diff(path)).sum()) if len(path) > 1 else 0.0)
    return {"rest_cues": len(travel), "moved_in": sum(x >= STILL for x in travel), "travel": round(sum(travel), 3),
            "cut": cut}


def write_report(out: Path, summary: dict[str, Any], runs: list[dict[str, Any]], best_dir: Path) -> Path:
    """``report.md`` with its figures (``figures/``; the demo draws ``aperture_vs_cues.png`` there itself)."""
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for name in ("learning_curves.png", "confusion_matrix.png"):
        if (best_dir / "plots" / name).is_file():
            shutil.copy(best_dir / "plots" / name, figures / name)
    online = summary["online"]
    _latency_histogram(online["latencies_ms"], figures / "latency_histogram.png")
    lines = [
        "# bmi demo report",
        "",
        f"Output folder: `{out}`. Everything below was produced by this run in {summary['seconds']:.0f} s.",
        "",
        "## Offline: training and comparison",
        "",
        "| decoder | val balanced acc. | test balanced acc. | test accuracy | test kappa | CSP+LDA test balanced acc. | run |",
        "|---|---|---|---|---|---|---|",
    ]
    for s in runs:
        base = (s.get("baseline") or {}).get("test", {}).get("balanced_accuracy")
        lines.append(f"| {s['model']} | {s['val']['balanced_accuracy']:.3f} | {s['test']['balanced_accuracy']:.3f} | "
                     f"{s['test']['accuracy']:.3f} | {s['test']['kappa']:.3f} | {base if base is None else f'{base:.3f}'} | "
                     f"`{Path(s['run_dir']).name}` |")
    lines += [
        "",
        f"Served: **{summary['best']}**, {summary['chosen_by']}. "
        f"Test sets: {runs[0].get('n_test')} trials.",
        "",
        "![learning curves](figures/learning_curves.png)",
        "",
        "![confusion matrix](figures/confusion_matrix.png)",
        "",
        "## Export",
        "",
        f"`{summary['onnx']}`: ONNX parity with PyTorch, max |logit difference| {summary['parity_max_abs_diff']:.2e}.",
        "",
        "## Online: live stream -> bmi serve -> bmi rig",
        "",
        f"- decisions: {online['n_decisions']}, rig messages received: {online['rig_messages']}",
        f"- agreement with the cues, every decision in the cue period (cue + tmin .. cue + tmax): "
        f"{online['cue_agreement']:.3f} over {online['n_cue_decisions']} decisions "
        f"(chance {online['chance']:.3f}); per class: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(online["per_class_agreement"].items())),
        *_aligned_lines(online),
        *_rest_lines(summary),
        f"- latency (chunk received -> command sent): p50 {online['latency_p50_ms']:.2f} ms, p99 {online['latency_p99_ms']:.2f} ms",
        f"- safety events: {online['safety_events']} {online['safety_reasons'] or ''}",
        "",
        "![latency](figures/latency_histogram.png)",
        "",
        "![aperture](figures/aperture_vs_cues.png)",
        "",
        "Logs: `session_log.csv` (every decision and safety event), `rig_log.csv` (every command the hand received).",
        "",
    ]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def _rest_lines(summary: dict[str, Any]) -> list[str]:
    """The report's lines on the hand during rest cues, and the rest gate it was served under."""
    lines = []
    if summary.get("rest_gate"):
        lines.append(f"- rest gate (`bmi serve {' '.join(summary['rest_gate']['serve_options'])}`): "
                     f"{summary['rest_gate']['why']}")
    elif summary.get("rest_gate_skipped"):
        lines.append(f"- no rest gate ({summary['rest_gate_skipped']}): the decoder's commands as trained")
    cmd = summary["online"].get("commands")
    if cmd and cmd["n_movement_cues"]:
        lines.append(f"- movement cues answered by their own command (as `bmi rehearse` scores them): "
                     f"{answered_text(cmd)}")
    if cmd and cmd["n_rest_cues"]:
        lines.append(f"- at rest: {false_moves_text(cmd)}")
    if cmd and cmd.get("n_gaps"):
        lines.append(f"- between cues (no cue asks for a movement; after a movement cue, its late answer left out): "
                     f"{between_cues_text(cmd)}")
    rest = summary["online"].get("hand_at_rest")
    if rest and rest["rest_cues"]:
        lines.append(f"- the hand moved during {rest['moved_in']} of the {rest['rest_cues']} rest cues streamed whole "
                     f"(aperture travel {rest['travel']:.2f} in all, of a 0..1 range)")
    return lines


def answered_text(cmd: dict[str, Any]) -> str:
    """Movement cues answered by their own command, and the median time to it."""
    soon = f", the first correct command {cmd['time_to_correct_s']:.1f} s after the cue (median)" if cmd["hits"] else ""
    return f"{cmd['hits']} of {cmd['n_movement_cues']} ({cmd['movement_hit_rate']:.2f}){soon}"


def false_moves_text(cmd: dict[str, Any]) -> str:
    """The share of rest-cue decisions commanding a movement, and the movement onsets in rest cues."""
    late = f", {cmd['late_onsets']} of them late (the previous cue's class)" if cmd["late_onsets"] else ""
    onsets = f"{cmd['false_onsets']} movement onset{'' if cmd['false_onsets'] == 1 else 's'}"
    return (f"{cmd['movement_time_during_rest']:.0%} of rest-cue decisions commanded a movement; {onsets} in "
            f"{cmd['n_rest_cues']} rest cues ({cmd['false_movements_per_min']:.1f} per minute{late})")


def between_cues_text(cmd: dict[str, Any]) -> str:
    """The share of decisions between cues commanding a movement, and the gaps the hand moved in."""
    late = (f" ({cmd['gaps_moved_in_late']} of them only holding the movement just cued)"
            if cmd.get("gaps_moved_in_late") else "")
    return (f"{cmd['movement_time_between_cues']:.0%} of decisions commanded a movement; the hand moved in "
            f"{cmd['gaps_moved_in']} of {cmd['n_gaps']} gaps{late}")


def _aligned_lines(online: dict[str, Any]) -> list[str]:
    """The report's lines on the decisions whose window matches the training window."""
    aligned, whole = online.get("aligned") or {}, online.get("offline_recording")
    lines = []
    if whole:
        lines.append(f"- offline, the exported model on every cue of this recording (window ending at cue + tmax): "
                     f"balanced accuracy {whole['balanced_accuracy']:.3f} over {whole['n_trials']} trials")
    if not aligned.get("n_trials"):
        lines.append("- aligned online score: no cue's window end (cue + tmax) fell inside the streamed period")
        return lines
    on = aligned["online"]
    line = (f"- aligned online score (the decision whose window ended within one hop, {aligned['hop_s'] * 1000:.0f} ms, "
            f"of cue + tmax): accuracy {on['accuracy']:.3f}, balanced {on['balanced_accuracy']:.3f} over "
            f"{aligned['n_trials']} trials")
    if "offline_same_windows" in aligned:
        off = aligned["offline_same_windows"]
        line += (f"; offline on the same trials: accuracy {off['accuracy']:.3f}; online and offline predictions agree on "
                 f"{aligned['online_offline_agreement']:.0%} of them")
    lines.append(line)
    return lines


def summary_json(summary: dict[str, Any]) -> str:
    slim = dict(summary)
    slim["online"] = {k: v for k, v in summary["online"].items() if k not in ("latencies_ms", "cues")}
    return json.dumps(slim, indent=2, default=str)
