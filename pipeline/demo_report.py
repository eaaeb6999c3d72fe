"""The demo's online results (from the session and rig logs) and its Markdown report with plots."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np


def _read_csv(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(path.open())) if path.is_file() else []


def recording_cues(recording: Path, events: dict[str, str]) -> tuple[list[tuple[float, float, str]], float]:
    """(onset, end, class) of the mapped cues in a recording, and its duration in seconds."""
    import mne

    raw = mne.io.read_raw(recording, preload=False, verbose="error")
    cues = [(float(a["onset"] - raw.first_time), float(a["onset"] - raw.first_time + a["duration"]), events[a["description"]])
            for a in raw.annotations if a["description"] in events]
    return cues, raw.n_times / raw.info["sfreq"]


def online_results(streamed: dict[str, Any], recording: Path, meta: dict[str, Any], raw_data: dict[str, Any]) -> dict[str, Any]:
    """Latency, safety events, and how often the streamed decisions agree with the cue on screen.

    A decision counts against a cue when its window ended inside the cue's decoding window
    (cue onset + tmin .. cue onset + tmax, the training window). The player loops the file, so stream
    time is mapped back to file time modulo the recording's length.
    """
    rows = _read_csv(streamed["session_log"])
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
    safety = [r for r in rows if r["type"] == "safe" and r["reason"] not in ("starting",)]
    rig_rows = _read_csv(streamed["rig_log"])
    return {
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


def _aperture_with_cues(streamed: dict[str, Any], online: dict[str, Any], path: Path) -> Path:
    """Hand aperture (rig log) over the streamed time with the recording's cues drawn on the same axis."""
    from exports.runtime.rig import plot_aperture

    rows = [dict(r, t_arrival=float(r["t_arrival"]), aperture=float(r["aperture"]), safe=int(r["safe"]))
            for r in _read_csv(streamed["rig_log"])]
    decisions = [r for r in _read_csv(streamed["session_log"]) if r["type"] == "decision" and r["t_window_end"]]
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
    return plot_aperture(rows, path, cues)


def write_report(out: Path, summary: dict[str, Any], runs: list[dict[str, Any]], best_dir: Path,
                 streamed: dict[str, Any]) -> Path:
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    for name in ("learning_curves.png", "confusion_matrix.png"):
        if (best_dir / "plots" / name).is_file():
            shutil.copy(best_dir / "plots" / name, figures / name)
    online = summary["online"]
    _latency_histogram(online["latencies_ms"], figures / "latency_histogram.png")
    _aperture_with_cues(streamed, online, figures / "aperture_vs_cues.png")
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
        f"Best by validation balanced accuracy: **{summary['best']}**. Test sets: {runs[0].get('n_test')} trials.",
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
        f"- agreement with the cues: {online['cue_agreement']:.3f} over {online['n_cue_decisions']} decisions "
        f"(chance {online['chance']:.3f}); per class: "
        + ", ".join(f"{k} {v:.2f}" for k, v in sorted(online["per_class_agreement"].items())),
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


def summary_json(summary: dict[str, Any]) -> str:
    slim = dict(summary)
    slim["online"] = {k: v for k, v in summary["online"].items() if k not in ("latencies_ms", "cues")}
    return json.dumps(slim, indent=2, default=str)
