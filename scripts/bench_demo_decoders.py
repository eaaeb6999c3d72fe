"""The demo's decoders at rest: which of them keeps the hand still during rest cues, and at what cost?

For each seed, ``bmi demo`` runs as a user runs it (synthetic recordings of two subjects, every decoder of
``--models`` trained, one chosen and streamed). Then every trained decoder, not only the chosen one, is exported
(``bmi export``) and rehearsed (``bmi rehearse``: the rig's decision chain with the server's defaults, no gate)
on both subjects' held-out run, whole: false movement commands per minute of rest cue, the share of rest
decisions moving, the rest cues the hand moved in, the movement cues answered by their own command and the time
to it. The streamed part of the demo sees 2-6 rest cues; the rehearsal sees ~23 per seed.

    .venv/bin/python scripts/bench_demo_decoders.py [--seeds 0,1,2] [--models logvar,eegnet,gru]
        [--out bench_results/demo_decoders]      # about 4 min per seed on 2 cores
        [--docs-table] [--docs-dir DIR]          # also the docs' results file demo_decoders (scripts/results_file.py)

A seed whose demo folder already holds ``summary.json`` is not run again.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import yaml

import results_file  # scripts/, beside this file

BMI = [sys.executable, "-m", "pipeline.cli"]
ROOT = Path(__file__).resolve().parents[1]


def _run(args: list[str]) -> subprocess.CompletedProcess:
    env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "offline"), WANDB_SILENT="true", MPLBACKEND="Agg")
    return subprocess.run(BMI + args, check=True, text=True, capture_output=True, cwd=ROOT, env=env)


def rehearse_seed(folder: Path, seed: int, models: list[str]) -> list[dict]:
    if not (folder / "summary.json").is_file():
        _run(["demo", "--out", str(folder), "--seed", str(seed), "--stream-seconds", "60", "--models", ",".join(models)])
    demo = json.loads((folder / "summary.json").read_text())
    data = json.loads((Path(demo["models"][models[0]]["run_dir"]) / "data_info.json").read_text())
    test_files = data["split_summary"]["test_files"]
    events = yaml.safe_load((folder / "data" / "config.yaml").read_text())["data"]["events"]
    cues = folder / "rehearse_data.yaml"
    cues.write_text(yaml.safe_dump({"data": {"files": test_files, "events": events}}))
    rows = []
    for model in models:
        onnx = folder / f"{model}.onnx"
        _run(["export", demo["models"][model]["run_dir"], "--out", str(onnx)])
        row = json.loads(_run(["rehearse", str(onnx), "--data", str(cues), "--json"]).stdout)["rows"][0]
        rows.append({"seed": seed, "model": model, "served": model == demo["best"],
                     "val": demo["models"][model]["val"]["balanced_accuracy"],
                     "test": demo["models"][model]["test"]["balanced_accuracy"], **row})
    return rows


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--models", default="logvar,eegnet,gru")
    p.add_argument("--out", default="bench_results/demo_decoders")
    results_file.add_arguments(p)
    args = p.parse_args()
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    models = args.models.split(",")
    rows = [r for seed in map(int, args.seeds.split(",")) for r in rehearse_seed(out / f"seed{seed}", seed, models)]
    columns = ["seed", "decoder", "val / test balanced acc.", "false moves/min at rest", "moving at rest",
               "rest cues moved in", "hits", "time to correct (s)"]
    cells = [[str(r["seed"]), f"{r['model']}{' (served)' if r['served'] else ''}", f"{r['val']:.3f} / {r['test']:.3f}",
              f"{r['false_movements_per_min']:.2f}", f"{r['movement_time_during_rest']:.1%}",
              f"{r['rest_cues_moved_in']} of {r['rest_cues']}", f"{r['movement_hit_rate']:.2f}",
              f"{r['time_to_correct_s']:.2f}"] for r in rows]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    table = "\n".join(lines)
    print(table)
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    (out / "results.md").write_text(table + "\n")
    print(f"written: {out / 'results.json'}, {out / 'results.md'}")
    if (docs := results_file.docs_folder(args)) is not None:
        path = results_file.write_table(
            "demo_decoders", title="The demo's decoders rehearsed on both subjects' whole held-out run",
            columns=columns, rows=cells, folder=docs,
            source=f"scripts/bench_demo_decoders.py (raw results: {out / 'results.json'})")
        print(f"docs results file: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
