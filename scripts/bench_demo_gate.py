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
        [--quick] [--models NAMES]  # bmi demo --quick / --models: a smoke run of this script (tests), not a measurement
        [--docs-table NAME[,NAME]] [--docs-dir DIR]  # also the docs' results files named (scripts/results_file.py)
        # about 3 min per seed on 2 cores; a seed whose folder holds summary.json is not run again

``--docs-table NAME[,NAME]`` also writes the named docs' results files (``docs/benchmarks/results/NAME.json``) from
this run's pooled rows; ``--docs-dir DIR`` writes them to DIR instead (tests, trial runs; it needs
``--docs-table``):

  demo_between_cues  the table the script prints, one row per rule (the committed one: ``bench_demo_gate.py``,
                     seeds 0-5)
  demo_release       trained (on the cues, or ``release S s``) and served (as trained, the gate chosen, the gate's
                     defaults): rest cues and gaps the hand moved in, movement cues answered, time to correct. The
                     committed table was made by several runs (``--seeds 0,1,2``, and ``--release S`` for each S,
                     and two by hand: class weights and 1 s windows, which this script has no option for); a run
                     writes the rows it measured, and its file names its own command.
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
if str(Path(__file__).resolve().parent) not in sys.path:  # imported as a module (tests), not run
    sys.path.append(str(Path(__file__).resolve().parent))
import results_file  # noqa: E402  (scripts/, beside this file)

RULES = ("as trained", "gate defaults", "gate chosen on the other half", "chosen on its rest cues only (the rule before)")
DOCS_TABLES = ("demo_between_cues", "demo_release")
#: demo_release's rules, in its order, as it names them (the rule before is demo_between_cues' alone)
RELEASE_RULES = {RULES[0]: "as trained", RULES[2]: "gate chosen (the demo's default)", RULES[1]: "gate defaults"}
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


def _demo(folder: Path, seed: int, release: float | None = None, quick: bool = False,
          models: str | None = None) -> dict:
    if not (folder / "summary.json").is_file():
        env = dict(os.environ, WANDB_MODE=os.environ.get("WANDB_MODE", "offline"), WANDB_SILENT="true", MPLBACKEND="Agg")
        # --quick streams the demo's own 8 s: the scores below are on the held-out runs, not on the stream
        subprocess.run([sys.executable, "-m", "pipeline.cli", "demo", "--out", str(folder), "--seed", str(seed),
                        *(["--quick"] if quick else ["--stream-seconds", "60"]),
                        *(["--models", models] if models else []),
                        *(["--release", str(release)] if release is not None else [])],
                       check=True, text=True, capture_output=True, cwd=ROOT, env=env)
    return json.loads((folder / "summary.json").read_text())


def folder_name(seed: int, release: float | None = None, quick: bool = False, models: str | None = None) -> str:
    """A seed's demo folder: ``seedN``, then what made it other than the demo's defaults (a folder is reused)."""
    return (f"seed{seed}" + (f"-release{release:g}" if release is not None else "") + ("-quick" if quick else "")
            + (f"-{models.replace(',', '+')}" if models else ""))


def crossfit_seed(folder: Path, seed: int, release: float | None = None, quick: bool = False,
                  models: str | None = None) -> list[dict]:
    from datasets.config import DataConfig
    from datasets.typed import from_mapping
    from exports.onnx import read_model_metadata
    from pipeline.rehearse import choose_gate, choose_rest_gate, cued_part, read_cued, rehearse

    demo = _demo(folder, seed, release, quick, models)
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


def _of(n: int, total: int) -> str:
    """``n of total (p%)``, as the printed table."""
    return f"{n} of {total} ({n / total:.0%})" if total else f"{n} of {total}"


def _count(n: int, total: int) -> str:
    """``n (p %)``, as demo_release."""
    return f"{n} ({100 * n / total:.0f} %)" if total else str(n)


def _seconds(value: float | None) -> str | None:
    return None if value is None else f"{value:.2f}"


def rule_rows(summary: dict[str, dict]) -> list[list]:
    """The table of a run, one row per rule (demo_between_cues' columns; None: no time measured)."""
    return [[rule, _of(s["rest_cues_moved_in"], s["rest_cues"]), f"{s['movement_time_during_rest']:.1%}",
             _of(s["gaps_moved_in"], s["gaps"]), str(s["gaps_moved_in_late"]), _of(s["hits"], s["movement_cues"]),
             _seconds(s["median_time_to_correct_s"])] for rule, s in summary.items()]


BETWEEN_CUES_COLUMNS = ["served", "rest cues the hand moved in", "rest decisions moving (mean)",
                        "gaps between cues it moved in", "of them only holding the cued movement",
                        "movement cues answered", "time to correct (s, median)"]
RELEASE_COLUMNS = ["trained", "served", "rest cues the hand moved in", "gaps it moved in", "movement cues answered",
                   "time to correct (s)"]


def _seeds_text(seeds: list[int]) -> str:
    if len(seeds) > 2 and seeds == list(range(seeds[0], seeds[-1] + 1)):
        return f"seeds {seeds[0]}-{seeds[-1]}"
    return f"seed{'s' if len(seeds) > 1 else ''} {', '.join(map(str, seeds))}"


def docs_table(name: str, summary: dict[str, dict], seeds: list[int], release: float | None) -> dict:
    """One docs' results table (``title``, ``columns``, ``rows``) of a run's pooled rows."""
    n = len(seeds)
    if name == "demo_between_cues":
        over = f"over {_NUMBERS[n] if n < len(_NUMBERS) else n} seed{'' if n == 1 else 's'}"
        return {"title": f"The demo's gate cross-fitted {over}, gaps between cues scored",
                "columns": BETWEEN_CUES_COLUMNS, "rows": rule_rows(summary)}
    if name == "demo_release":
        trained = "on the cues (2 s windows, the default)" if release is None else f"release {release:g} s"
        return {"title": f"Windows of letting go (data.release), {_seeds_text(seeds)}", "columns": RELEASE_COLUMNS,
                "rows": [[trained, label, _count(s["rest_cues_moved_in"], s["rest_cues"]),
                          _count(s["gaps_moved_in"], s["gaps"]), _count(s["hits"], s["movement_cues"]),
                          _seconds(s["median_time_to_correct_s"])]
                         for rule, label in RELEASE_RULES.items() for s in [summary[rule]]]}
    raise ValueError(f"unknown docs table {name!r}; known: {', '.join(DOCS_TABLES)}")


def _table_names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in DOCS_TABLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {unknown or text!r}; known: {', '.join(DOCS_TABLES)}")
    return names


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seeds", default="0,1,2,3,4,5", help="demo seeds (three were too few to tell the rules apart)")
    p.add_argument("--out", default="bench_results/demo_gate", help="folder: demo folders and demo_gate.json")
    p.add_argument("--release", type=float, metavar="SECONDS",
                   help="train with windows of letting go (bmi demo --release, data.release); folders seedN-releaseS")
    p.add_argument("--quick", action="store_true",
                   help="bmi demo --quick (one subject, few trials, one epoch, 8 s streamed): a smoke run of this "
                        "script, not a measurement; folders seedN-quick")
    p.add_argument("--models", metavar="NAMES", help="the demo's decoders (bmi demo --models; default: the demo's)")
    # results_file.add_arguments's --docs-table is a flag; this script's names the table(s) its rows go to
    p.add_argument("--docs-table", type=_table_names, metavar="NAME[,NAME]",
                   help="also write these docs' results files (docs/benchmarks/results/NAME.json) from this run: "
                        f"{', '.join(DOCS_TABLES)}")
    p.add_argument("--docs-dir", default=None, metavar="DIR",
                   help="write the docs' results file(s) here instead of docs/benchmarks/results/ "
                        "(with --docs-table; for tests and trial runs)")
    args = p.parse_args()
    if args.docs_dir is not None and not args.docs_table:
        p.error(f"--docs-dir: name the table(s) with --docs-table NAME[,NAME] ({', '.join(DOCS_TABLES)})")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    seeds = [int(seed) for seed in args.seeds.split(",")]
    rows = [row for seed in seeds
            for row in crossfit_seed(out / folder_name(seed, args.release, args.quick, args.models), seed,
                                     args.release, args.quick, args.models)]
    summary = pooled(rows)
    (out / "demo_gate.json").write_text(json.dumps({"rows": rows, "pooled": summary}, indent=1))
    print("| " + " | ".join(BETWEEN_CUES_COLUMNS) + " |")
    print("|" + "---|" * len(BETWEEN_CUES_COLUMNS))
    for row in rule_rows(summary):
        print("| " + " | ".join(results_file.MISSING if cell is None else cell for cell in row) + " |")
    print(f"results: {out / 'demo_gate.json'}")
    if (docs := results_file.docs_folder(args)) is not None:
        for name in args.docs_table:
            table = docs_table(name, summary, seeds, args.release)
            path = results_file.write_table(
                name, title=table["title"], columns=table["columns"], rows=table["rows"], folder=docs,
                source=f"scripts/bench_demo_gate.py (raw results: {out / 'demo_gate.json'})")
            print(f"docs results file: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
