"""Coming back the next day: yesterday's decoder on today's session, with and without re-alignment, fine-tuned.

For each simulated subject, two sessions (days) are written with the synthetic generator and a session shift
(``--shift``: the cap sits about a centimetre elsewhere and every channel's contact gain changes by about 20 %
at 1; 0 keeps only the day-to-day gain and noise). Day 1 is a calibration of 3 runs (the default recipe with
Euclidean alignment, as ``bmi calibrate`` trains it; run 3 tests). Day 2 starts with a short calibration run
(run 1) and is scored on runs 2 and 3. Every day-2 score runs the exported ONNX model the way ``bmi serve``
does: the runtime's causal preprocessing over the whole continuous recording, the runtime's normaliser,
onnxruntime, one decision per cue from the window at the training position (the "training window" score of
``bmi serve --cues``). The arms:

- *day 1*: the decoder's own test run (its summary), for reference;
- *day 2, day-1 alignment*: yesterday's decoder and yesterday's alignment matrix (``bmi serve`` without
  ``--align-seconds``);
- *day 2, re-aligned*: yesterday's decoder, the matrix estimated from the first ``--align-seconds`` (60) of
  settled data of day 2's calibration run, as ``bmi serve --align-seconds 60 --save-alignment`` does it
  (:func:`exports.runtime.alignment.estimate_alignment`), then used for runs 2-3 (``--alignment FILE``);
- *day 2, fine-tuned*: ``bmi finetune`` of yesterday's run on day 2's calibration run (its own alignment);
- *day 2, scratch*: the default recipe trained on day 2's calibration run alone (no yesterday).

    .venv/bin/python scripts/bench_sessions.py [--quick] [--out bench_results/sessions.json] [--docs-table] [--docs-dir DIR]

``--docs-table`` also writes the docs' results file ``sessions`` (scripts/results_file.py): the table above, one
column per shift.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("WANDB_MODE", "disabled")

import results_file  # noqa: E402  (scripts/, beside this file)

ARMS = ("day1_test", "day2_day1_alignment", "day2_realigned", "day2_finetuned", "day2_scratch")
LABELS = {
    "day1_test": "day 1 (own test run)",
    "day2_day1_alignment": "day 2, day-1 alignment",
    "day2_realigned": "day 2, re-aligned (first 60 s)",
    "day2_finetuned": "day 2, fine-tuned (1 run)",
    "day2_scratch": "day 2, scratch (1 run)",
}


def data_section(files: list[Path], test_runs: list[str]) -> dict:
    """The data: section ``bmi calibrate`` writes (its training window, band and alignment), for these files."""
    return {
        "files": [str(f) for f in files],
        "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
        "tmin": 0.5, "tmax": 2.5,
        "picks": {"types": ["eeg"]},
        "bandpass": [8.0, 30.0],
        "resample": 125.0,
        "split": {"method": "holdout", "by": "run", "test": test_runs},
        "euclidean_alignment": True,
    }


def train(data: dict, runs_dir: Path, name: str, seed: int) -> dict:
    from pipeline.record.config import config_from_mapping
    from pipeline.train import run_training

    cfg = config_from_mapping({"data": data, "name": name, "seed": seed, "runs_dir": str(runs_dir),
                               "tracking": {"mode": "disabled"}})
    return run_training(cfg, runs_dir, progress=False)


def finetune(run_dir: str, data: dict, folder: Path, seed: int) -> dict:
    import yaml

    from pipeline.finetune import finetune_config
    from pipeline.train import run_training

    patient = folder / "day2_patient.yaml"
    patient.write_text(yaml.safe_dump({"data": {k: data[k] for k in ("files", "events", "split")}, "seed": seed,
                                       "tracking": {"mode": "disabled"}}, sort_keys=False))
    cfg, config_dir = finetune_config(run_dir, patient)
    return run_training(cfg, config_dir, progress=False)


def export(run_dir: str) -> Path:
    from exports.onnx import export_run

    return export_run(run_dir, out=Path(run_dir) / "decoder.onnx").path


def continuous(path: Path, ch_names: list[str]) -> tuple[np.ndarray, float, list[tuple[float, str]]]:
    """A recording as the amplifier would stream it (volts, the model's input channels) and its cues."""
    import mne

    raw = mne.io.read_raw_fif(path, preload=True, verbose="error")
    data = raw.get_data(picks=ch_names)
    cues = [(float(a["onset"]), str(a["description"])) for a in raw.annotations]
    return data, float(raw.info["sfreq"]), cues


def preprocess(meta: dict, data: np.ndarray) -> tuple[np.ndarray, int]:
    """The runtime's causal preprocessing over a whole recording, and the first settled output sample."""
    from datasets.dsp import CausalPreprocessor, PreprocessingSpec

    spec = PreprocessingSpec.from_dict(meta["preprocessing"])
    return CausalPreprocessor(spec).process(data), spec.settle_out


def estimate_session_alignment(meta: dict, path: Path, seconds: float) -> np.ndarray:
    """``bmi serve --align-seconds``: the matrix from the first ``seconds`` of settled data."""
    from exports.runtime.alignment import estimate_alignment

    data, _, _ = continuous(path, meta["preprocessing"]["ch_names"])
    out, settle = preprocess(meta, data)
    n = int(round(seconds * meta["sfreq"]))
    if out.shape[1] - settle < n:
        raise ValueError(f"{path.name} holds less than {seconds:g} s of settled data.")
    return estimate_alignment(out[:, settle: settle + n], meta["window"]["n_times"])


def score_online(model: Path, paths: list[Path], matrix: np.ndarray | None) -> float:
    """Balanced accuracy of one decision per cue (window at the training position) through the runtime's
    preprocessing, normaliser (alignment ``matrix``, or the model's only one) and onnxruntime."""
    from datasets.dsp import Normalizer
    from exports.runtime.cues import balanced_accuracy
    from exports.runtime.model import DecoderSession

    decoder = DecoderSession(model)
    meta = decoder.meta
    norm = dict(meta["normalization"])
    if matrix is not None:
        norm["alignment"] = {"session": np.asarray(matrix).tolist()}
    normalizer = Normalizer(norm, "session" if matrix is not None else None)
    sfreq, n_times, tmax = meta["sfreq"], meta["window"]["n_times"], meta["window"]["tmax"]
    y_true, y_pred = [], []
    for path in paths:
        data, _, cues = continuous(path, meta["preprocessing"]["ch_names"])
        out, settle = preprocess(meta, data)
        for onset, label in cues:
            if label not in decoder.classes:
                continue
            end = int(round((onset + tmax) * sfreq))
            if end - n_times < settle or end > out.shape[1]:
                continue
            probs = decoder.predict(normalizer(out[:, end - n_times: end]))
            y_true.append(decoder.classes.index(label))
            y_pred.append(int(np.argmax(probs)))
    return balanced_accuracy(y_true, y_pred, len(decoder.classes))


def one_subject(folder: Path, subject: int, shift: float, seed: int, trials: int, align_seconds: float) -> dict:
    from datasets.synthetic import write_synthetic

    files = write_synthetic(folder / "data", n_subjects=subject + 1, n_sessions=2, n_runs=3, trials_per_class=trials,
                            seed=seed, session_shift=shift)
    mine = [f for f in files if f.name.startswith(f"sub-{subject + 1:02d}_")]
    day1 = [f for f in mine if "_ses-01_" in f.name]
    day2 = [f for f in mine if "_ses-02_" in f.name]
    runs = folder / "runs"
    t0 = time.perf_counter()
    base = train(data_section(day1, ["03"]), runs, f"day1-s{subject}-shift{shift:g}", seed)
    model = export(base["run_dir"])
    tuned = finetune(base["run_dir"], data_section(day2, ["02", "03"]), folder, seed)
    scratch = train(data_section(day2, ["02", "03"]), runs, f"day2-scratch-s{subject}-shift{shift:g}", seed)
    test_files = day2[1:]
    matrix = estimate_session_alignment(read_meta(model), day2[0], align_seconds)
    result = {
        "day1_test": base["test"]["balanced_accuracy"],
        "day2_day1_alignment": score_online(model, test_files, None),
        "day2_realigned": score_online(model, test_files, matrix),
        "day2_finetuned": score_online(export(tuned["run_dir"]), test_files, None),
        "day2_scratch": score_online(export(scratch["run_dir"]), test_files, None),
        "model": base["model"],
        "seconds": round(time.perf_counter() - t0, 1),
    }
    print(f"  subject {subject + 1}, shift {shift:g}: " + ", ".join(f"{LABELS[a]} {result[a]:.3f}" for a in ARMS),
          flush=True)
    return result


def read_meta(model: Path) -> dict:
    from exports.runtime.model import DecoderSession

    return DecoderSession(model, warmup=0).meta


def table(summary: dict) -> str:
    shifts = list(summary)
    lines = ["| arm | " + " | ".join(f"shift {s}" for s in shifts) + " |", "|---|" + "---|" * len(shifts)]
    for arm in ARMS:
        lines.append(f"| {LABELS[arm]} | " + " | ".join(
            f"{summary[s][arm]['mean']:.3f} ± {summary[s][arm]['sd']:.3f}" for s in shifts) + " |")
    return "\n".join(lines)


def docs_rows(summary: dict) -> list[list[str]]:
    """The docs' table of a run: one row per arm, ``mean ± sd`` over subjects per shift (as :func:`table`)."""
    return [[LABELS[arm], *(f"{summary[s][arm]['mean']:.3f} ± {summary[s][arm]['sd']:.3f}" for s in summary)]
            for arm in ARMS]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--shifts", default="0,1", help="session shifts to compare (default 0,1)")
    parser.add_argument("--subjects", type=int, default=3, help="simulated subjects per shift (default 3)")
    parser.add_argument("--trials", type=int, default=10, help="trials per class per run (default 10)")
    parser.add_argument("--align-seconds", type=float, default=60.0, help="re-alignment data (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated subjects and training")
    parser.add_argument("--quick", action="store_true", help="one subject, shift 1")
    parser.add_argument("--out", default="bench_results/sessions.json", help="results file (JSON; a .md beside)")
    results_file.add_arguments(parser)
    args = parser.parse_args()
    from pipeline.quiet import quiet_third_party

    quiet_third_party()
    shifts = [1.0] if args.quick else [float(s) for s in args.shifts.split(",")]
    n_subjects = 1 if args.quick else args.subjects
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for shift in shifts:
            print(f"shift {shift:g}:", flush=True)
            folder = Path(tmp) / f"shift{shift:g}"
            results[f"{shift:g}"] = [one_subject(folder, s, shift, args.seed, args.trials, args.align_seconds)
                                     for s in range(n_subjects)]
    summary = {s: {a: {"mean": round(float(np.mean([r[a] for r in rs])), 3),
                       "sd": round(float(np.std([r[a] for r in rs])), 3)} for a in ARMS}
               for s, rs in results.items()}
    md = table(summary)
    print("\n" + md)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "per_subject": results, "summary": summary}, indent=2))
    out.with_suffix(".md").write_text(md + "\n")
    if (docs := results_file.docs_folder(args)) is not None:
        path = results_file.write_table(
            "sessions", title="A calibration day and the next: balanced accuracy by option",
            columns=["arm", *(f"shift {s}" for s in summary)], rows=docs_rows(summary), folder=docs,
            source=f"scripts/bench_sessions.py (raw results: {args.out})")
        print(f"docs results file: {path}")
    print(f"results: {out}")


if __name__ == "__main__":
    main()
