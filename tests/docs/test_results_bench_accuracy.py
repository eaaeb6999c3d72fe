"""``scripts/bench_accuracy.py --docs-table`` writes the docs' results files ``accuracy``, ``transfer``,
``defaults_ablation`` and ``csp_init`` (``scripts/results_file.py``): the script run at its smallest size (one
seed, one epoch per decoder) into a temporary folder writes files that ``docs/benchmarks/tables.py`` loads, with
the committed tables' columns and notes, the date, machine and command filled in, and each table only when the
run measured what it shows; given the committed figures, the script's rows are the committed rows cell for cell."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EEGMMIDB = ROOT.parent / "shared" / "data" / "eegmmidb" / "S001"
TABLES = ("accuracy", "transfer", "defaults_ablation", "csp_init")
S001_TASKS = ("left_right_real", "left_right_imagined", "fists_feet")
needs_s001 = pytest.mark.skipif(not EEGMMIDB.is_dir(), reason=f"PhysioNet S001 not found: {EEGMMIDB}")


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture()
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # the script imports results_file from beside it
    return load_module("bench_accuracy_docs_test", ROOT / "scripts" / "bench_accuracy.py")


def run_script(tmp_path: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "scripts/bench_accuracy.py", *args, "--max-epochs", "1",
                           "--out", str(tmp_path / "raw.json"), "--docs-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def written(tmp_path: Path) -> set[str]:
    return {name for name in TABLES if (tmp_path / f"{name}.json").exists()}


def spread(v: dict) -> str:
    return f"{v['mean']:.3f} +- {v['std']:.3f}"


@needs_s001
@pytest.mark.timeout(300)
def test_quick_run_writes_the_accuracy_table(tmp_path, docs_tables):
    committed = docs_tables.load("accuracy")
    proc = run_script(tmp_path, "--quick", "--tasks", "left_right_real")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert written(tmp_path) == {"accuracy"}  # no transfer task, no variant recipes: nothing else was measured
    data = docs_tables.load(str(tmp_path / "accuracy.json"))
    assert data["benchmark"] == "accuracy" and data["title"] == committed["title"]
    assert data["columns"] == committed["columns"]
    raw = json.loads((tmp_path / "raw.json").read_text())
    measured = raw["sets"]["S001_left_right_real"]
    assert raw["max_epochs"] == 1 and raw["seeds"] == [0]
    [row] = data["rows"]
    assert row[0] == committed["rows"][0][0] == "S001 left/right real, runs 3, 7 / 11 (15)"
    assert row[1].replace("**", "") == spread(measured["default"])
    # the references are fitted on the same trials whatever the seed: their mean alone, as committed
    assert row[2:4] == [f"{measured['csp_lda']['mean']:.3f}", f"{measured['tangent_space']['mean']:.3f}"]
    assert row[4:] == [""] * 6  # recipes this run did not measure (ensembles need two seeds)
    assert data["notes"] == committed["notes"]  # measured prose is kept, not lost to a rerun
    assert "scripts/bench_accuracy.py --quick --tasks left_right_real --max-epochs 1" in data["command"]
    assert "Python" in data["machine"] and data["date"]
    assert data["source"].startswith("scripts/bench_accuracy.py")
    assert any(line.startswith(".. list-table::") for line in docs_tables.rst_lines(data))


@needs_s001
@pytest.mark.slow
@pytest.mark.timeout(400)
def test_csp_init_run_writes_the_csp_init_table_and_not_the_accuracy_one(tmp_path, docs_tables):
    committed = docs_tables.load("csp_init")
    recipes = "default,logvar_csp,logvar_csp_slow,logvar_csp4_slow"
    proc = run_script(tmp_path, "--seeds", "0", "--tasks", ",".join(S001_TASKS), "--recipes", recipes, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the default ran here as the variants' baseline only: the accuracy table is not replaced by a run of other recipes
    assert written(tmp_path) == {"csp_init"}
    data = docs_tables.load(str(tmp_path / "csp_init.json"))
    assert data["benchmark"] == "csp_init" and data["columns"] == committed["columns"]
    assert [row[0] for row in data["rows"]] == [row[0] for row in committed["rows"]]
    sets = json.loads((tmp_path / "raw.json").read_text())["sets"]
    assert data["rows"] == [[label, *(spread(sets[f"S001_{task}"][recipe]) for task in S001_TASKS)]
                            for label, recipe in zip([row[0] for row in committed["rows"]], recipes.split(","))]
    assert data["notes"] == committed["notes"]
    assert f"--recipes {recipes} --max-epochs 1" in data["command"]


def _figures(cell: str, kind: str) -> dict | None:
    """A committed cell as the raw results the script would hold (three seeds)."""
    cell = cell.replace("**", "")
    if not cell:
        return None
    m = re.fullmatch(r"(\d\.\d{3}) \+- (\d\.\d{3})(?: \(worst seed (\d\.\d{3})\))?", cell)
    if m:
        mean, std = float(m[1]), float(m[2])
        return {"mean": mean, "std": std, "values": [float(m[3] or mean), mean, mean], "n_test": 0}
    value = float(cell)
    if kind == "ensemble":
        return {"value": value, "members": 3}
    return {"mean": value, "std": 0.0, "values": [value] * 3}


def test_the_committed_figures_give_the_committed_rows(bench, docs_tables):
    """The script's cells, labels, bold and worst-seed marks are the committed tables', cell for cell."""
    accuracy = docs_tables.load("accuracy")
    sets = {}
    for key, row in zip([*(f"S001_{t}" for t in S001_TASKS), "synthetic_meg_306ch"], accuracy["rows"]):
        measured = {}
        for (column, name), cell in zip(bench.ACCURACY_COLUMNS, row[1:]):
            v = _figures(cell, "ensemble" if name.startswith("ensemble") else "recipe")
            if v is not None:
                measured[name] = v
        measured["default"]["n_test"] = int(re.search(r"\((\d+)\)$", row[0])[1])
        sets[key] = measured
    transfer = docs_tables.load("transfer")
    results = {"sets": sets, "transfer": {
        "model": "logvar", "calibration_trials": [int(row[0]) for row in transfer["rows"]],
        "scratch": [_figures(row[1], "recipe") for row in transfer["rows"]],
        "finetuned": [_figures(row[2], "recipe") for row in transfer["rows"]]}}
    made = {t["name"]: t for t in bench.docs_tables(results, ["default", "logvar32", "eegnet", "braindecode_eegnet",
                                                              "finetune"])}
    assert set(made) == {"accuracy", "transfer"}  # no variant recipes measured
    for name, committed in (("accuracy", accuracy), ("transfer", transfer)):
        assert made[name]["columns"] == committed["columns"]
        assert made[name]["rows"] == committed["rows"]
        assert made[name]["title"] == committed["title"]

    for name in ("defaults_ablation", "csp_init"):
        committed = docs_tables.load(name)
        _, _, variants = bench.VARIANT_TABLES[name]
        sets = {f"S001_{task}": {recipe: _figures(row[1 + i], "recipe")
                                 for (recipe, _), row in zip(variants, committed["rows"])}
                for i, task in enumerate(S001_TASKS)}
        made = {t["name"]: t for t in bench.docs_tables({"sets": sets}, [recipe for recipe, _ in variants])}
        assert set(made) == {name}  # a variant run: no accuracy table, no transfer
        assert made[name]["columns"] == committed["columns"]
        assert made[name]["rows"] == committed["rows"]
        del sets["S001_fists_feet"][variants[-1][0]]  # one recipe short on one task: the table is not written
        assert bench.docs_tables({"sets": sets}, [recipe for recipe, _ in variants]) == []


def test_docs_table_refuses_a_smoke_run(tmp_path):
    proc = subprocess.run([sys.executable, "scripts/bench_accuracy.py", "--quick", "--max-epochs", "1", "--docs-table",
                           "--tasks", "transfer", "--out", str(tmp_path / "raw.json")],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--max-epochs" in proc.stderr
    assert not (tmp_path / "raw.json").exists()
