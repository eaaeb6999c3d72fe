"""Decoding accuracy on small real data: the default ``bmi train``, named recipes, seed ensembles, fine-tuning,
the classical references and (when installed) braindecode's decoders, side by side on the same splits.

Real data: PhysioNet EEG Motor Movement/Imagery, subject S001 (when present beside the project): earlier runs
train, the last run(s) test: left/right fist real (3, 7 / 11), imagined (4, 8 / 12), fists/feet real and
imagined (5, 6, 9, 10 / 13, 14). Synthetic: a MEG-like set (306 channels, 1 kHz, 2 subjects, run 03 tests).
Every recipe sees the same windows (0.5-2.5 s after the cue, causal 8-30 Hz, train-only standardisation);
validation is 20% of the training trials (whole trials), on which the small-data default then refits
(``trainer.refit``; the classical references are fitted on the same trials); figures are test balanced accuracy,
mean +- standard deviation over the seeds (each seed draws its own validation trials and initial weights).

Recipes:
  default         ``bmi train`` with no tuning (model.name auto and every other default)
  eegnet          ``model.name: eegnet`` and nothing else
  eegnet_augment  EEGNet with augmentation (time shift 0.1 s, Gaussian noise 0.1, channel dropout 0.1)
  logvar32        the log-variance network with 32 spatial filters instead of 16 (``model.params.n_filters: 32``)
  logvar_ea       the log-variance network with Euclidean alignment (``data.euclidean_alignment: true``)
  logvar_seg4     the log-variance network with the window in 4 equal segments, each with its own log variances
                  (``model.params.n_segments: 4``: the features follow the power's time course in the window)
  default_no_augment / default_smoothed / default_best_epoch
                  the default without its augmentation, or keeping the checkpoint of the lowest smoothed
                  validation loss / the best single-epoch validation balanced accuracy instead of the last
  ensemble(R)     one decoder averaging the probabilities of recipe R's seed runs (``bmi ensemble``)
  finetune        ``bmi finetune`` of a decoder pretrained on S001's other task runs (the default recipe) on
                  the task's training runs
  braindecode_*   braindecode's EEGNetv4 / ShallowFBCSPNet trained by the same loop and defaults as ``eegnet``
                  (needs the ``bench`` extra: ``pip install '.[bench]'``)
  csp_lda, tangent_space  the classical references of every run (mean over the default recipe's seeds)

A second experiment (``transfer``) pretrains on 3 synthetic subjects and fine-tunes on a 4th with 12, 24 or 48
calibration trials, against training from scratch on the same trials (same test runs).

    nice -n 10 .venv/bin/python scripts/bench_accuracy.py [--seeds 0,1,2] [--quick] [--tasks ...] [--recipes ...]
        [--max-epochs N] [--out bench_results/accuracy.json] [--docs-table] [--docs-dir DIR]

``--docs-table`` also writes the docs' results files (scripts/results_file.py), each only when the run measured
what its table shows:

  accuracy           one row per data set the default recipe ran on: the default, the classical references and
                     the accuracy recipes (logvar32, eegnet, braindecode_eegnet, their ensembles, finetune), empty
                     where not run; written by runs whose ``--recipes`` are among those (the default run, ``--quick``)
  transfer           the ``transfer`` task
  defaults_ablation  ``--tasks left_right_real,left_right_imagined,fists_feet
                     --recipes default,default_no_augment,default_smoothed,default_best_epoch,eegnet_augment``
  csp_init           ``--tasks left_right_real,left_right_imagined,fists_feet
                     --recipes default,logvar_csp,logvar_csp_slow,logvar_csp4_slow``

``--max-epochs N`` trains every decoder for N epochs instead of the automatic schedule: a smoke run (tests), whose
figures are not the benchmark's; ``--docs-table`` refuses it (``--docs-dir`` writes elsewhere, for tests).
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import results_file  # noqa: E402  (scripts/, beside this file)

EEGMMIDB = ROOT.parent / "shared" / "data" / "eegmmidb" / "S001"
TASKS = {
    "left_right_real": ((3, 7), (11,), {"T1": "left", "T2": "right"}),
    "left_right_imagined": ((4, 8), (12,), {"T1": "left", "T2": "right"}),
    "fists_feet": ((5, 6, 9, 10), (13, 14), {"T1": "fists", "T2": "feet"}),
}
#: the S001 runs a fine-tuned decoder is pretrained on (another task of the same subject)
PRETRAIN = {
    "left_right_real": ((4, 8, 12), {"T1": "left", "T2": "right"}),
    "left_right_imagined": ((3, 7, 11), {"T1": "left", "T2": "right"}),
    "fists_feet": ((3, 4, 7, 8, 11, 12), {"T1": "left", "T2": "right"}),
}
RECIPES = {
    "default": [],
    "eegnet": ["model.name=eegnet"],
    "eegnet_augment": ["model.name=eegnet", "augment={time_shift: 0.1, noise: 0.1, channel_dropout: 0.1}"],
    "logvar32": ["model.name=logvar", "model.params={n_filters: 32}"],
    "logvar_ea": ["model.name=logvar", "data.euclidean_alignment=true"],
    "logvar_seg4": ["model.name=logvar", "model.params={n_segments: 4}"],
    "logvar_csp": ["model.name=logvar", "model.params.init=csp"],
    "logvar_csp_slow": ["model.name=logvar", "model.params.init=csp", "optim.lr=0.003"],
    "logvar_csp4_slow": ["model.name=logvar", "model.params={init: csp, n_filters: 4}", "optim.lr=0.003"],
    "default_no_augment": ["augment.decoder_default=false"],
    "default_smoothed": ["trainer.checkpoint=smoothed"],
    "default_best_epoch": ["trainer.checkpoint=best"],
    "braindecode_eegnet": ["model.name=braindecode_eegnet"],
    "braindecode_shallow": ["model.name=braindecode_shallow"],
}
ENSEMBLES = ("default", "logvar32", "logvar_ea")
#: the synthetic MEG set's subjects (run 03 of each tests)
MEG_SUBJECTS = 2


def register_braindecode() -> bool:
    """braindecode's EEGNetv4 and ShallowFBCSPNet as decoders of this process's registry (not the project's)."""
    try:
        from braindecode.models import EEGNetv4, ShallowFBCSPNet
    except ImportError:
        return False
    import models
    from models.base import Decoder

    def wrap(name, cls, **kw):
        class Braindecode(Decoder):
            def __init__(self, n_chans, n_times, n_outputs, sfreq=None):
                super().__init__(n_chans, n_times, n_outputs, sfreq)
                self.net = cls(n_chans=n_chans, n_outputs=n_outputs, n_times=n_times, **kw)

            def forward(self, x):
                return self.net(x)

        Braindecode.__name__ = f"Braindecode_{cls.__name__}"
        models.register(name)(Braindecode)

    wrap("braindecode_eegnet", EEGNetv4)
    wrap("braindecode_shallow", ShallowFBCSPNet, final_conv_length="auto")
    return True


def experiment(files: list[str], events: dict, test: list[str], tmp: Path, extra: dict | None = None) -> dict:
    data = {"files": files, "events": events, "tmin": 0.5, "tmax": 2.5, "bandpass": [8.0, 30.0],
            "split": {"method": "holdout", "by": "run", "test": test}, "cache_dir": str(tmp / "cache")}
    data.update(extra or {})
    return {"data": data, "trainer": {"enable_progress_bar": False}, "tracking": {"mode": "disabled"},
            "runs_dir": str(tmp / "runs")}


def epoch_overrides(max_epochs: int | None) -> list[str]:
    """The config overrides of ``--max-epochs`` (none without it: the automatic schedule)."""
    return [] if max_epochs is None else [f"trainer.max_epochs={max_epochs}", "trainer.min_steps=0"]


def _patient_trainer(max_epochs: int | None) -> dict:
    """A fine-tuning patient file's ``trainer`` section for ``--max-epochs`` (``finetune_config`` reads it)."""
    return {} if max_epochs is None else {"trainer": {"max_epochs": max_epochs, "min_steps": 0}}


def _stats(values: list[float]) -> dict:
    return {"mean": round(float(np.mean(values)), 4), "std": round(float(np.std(values)), 4),
            "values": [round(v, 4) for v in values]}


def run_set(name: str, raw: dict, recipes: list[str], seeds: list[int], pretrain: dict | None, tmp: Path,
            max_epochs: int | None = None) -> dict:
    from pipeline.record.config import config_from_mapping
    from pipeline.ensemble import build_ensemble
    from pipeline.finetune import finetune_config
    from pipeline.train import run_training

    out: dict = {}
    runs: dict[str, list[str]] = {}
    for recipe in recipes:
        if recipe == "finetune":
            continue
        summaries = []
        for seed in seeds:
            t0 = time.monotonic()
            cfg = config_from_mapping(raw, [*RECIPES[recipe], f"seed={seed}", *epoch_overrides(max_epochs)])
            s = run_training(cfg, ROOT, progress=False)
            summaries.append(s)
            print(f"{name:>22} {recipe:>20} seed {seed}: test {s['test']['balanced_accuracy']:.3f} ({s['model']}, "
                  f"{s['optimizer_steps']} steps, {time.monotonic() - t0:.0f} s)", flush=True)
        runs[recipe] = [s["run_dir"] for s in summaries]
        out[recipe] = {**_stats([s["test"]["balanced_accuracy"] for s in summaries]), "model": summaries[0]["model"],
                       "n_train": summaries[0]["n_train"], "n_val": summaries[0]["n_val"], "n_test": summaries[0]["n_test"],
                       "steps": summaries[0]["optimizer_steps"], "warnings": sorted({w for s in summaries for w in s["warnings"]})}
        if recipe == "default":
            for ref in ("csp_lda", "tangent_space"):
                out[ref] = _stats([s["baselines"][ref]["test"]["balanced_accuracy"] for s in summaries])
    for recipe in ENSEMBLES:
        if recipe in runs and len(runs[recipe]) > 1:
            s = build_ensemble(runs[recipe], runs_dir=tmp / "runs")
            if s.get("test"):
                out[f"ensemble({recipe})"] = {"value": s["test"]["balanced_accuracy"], "members": len(runs[recipe])}
                print(f"{name:>22} {'ensemble(' + recipe + ')':>20}: test {s['test']['balanced_accuracy']:.3f}", flush=True)
    if "finetune" in recipes and pretrain is not None:
        values = []
        for seed in seeds:
            pre_cfg = config_from_mapping(pretrain, [f"seed={seed}", *epoch_overrides(max_epochs)])
            pre = run_training(pre_cfg, ROOT, progress=False)
            patient = tmp / f"patient-{name}.yaml"
            import yaml

            patient.write_text(yaml.safe_dump({"data": {k: raw["data"][k] for k in ("files", "events", "split", "cache_dir")},
                                               "seed": seed, "tracking": {"mode": "disabled"},
                                               **_patient_trainer(max_epochs)}))
            cfg, config_dir = finetune_config(pre["run_dir"], patient)
            s = run_training(cfg, config_dir, progress=False)
            values.append(s["test"]["balanced_accuracy"])
            print(f"{name:>22} {'finetune':>20} seed {seed}: test {values[-1]:.3f} (pretrained test "
                  f"{pre['test']['balanced_accuracy']:.3f} on its own task)", flush=True)
        out["finetune"] = _stats(values)
    return out


def transfer_experiment(seeds: list[int], tmp: Path, calibration_runs=(1, 2, 4), max_epochs: int | None = None) -> dict:
    """Synthetic EEG: pretrain the default decoder on subjects 1-3 (Euclidean alignment per subject), fine-tune
    it on subject 4 with 12/24/48 calibration trials (runs of 4 trials per class), against the default decoder
    trained from scratch on the same trials; subject 4's runs 05-06 (24 trials) test every variant."""
    import yaml

    from datasets.synthetic import write_synthetic
    from pipeline.record.config import config_from_mapping
    from pipeline.finetune import finetune_config
    from pipeline.train import run_training

    events = {"rest": "rest", "grasp": "grasp", "open": "open"}
    extra = {"resample": 125.0, "euclidean_alignment": True}
    group = tmp / "transfer"
    pre_files = write_synthetic(group / "pre", n_subjects=3, n_runs=2, trials_per_class=10, seed=21)
    patient_files = [f for f in write_synthetic(group / "patient", n_subjects=4, n_runs=6, trials_per_class=4, seed=22)
                     if "sub-04" in f.name]
    test_runs = ["05", "06"]
    pretrained = {}
    for seed in seeds:
        pre_raw = experiment([str(f) for f in pre_files], events, ["02"], tmp, extra)
        pretrained[seed] = run_training(config_from_mapping(pre_raw, [f"seed={seed}", *epoch_overrides(max_epochs)]),
                                        ROOT, progress=False)
    result: dict = {"calibration_trials": [], "scratch": [], "finetuned": [], "model": pretrained[seeds[0]]["model"]}
    for n_runs in calibration_runs:
        files = [str(f) for f in patient_files if any(f"run-{r:02d}" in f.name for r in range(1, n_runs + 1))]
        files += [str(f) for f in patient_files if any(f"run-{r}" in f.name for r in test_runs)]
        scratch, tuned = [], []
        for seed in seeds:
            raw = experiment(files, events, test_runs, tmp, extra)
            scratch.append(run_training(config_from_mapping(raw, [f"seed={seed}", *epoch_overrides(max_epochs)]), ROOT,
                                        progress=False)["test"]["balanced_accuracy"])
            patient = tmp / "transfer-patient.yaml"
            patient.write_text(yaml.safe_dump({"data": {k: raw["data"][k] for k in ("files", "events", "split", "cache_dir")},
                                               "seed": seed, **_patient_trainer(max_epochs)}))
            cfg, config_dir = finetune_config(pretrained[seed]["run_dir"], patient)
            tuned.append(run_training(cfg, config_dir, progress=False)["test"]["balanced_accuracy"])
            print(f"{'transfer':>22} {n_runs * 12:>3} calibration trials seed {seed}: from scratch {scratch[-1]:.3f}, "
                  f"fine-tuned {tuned[-1]:.3f}", flush=True)
        result["calibration_trials"].append(n_runs * 12)
        result["scratch"].append(_stats(scratch))
        result["finetuned"].append(_stats(tuned))
    return result


def markdown(results: dict) -> str:
    sets = [k for k, v in results["sets"].items() if isinstance(v, dict) and "skipped" not in v and v]
    cols = []
    for s in sets:
        for k in results["sets"][s]:
            if k not in cols:
                cols.append(k)

    def cell(v):
        if v is None:
            return ""
        if "mean" in v:
            return f"{v['mean']:.3f} +- {v['std']:.3f}"
        return f"{v['value']:.3f}"

    lines = ["| data set (test trials) | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for s in sets:
        n = next((v.get("n_test") for v in results["sets"][s].values() if "n_test" in v), "?")
        lines.append(f"| {s} ({n}) | " + " | ".join(cell(results["sets"][s].get(c)) for c in cols) + " |")
    t = results.get("transfer")
    if t:
        lines += ["", f"| calibration trials (synthetic subject 4) | from scratch ({t['model']}) | fine-tuned ({t['model']} "
                  "pretrained on subjects 1-3) |",
                  "|---|---|---|"]
        for n, a, b in zip(t["calibration_trials"], t["scratch"], t["finetuned"]):
            lines.append(f"| {n} | {cell(a)} | {cell(b)} |")
    return "\n".join(lines) + "\n"


#: the docs' words for the S001 tasks
TASK_LABELS = {"left_right_real": "left/right real", "left_right_imagined": "left/right imagined",
               "fists_feet": "fists/feet"}
#: the ``accuracy`` table's columns after the data set: (column, what the run's set holds under it)
ACCURACY_COLUMNS = [("default", "default"), ("CSP+LDA", "csp_lda"), ("tangent space + LR", "tangent_space"),
                    ("logvar32", "logvar32"), ("eegnet", "eegnet"), ("braindecode EEGNet", "braindecode_eegnet"),
                    ("ensemble(default)", "ensemble(default)"), ("ensemble(logvar32)", "ensemble(logvar32)"),
                    ("finetune", "finetune")]
#: the recipes of the ``accuracy`` table's columns (its references come with ``default``)
ACCURACY_RECIPES = {"default", "logvar32", "eegnet", "braindecode_eegnet", "finetune"}
REFERENCES = ("csp_lda", "tangent_space")
#: the tables of variants on the three S001 tasks: name -> (title, first column, [(recipe, row label)])
VARIANT_TABLES = {
    "defaults_ablation": ("What the small-data defaults rest on", "variant of the default", [
        ("default", "default (last epoch, FT surrogate + scaling)"),
        ("default_no_augment", "no augmentation"),
        ("default_smoothed", "checkpoint: lowest smoothed validation loss"),
        ("default_best_epoch", "checkpoint: best single-epoch validation accuracy"),
        ("eegnet_augment", "EEGNet + time shift, noise, channel dropout (against plain EEGNet above)")]),
    "csp_init": ("Starting the log-variance network from CSP + LDA", "variant of the default", [
        ("default", "default"),
        ("logvar_csp", "`init: csp` (lr 0.03)"),
        ("logvar_csp_slow", "`init: csp`, lr 0.003"),
        ("logvar_csp4_slow", "`init: csp`, 4 filters, lr 0.003")]),
}
#: the ablation's cells that also give the worst seed: the augmentation's case rests on left/right real's worst seed
WORST_SEED = {("defaults_ablation", "default", "left_right_real"), ("defaults_ablation", "default_no_augment", "left_right_real")}


def _figure(v: dict) -> float:
    """The figure a cell shows: a recipe's mean over the seeds, an ensemble's one value."""
    return round(v["mean"] if "mean" in v else v["value"], 3)


def _cell(v: dict | None, reference: bool = False) -> str:
    """A docs cell: ``mean +- sd`` over the seeds, an ensemble's value, a reference's mean alone when it did not
    vary with the seed (it is fitted on the same trials every seed), empty when not measured."""
    if v is None:
        return ""
    if "mean" not in v:
        return f"{v['value']:.3f}"
    if reference and v["std"] == 0:
        return f"{v['mean']:.3f}"
    return f"{v['mean']:.3f} +- {v['std']:.3f}"


def set_label(key: str, measured: dict) -> str:
    """The ``accuracy`` table's data set cell: the set, its train / test runs and its test trials."""
    n = next((v["n_test"] for v in measured.values() if isinstance(v, dict) and "n_test" in v), "?")
    if key.startswith("S001_"):
        task = key[len("S001_"):]
        train, test, _ = TASKS[task]
        return (f"S001 {TASK_LABELS[task]}, runs {', '.join(str(r) for r in train)} / "
                f"{', '.join(str(r) for r in test)} ({n})")
    if key == "synthetic_meg_306ch":
        return f"synthetic MEG 306 ch, {MEG_SUBJECTS} subjects ({n})"
    return f"{key} ({n})"


def accuracy_rows(results: dict) -> list[list[str]]:
    """One row per data set the default recipe ran on; bold: the best deep figure where it beats the best
    classical reference (figures compared as shown, to 3 decimals)."""
    rows = []
    for key, measured in results["sets"].items():
        if not isinstance(measured, dict) or "skipped" in measured or "default" not in measured:
            continue
        cells = [_cell(measured.get(k), reference=k in REFERENCES) for _, k in ACCURACY_COLUMNS]
        deep = {i: _figure(measured[k]) for i, (_, k) in enumerate(ACCURACY_COLUMNS) if k not in REFERENCES and k in measured}
        refs = [_figure(measured[k]) for k in REFERENCES if k in measured]
        best = max(deep.values())
        if refs and best > max(refs):
            for i, figure in deep.items():
                if figure == best:
                    mean, _, spread = cells[i].partition(" +- ")
                    cells[i] = f"**{mean}**" + (f" +- {spread}" if spread else "")
        rows.append([set_label(key, measured), *cells])
    return rows


def variant_rows(name: str, results: dict) -> list[list[str]] | None:
    """A variant table's rows (recipes by S001 task), or None when the run did not measure every one of its
    recipes on every one of its tasks."""
    _, _, variants = VARIANT_TABLES[name]
    sets = [results["sets"].get(f"S001_{task}") or {} for task in TASK_LABELS]
    if not all(recipe in s for s in sets for recipe, _ in variants):
        return None
    rows = []
    for recipe, label in variants:
        cells = []
        for task, s in zip(TASK_LABELS, sets):
            cell = _cell(s[recipe])
            if (name, recipe, task) in WORST_SEED and len(s[recipe]["values"]) > 1:
                cell += f" (worst seed {min(s[recipe]['values']):.3f})"
            cells.append(cell)
        rows.append([label, *cells])
    return rows


def docs_tables(results: dict, recipes: list[str]) -> list[dict]:
    """The docs' results tables this run measured: ``accuracy`` (the default on a data set, from a run of the
    accuracy table's recipes only: a variant run measures the default just as its baseline), ``transfer``,
    ``defaults_ablation`` and ``csp_init`` (every recipe of theirs on the three S001 tasks)."""
    tables = []
    rows = accuracy_rows(results)
    if rows and set(recipes) <= ACCURACY_RECIPES:
        tables.append({"name": "accuracy", "title": "Test balanced accuracy on small real data",
                       "columns": ["data set (test trials)", *(c for c, _ in ACCURACY_COLUMNS)], "rows": rows})
    t = results.get("transfer")
    if t:
        tables.append({"name": "transfer", "title": "Transfer across synthetic subjects: from scratch against fine-tuned",
                       "columns": ["calibration trials (synthetic subject 4)", "from scratch", "fine-tuned"],
                       "rows": [[str(n), _cell(a), _cell(b)]
                                for n, a, b in zip(t["calibration_trials"], t["scratch"], t["finetuned"])]})
    for name, (title, first, _) in VARIANT_TABLES.items():
        rows = variant_rows(name, results)
        if rows is not None:
            tables.append({"name": name, "title": title, "columns": [first, *TASK_LABELS.values()], "rows": rows})
    return tables


def save(results: dict, out: Path, started: float) -> None:
    results["seconds"] = round(time.monotonic() - started)
    out.parent.mkdir(parents=True, exist_ok=True)
    from datasets.atomic import write_text

    for path, text in ((out, json.dumps(results, indent=2)), (out.with_suffix(".md"), markdown(results))):
        write_text(path, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="0,1,2", help="comma-separated seeds (at least 3 for a spread)")
    parser.add_argument("--quick", action="store_true", help="one seed, default recipe and references only")
    parser.add_argument("--tasks", help=f"comma-separated among {', '.join(TASKS)}, synthetic_meg, transfer")
    parser.add_argument("--recipes", default="default,logvar32,eegnet,braindecode_eegnet,finetune",
                        help=f"comma-separated among {', '.join([*RECIPES, 'finetune'])} (default: %(default)s)")
    parser.add_argument("--meg-recipes", default="default", help="recipes on the 306-channel set (default: %(default)s; "
                        "the convolutional decoders take ~10x longer there)")
    parser.add_argument("--max-epochs", type=int, default=None, metavar="N",
                        help="train every decoder for N epochs instead of the automatic schedule (a smoke run for "
                             "tests: its figures are not the benchmark's)")
    parser.add_argument("--out", default="bench_results/accuracy.json")
    results_file.add_arguments(parser)
    args = parser.parse_args()
    if args.max_epochs is not None and args.max_epochs < 1:
        parser.error("--max-epochs must be at least 1")
    if args.max_epochs is not None and args.docs_table and args.docs_dir is None:
        parser.error("--docs-table with --max-epochs would replace the docs' figures with a smoke run's; "
                     "use --docs-dir for a trial run")
    seeds = [0] if args.quick else [int(s) for s in args.seeds.split(",")]
    has_bd = register_braindecode()
    recipes = ["default"] if args.quick else args.recipes.split(",")
    if not has_bd:
        recipes = [r for r in recipes if not r.startswith("braindecode")]
    unknown = [r for r in recipes if r not in RECIPES and r != "finetune"]
    if unknown:
        parser.error(f"--recipes: unknown {unknown}; choose from {', '.join([*RECIPES, 'finetune'])}")
    tasks = args.tasks.split(",") if args.tasks else [*TASKS, "synthetic_meg", "transfer"]
    results: dict = {"date": time.strftime("%Y-%m-%d"), "seeds": seeds, "recipes": recipes,
                     "braindecode": has_bd and __import__("braindecode").__version__,
                     "machine": f"{platform.platform()}, Python {platform.python_version()}",
                     "command": " ".join(sys.argv), "max_epochs": args.max_epochs, "sets": {}}
    started = time.monotonic()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for task in tasks:
            if task in TASKS:
                if not EEGMMIDB.is_dir():
                    results["sets"][f"S001_{task}"] = {"skipped": f"not found: {EEGMMIDB}"}
                    continue
                train, test, events = TASKS[task]
                files = [str(EEGMMIDB / f"S001R{r:02d}.edf") for r in (*train, *test)]
                raw = experiment(files, events, [f"{r:02d}" for r in test], tmp, {"rename": "eegbci"})
                pre_runs, pre_events = PRETRAIN[task]
                pretrain = experiment([str(EEGMMIDB / f"S001R{r:02d}.edf") for r in pre_runs], pre_events,
                                      [f"{pre_runs[-1]:02d}"], tmp, {"rename": "eegbci"})
                results["sets"][f"S001_{task}"] = run_set(task, raw, recipes, seeds, pretrain, tmp, args.max_epochs)
            elif task == "synthetic_meg":
                from datasets.synthetic import write_synthetic

                files = write_synthetic(tmp / "meg", modality="meg", n_subjects=MEG_SUBJECTS, n_runs=3, trials_per_class=10, seed=5)
                raw = experiment([str(f) for f in files], {"rest": "rest", "grasp": "grasp", "open": "open"}, ["03"], tmp,
                                 {"picks": {"types": ["meg"]}, "resample": 125.0})
                meg = ["default"] if args.quick else [r for r in args.meg_recipes.split(",") if r != "finetune"]
                results["sets"]["synthetic_meg_306ch"] = run_set("synthetic MEG", raw, meg, seeds, None, tmp,
                                                                 args.max_epochs)
            elif task == "transfer":
                results["transfer"] = transfer_experiment(seeds, tmp, max_epochs=args.max_epochs)
            else:
                parser.error(f"--tasks: unknown {task!r}")
            save(results, Path(args.out), started)  # after every set: a long run killed midway keeps its figures
    save(results, Path(args.out), started)
    out = Path(args.out)
    print(markdown(results))
    if (docs := results_file.docs_folder(args)) is not None:
        for table in docs_tables(results, recipes):
            path = results_file.write_table(table["name"], title=table["title"], columns=table["columns"],
                                            rows=table["rows"], folder=docs,
                                            source=f"scripts/bench_accuracy.py (raw results: {args.out})")
            print(f"docs results file: {path}")
    print(f"results: {out} and {out.with_suffix('.md')} ({results['seconds']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
