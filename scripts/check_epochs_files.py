"""The real check for cut trials (``data.files`` of ``-epo.fif``): real EEG cut into trials with MNE, saved as
Epochs files, trained with the defaults and scored on held-out trials beside the classical references (CSP+LDA,
tangent space) fitted on the same trials.

No package on the registry bundles a public cut-trial set (the BCI competitions' trials), and there is no other
network here, so the trials are cut from the real PhysioNet EEG Motor Movement/Imagery recordings of subject S001
beside the project (left vs right fist, T1 / T2, 4 s trials from 0.5 s before the cue), one ``-epo.fif`` per run,
with the subject and run in the trials' metadata only (the file names carry no groups). The test run is a real
movement run (07); training takes the other runs. Each band is trained with several seeds: the default (mu/beta,
where the run's view check warns when the trials carry slow fields instead) and ``auto`` (the check chooses the
band and the decoder, :mod:`pipeline.views`).

    .venv/bin/python scripts/check_epochs_files.py [--runs 03 04 07] [--test 07] [--seeds 0 1 2]
        [--bands mu_beta auto] [--out bench_results/epochs_files.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EEGMMIDB = ROOT.parent / "shared" / "data" / "eegmmidb" / "S001"


def cut_trials(folder: Path, runs: list[str], out: Path, tmin: float, tmax: float) -> list[Path]:
    """One ``-epo.fif`` per run: T1 / T2 trials cut with MNE, channel names standardised, groups in the metadata."""
    import mne
    import pandas as pd

    files = []
    for i, run in enumerate(runs):
        raw = mne.io.read_raw_edf(folder / f"S001R{run}.edf", preload=True, verbose="error")
        mne.datasets.eegbci.standardize(raw)
        events, event_id = mne.events_from_annotations(raw, event_id={"T1": 1, "T2": 2}, verbose="error")
        epochs = mne.Epochs(raw, events, event_id, tmin=tmin, tmax=tmax, baseline=None, preload=True, verbose="error")
        epochs.metadata = pd.DataFrame({"subject": ["001"] * len(epochs), "run": [run] * len(epochs)})
        path = out / f"trials_{i}-epo.fif"  # no groups in the name: the metadata holds them
        epochs.save(path, overwrite=True, verbose="error")
        files.append(path)
    return files


def train_once(files: list[Path], work: Path, band: str, seed: int, test: str) -> dict:
    from pipeline.record.config import ExperimentConfig
    from datasets.typed import from_mapping
    from pipeline.train import run_training

    raw = {
        "data": {"files": [str(f) for f in files], "events": {"T1": "left_fist", "T2": "right_fist"},
                 "montage": "colin27_1005", "bandpass": band,
                 "split": {"method": "holdout", "by": "run", "test": [test]}, "cache_dir": str(work / "cache")},
        "tracking": {"mode": "disabled"}, "seed": seed, "runs_dir": str(work / "runs"),
    }
    cfg = from_mapping(ExperimentConfig, raw, "config")
    start = time.perf_counter()
    summary = run_training(cfg, work, progress=False)
    refs = {name: ref.get("test", {}).get("balanced_accuracy") for name, ref in summary["baselines"].items()}
    return {"band": band, "seed": seed, "model": summary["model"], "seconds": round(time.perf_counter() - start, 1),
            "view_check": summary.get("view_check"), "recipe": summary.get("recipe"),
            "warnings": [w for w in summary.get("warnings", []) if "slow movement-related fields" in w],
            "n_train": summary.get("n_train"), "n_test": summary.get("n_test"),
            "test_balanced_accuracy": summary["test"]["balanced_accuracy"], "references": refs}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=EEGMMIDB)
    parser.add_argument("--runs", nargs="+", default=["03", "04", "07"])
    parser.add_argument("--test", default="07")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--bands", nargs="+", default=["mu_beta", "auto"],
                        help="data.bandpass values: presets or auto (the default mu_beta band, then auto)")
    parser.add_argument("--out", type=Path, default=ROOT / "bench_results" / "epochs_files.json")
    args = parser.parse_args(argv)
    missing = [r for r in args.runs if not (args.data / f"S001R{r}.edf").is_file()]
    if missing:
        print(f"real recordings not found: runs {missing} under {args.data}", file=sys.stderr)
        return 2
    from datasets.dsp import BAND_PRESETS

    unknown = [b for b in args.bands if b not in BAND_PRESETS and b != "auto"]
    if unknown:
        parser.error(f"--bands {unknown}: must be presets among {', '.join(BAND_PRESETS)}, or auto")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        files = cut_trials(args.data, args.runs, work, tmin=-0.5, tmax=4.0)
        results = [train_once(files, work, band, seed, args.test) for band in args.bands for seed in args.seeds]
    for r in results:
        print(f"{r['band']:8s} seed {r['seed']}: {r['model']} test balanced accuracy {r['test_balanced_accuracy']:.3f}"
              f" (CSP+LDA {r['references'].get('csp_lda')}, tangent space {r['references'].get('tangent_space')}),"
              f" {r['n_train']} train / {r['n_test']} test trials, {r['seconds']} s")
        check = r["view_check"]
        if check:
            print(f"    view check on the training trials: {check['scores']} -> {check['choice']}"
                  + ("; warned" if r["warnings"] else ""))
    doc = {"what": "PhysioNet EEGMMIDB S001 cut into -epo.fif trials (-0.5..4 s around T1/T2), data.tmin..tmax "
                   "defaults, holdout run " + args.test, "runs": args.runs, "results": results}
    from datasets import atomic

    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_json(args.out, doc)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
