"""Data loading: first load through MNE (read, filter, epoch, write the cache) vs cached load (memory-mapped),
in epochs per second and as a ratio, with the peak memory of each, on the real PhysioNet recordings (when
present) and on a larger synthetic MEG-like set (306 channels, 1 kHz, 30 minutes by default).

Each measurement runs in a fresh child process, so its peak resident memory (VmHWM) is that load's own.

    .venv/bin/python scripts/bench_data.py [--minutes 30] [--quick] [--out bench_results/data.json] [--docs-table] [--docs-dir DIR]

``--docs-table`` also writes the docs' results file ``data_loading`` (scripts/results_file.py), one row per data
set measured.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import results_file  # noqa: E402  (scripts/, beside this file)

EEGMMIDB = ROOT.parent / "shared" / "data" / "eegmmidb" / "S001"

CHILD = """
import json, sys, time

def peak_mb():
    # VmHWM is this process image's own peak (ru_maxrss would carry the parent's over fork + exec)
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

import numpy as np
sys.path.insert(0, {root!r})
from datasets.config import DataConfig
from datasets.epochs import load_epochs
from datasets.typed import from_mapping
cfg = from_mapping(DataConfig, json.loads({cfg!r}), "data")
t = time.perf_counter()
ep = load_epochs(cfg, {folder!r})
checksum = float(np.asarray(ep.X[:: max(1, len(ep.y) // 50)], dtype=np.float64).sum())  # touch the data
seconds = time.perf_counter() - t
print(json.dumps({{"seconds": seconds, "epochs": int(len(ep.y)), "shape": list(ep.X.shape),
                  "peak_rss_mb": peak_mb(), "checksum": checksum}}))
"""


def measure(cfg: dict, folder: Path) -> dict:
    code = CHILD.format(root=str(ROOT), cfg=json.dumps(cfg), folder=str(folder))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def compare(name: str, cfg: dict, folder: Path) -> dict:
    first = measure(cfg, folder)
    cached = measure(cfg, folder)
    result = {
        "epochs": first["epochs"], "shape": first["shape"],
        "first_load": {"seconds": first["seconds"], "epochs_per_s": first["epochs"] / first["seconds"],
                       "peak_rss_mb": first["peak_rss_mb"]},
        "cached_load": {"seconds": cached["seconds"], "epochs_per_s": cached["epochs"] / cached["seconds"],
                        "peak_rss_mb": cached["peak_rss_mb"]},
    }
    result["speedup"] = first["seconds"] / cached["seconds"]
    print(f"{name}: {first['epochs']} epochs {first['shape']}: first load {first['seconds']:.2f} s "
          f"({result['first_load']['epochs_per_s']:.0f} epochs/s, peak {first['peak_rss_mb']:.0f} MB), cached "
          f"{cached['seconds']:.3f} s ({result['cached_load']['epochs_per_s']:.0f} epochs/s, peak "
          f"{cached['peak_rss_mb']:.0f} MB): x{result['speedup']:.0f}")
    return result


def docs_rows(results: dict) -> list[list]:
    """The docs' table of a run: one row per data set measured (a skipped one is left out)."""
    rows = []
    for name, r in results.items():
        if "skipped" in r:
            continue
        first, cached = r["first_load"], r["cached_load"]
        rows.append([name, r["epochs"], f"{first['epochs_per_s']:.0f} epochs/s", f"{cached['epochs_per_s']:.0f} epochs/s",
                     f"x{r['speedup']:.0f}", f"{first['peak_rss_mb']:.0f} / {cached['peak_rss_mb']:.0f} MB"])
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0, help="length of the synthetic MEG set")
    parser.add_argument("--quick", action="store_true", help="5 minutes of MEG instead of 30")
    parser.add_argument("--out", default="bench_results/data.json")
    results_file.add_arguments(parser)
    args = parser.parse_args()
    minutes = 5.0 if args.quick else args.minutes
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if EEGMMIDB.is_dir():
            files = sorted(str(p) for p in EEGMMIDB.glob("S001R*.edf"))
            results["eegmmidb_S001_12_runs"] = compare("eegmmidb S001 (12 EDF runs)", {
                "files": files, "events": {"T0": "rest", "T1": "t1", "T2": "t2"}, "rename": "eegbci",
                "tmin": 0.0, "tmax": 4.0, "bandpass": [8.0, 30.0], "cache_dir": str(tmp / "cache_real")}, tmp)
        else:
            results["eegmmidb_S001_12_runs"] = {"skipped": f"not found: {EEGMMIDB}"}
        from datasets.synthetic import write_synthetic

        # one run is ~ 2 + n_trials x (3 s cue + 2 s gap) s; 3 classes x 40 trials -> ~10 minutes per run
        n_runs = max(1, int(round(minutes / 10)))
        files = write_synthetic(tmp / "meg", modality="meg", n_subjects=1, n_runs=n_runs, trials_per_class=40,
                                sfreq=1000.0, seed=0)
        results["synthetic_meg_306ch_1kHz"] = compare(f"synthetic MEG (306 ch, 1 kHz, ~{n_runs * 10} min)", {
            "files": [str(f) for f in files], "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
            "tmin": 0.0, "tmax": 2.0, "picks": {"types": ["meg"]}, "bandpass": [8.0, 30.0],
            "cache_dir": str(tmp / "cache_meg")}, tmp)
        results["synthetic_meg_306ch_1kHz"]["minutes"] = n_runs * 10
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    if (docs := results_file.docs_folder(args)) is not None:
        path = results_file.write_table(
            "data_loading", title="Epochs: first load through MNE against the cache",
            columns=["data set", "epochs", "first load (MNE)", "cached load", "ratio", "peak memory first / cached"],
            rows=docs_rows(results), folder=docs, source=f"scripts/bench_data.py (raw results: {args.out})")
        print(f"docs results file: {path}")
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
