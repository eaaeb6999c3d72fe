"""Decoding accuracy of every registered decoder and of the CSP+LDA reference, on the same splits.

Real data: PhysioNet EEG Motor Movement/Imagery, subject S001 (when present beside the project), earlier
runs train, the last run tests: left/right fist real (3, 7 / 11), imagined (4, 8 / 12), fists/feet real and
imagined (5, 6, 9, 10 / 13, 14). Synthetic: a MEG-like set (306 channels, 1 kHz, 2 subjects). One generic
recipe for every decoder (no per-subject tuning): 8-30 Hz causal band-pass, 0.5-2.5 s after the cue,
AdamW lr 3e-3, batch 16, up to 60 epochs with early stopping on validation balanced accuracy (20% of the
training trials). Test sets are small: the trial counts are printed beside each figure. ``eegnet_cropped`` is
EEGNet with cropped training (random 1.5 s crops, each window four times per epoch; evaluated on the crop
ending at 2.5 s, as online).

    .venv/bin/python scripts/bench_accuracy.py [--quick] [--models eegnet,eegnet_cropped] [--out bench_results/accuracy.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
EEGMMIDB = ROOT.parent / "shared" / "data" / "eegmmidb" / "S001"
TASKS = {
    "left_right_real": ((3, 7), (11,), {"T1": "left", "T2": "right"}),
    "left_right_imagined": ((4, 8), (12,), {"T1": "left", "T2": "right"}),
    "fists_feet_real_and_imagined": ((5, 6, 9, 10), (13, 14), {"T1": "fists", "T2": "feet"}),
}

#: recipe variants reported beside the plain decoders: name -> (decoder, config overrides)
VARIANTS = {
    # cropped training (Schirrmeister et al. 2017): 1.5 s crops of the 2 s window, each window 4 times per epoch
    "eegnet_cropped": ("eegnet", ["data.crop={seconds: 1.5, crops_per_epoch: 4}"]),
}


def experiment(files: list[str], events: dict, test_runs: list[str], runs_dir: Path, cache: Path, epochs: int,
               extra: dict | None = None) -> dict:
    data = {"files": files, "events": events, "tmin": 0.5, "tmax": 2.5, "bandpass": [8.0, 30.0],
            "split": {"method": "holdout", "by": "run", "test": test_runs}, "batch_size": 16,
            "cache_dir": str(cache)}
    data.update(extra or {})
    return {"data": data, "model": {"name": "eegnet"},
            "trainer": {"max_epochs": epochs, "early_stopping_patience": 20, "enable_progress_bar": False},
            "optim": {"lr": 3e-3}, "tracking": {"mode": "disabled"}, "runs_dir": str(runs_dir)}


def evaluate_all(name: str, raw: dict, models: list[str]) -> dict:
    from pipeline.config import config_from_mapping
    from pipeline.train import run_training

    out = {}
    for model in models:
        base, overrides = VARIANTS.get(model, (model, []))
        cfg = config_from_mapping(raw, [f"model.name={base}", *overrides])
        try:
            s = run_training(cfg, ROOT, progress=False)
        except ValueError as err:  # e.g. a window too short for the architecture
            out[model] = {"skipped": str(err)}
            print(f"{name:>30} {model:>9}: skipped ({err})")
            continue
        out[model] = {"test": s["test"], "val": s["val"], "n_train": s["n_train"], "n_val": s["n_val"],
                      "n_test": s["n_test"], "epochs": s["epochs_trained"]}
        if model not in VARIANTS:  # the reference sees the plain split's windows
            out["csp_lda"] = {"test": s["baseline"]["test"], "val": s["baseline"]["val"], "n_test": s["n_test"]}
        print(f"{name:>30} {model:>9}: test balanced accuracy {s['test']['balanced_accuracy']:.3f} "
              f"(n_test={s['n_test']}, n_train={s['n_train']}); CSP+LDA {s['baseline']['test']['balanced_accuracy']:.3f}")
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="15 epochs, EEGNet/ShallowConvNet/GRU only")
    parser.add_argument("--models", help="comma-separated decoders and variants (default: every registered decoder "
                        f"and {', '.join(VARIANTS)})")
    parser.add_argument("--out", default="bench_results/accuracy.json")
    args = parser.parse_args()
    import models as registry

    known = [*registry.available(), *VARIANTS]
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
        unknown = [m for m in models if m not in known]
        if unknown or not models:
            parser.error(f"--models {args.models!r}: unknown {unknown}; choose from {', '.join(known)}")
    else:
        models = ["eegnet", "shallow", "gru"] if args.quick else known
    epochs = 15 if args.quick else 60
    results: dict = {"recipe": "8-30 Hz causal, 0.5-2.5 s, AdamW lr 3e-3, batch 16, early stopping 20",
                     "epochs_max": epochs}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if EEGMMIDB.is_dir():
            for task, (train, test, events) in TASKS.items():
                files = [str(EEGMMIDB / f"S001R{r:02d}.edf") for r in (*train, *test)]
                raw = experiment(files, events, [f"{r:02d}" for r in test], tmp / "runs", tmp / "cache", epochs,
                                 {"rename": "eegbci"})
                results[f"eegmmidb_S001_{task}"] = evaluate_all(task, raw, models)
        else:
            results["eegmmidb"] = {"skipped": f"not found: {EEGMMIDB}"}
        from datasets.synthetic import write_synthetic

        files = write_synthetic(tmp / "meg", modality="meg", n_subjects=2, n_runs=3, trials_per_class=10, seed=5)
        raw = experiment([str(f) for f in files], {"rest": "rest", "grasp": "grasp", "open": "open"}, ["03"],
                         tmp / "runs", tmp / "cache", epochs, {"picks": {"types": ["meg"]}, "resample": 125.0})
        results["synthetic_meg_306ch"] = evaluate_all("synthetic MEG 306 ch", raw, models)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
