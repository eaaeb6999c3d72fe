"""The demo's rest gate, cross-fitted: how often does the hand move during rest cues, and what does it cost?

For each seed, ``bmi demo`` runs as a user runs it (or its folder is reused). Then each subject's held-out run is
cut in halves; the rest gate is chosen on one half as ``bmi demo`` chooses it (``bmi rehearse --min-hits 0.75``:
the least movement where none was cued, in rest cues and gaps, among the settings that answer 75 % of the movement
cues; the gate's defaults when none does) and scored on the other half, and the other way round, beside the served
decoder as trained, under the gate's defaults (threshold 0.7, dwell 200 ms, EMA weight 0.3) and under the setting
chosen on the half's rest cues alone (the rule before the gaps were scored). The scoring is
``bmi rehearse``'s (the rig's decision chain, offline): the rest cues the hand moved in, the share of rest decisions
moving, the gaps between cues it moved in (after a movement cue, the first half window left out: its late answer)
and those where it only held that movement, the movement cues answered by their own command and the median time to
it, pooled over seeds, subjects and halves.

    .venv/bin/python scripts/bench_demo_gate.py [--seeds 0,1,2,3,4,5] [--out bench_results/demo_gate]
        [--release SECONDS]  # train with windows of letting go after each movement cue (data.release)
        # about 3 min per seed on 2 cores; a seed whose folder holds summary.json is not run again
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
RULES = ("as trained", "gate defaults", "gate chosen on the other half", "chosen on its rest cues only (the rule before)")


def _demo(folder: Path, seed: int, release: float | None = None) -> dict:
    if not (folder / "summary.json").is_file():
        env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "offline"), WANDB_SILENT="true", MPLBACKEND="Agg")
        subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--out", str(folder), "--seed", str(seed),
                        "--stream-seconds", "60", *(["--release", str(release)] if release is not None else [])],
                       check=True, text=True, capture_output=True, cwd=ROOT, env=env)
    return json.loads((folder / "summary.json").read_text())


def crossfit_seed(folder: Path, seed: int, release: float | None = None) -> list[dict]:
    from datasets.config import DataConfig
    from datasets.typed import from_mapping
    from exports.onnx import read_model_metadata
    from pipeline.rehearse import choose_gate, choose_rest_gate, cued_part, read_cued, rehearse

    demo = _demo(folder, seed, release)
    run_dir = Path(demo["models"][demo["best"]]["run_dir"])
    raw = yaml.safe_load((folder / f"config_{demo['best']}.yaml").read_text())["data"]
    model = folder / "decoder.onnx"
    meta = read_model_metadata(model)
    held_out = json.loads((run_dir / "data_info.json").read_text())["split_summary"]["test_files"]
    recordings = read_cued([Path(f) for f in held_out], from_mapping(DataConfig, raw, "data"),
                           meta["preprocessing"]["ch_names"])
    sfreq = meta["preprocessing"]["sfreq_in"]
    rows = []
    for recording in recordings:
        middle = recording[1].shape[1] / sfreq / 2
        halves = (cued_part(recording, 0, middle, sfreq), cued_part(recording, middle, float("inf"), sfreq))
        for fit, scored in (halves, halves[::-1]):
            choice = choose_rest_gate(model, [fit])
            before = choose_gate(choice["rows"], choice["min_hits"], by="movement_time_during_rest")
            settings = {"as trained": (None, None, None), "gate defaults": ({}, "rest", None)}
            for rule, chosen in ((RULES[2], choice["chosen"]), (RULES[3], before)):
                settings[rule] = (chosen["gate"], "rest", chosen["ema_alpha"]) if chosen else ({}, "rest", None)
            for rule, (gate, rest_gate, alpha) in settings.items():
                (row,) = rehearse(model, [scored], [gate], rest_gate=rest_gate, ema_alphas=[alpha])
                rows.append({"seed": seed, "recording": Path(recording[0]).name, "rule": rule,
                             "chosen": {**gate, "ema_alpha": alpha} if rule in RULES[2:] and gate else None, **row})
    return rows


def pooled(rows: list[dict]) -> dict[str, dict]:
    out = {}
    for rule in RULES:
        mine = [r for r in rows if r["rule"] == rule]
        hits = sum(round(r["movement_hit_rate"] * r["movement_cues"]) for r in mine if r["movement_cues"])
        cues = sum(r["movement_cues"] for r in mine)
        rest = sum(r["rest_cues"] for r in mine)
        moved = sum(r["rest_cues_moved_in"] for r in mine)
        times = sorted(r["time_to_correct_s"] for r in mine if r["time_to_correct_s"] is not None)
        out[rule] = {"rest_cues_moved_in": moved, "rest_cues": rest, "hits": hits, "movement_cues": cues,
                     "gaps_moved_in": sum(r["gaps_moved_in"] for r in mine), "gaps": sum(r["gaps"] for r in mine),
                     "gaps_moved_in_late": sum(r["gaps_moved_in_late"] for r in mine),
                     "movement_time_during_rest": sum(r["movement_time_during_rest"] for r in mine) / len(mine),
                     "median_time_to_correct_s": times[len(times) // 2] if times else None}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2,3,4,5", help="demo seeds (three were too few to tell the rules apart)")
    p.add_argument("--out", default="bench_results/demo_gate", help="folder: demo folders and demo_gate.json")
    p.add_argument("--release", type=float, metavar="SECONDS",
                   help="train with windows of letting go (bmi demo --release, data.release); folders seedN-releaseS")
    args = p.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = f"-release{args.release:g}" if args.release is not None else ""
    rows = [row for seed in map(int, args.seeds.split(","))
            for row in crossfit_seed(out / f"seed{seed}{suffix}", seed, args.release)]
    summary = pooled(rows)
    (out / "demo_gate.json").write_text(json.dumps({"rows": rows, "pooled": summary}, indent=1))
    print("| served | rest cues the hand moved in | rest decisions moving (mean) | gaps between cues it moved in | "
          "of them only holding the cued movement | movement cues answered | time to correct (s, median) |")
    print("|---|---|---|---|---|---|---|")
    for rule, s in summary.items():
        print(f"| {rule} | {s['rest_cues_moved_in']} of {s['rest_cues']} ({s['rest_cues_moved_in'] / s['rest_cues']:.0%}) "
              f"| {s['movement_time_during_rest']:.1%} | {s['gaps_moved_in']} of {s['gaps']} "
              f"({s['gaps_moved_in'] / s['gaps']:.0%}) | {s['gaps_moved_in_late']} | {s['hits']} of {s['movement_cues']} "
              f"({s['hits'] / s['movement_cues']:.0%}) | {s['median_time_to_correct_s']:.2f} |")
    print(f"results: {out / 'demo_gate.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
