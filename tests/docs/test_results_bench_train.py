"""``scripts/bench_train.py`` and ``scripts/bench_dashboard.py`` write the docs' results format (``--docs-table``,
``scripts/results_file.py``): each run at its smallest size into a temporary folder writes a file that
``docs/benchmarks/tables.py`` loads, with the committed table's columns, the committed notes, and the date, machine
and command filled in; its cells are this run's raw results, formatted as the committed cells are."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MISSING = "—"
#: bench_train.py's smallest run: one small workload, 1 epoch, 1 counted round
TRAIN_SMALLEST = ["--quick", "--workloads", "small", "--epochs", "1", "--repeats", "1"]


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(script: str, *args: str, timeout: float) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, f"scripts/{script}", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, (proc.stdout[-2000:], proc.stderr[-3000:])
    return proc


def check_provenance(data: dict, committed: dict, name: str, command: str, raw: Path) -> None:
    """What every written table carries: its name, the committed notes, this run's command, machine and date."""
    assert data["benchmark"] == name
    assert data["notes"] == committed["notes"]  # measured prose is kept, not lost to a rerun
    assert command in data["command"]
    assert "Python" in data["machine"] and "torch" in data["machine"] and re.fullmatch(r"\d{4}-\d\d-\d\d", data["date"])
    assert str(raw) in data["source"]


def has_braindecode() -> bool:
    return importlib.util.find_spec("braindecode") is not None


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_train_writes_the_training_loop_table(tmp_path, docs_tables):
    committed = docs_tables.load("training_loop")
    raw_path = tmp_path / "train.json"
    run_script("bench_train.py", *TRAIN_SMALLEST, "--out", str(raw_path), "--docs-dir", str(tmp_path), timeout=300)
    data = docs_tables.load(str(tmp_path / "training_loop.json"))
    check_provenance(data, committed, "training_loop", "scripts/bench_train.py --quick --workloads small --epochs 1",
                     raw_path)
    assert data["columns"] == committed["columns"]
    assert data["title"] == committed["title"]
    assert not (tmp_path / "compile.json").exists()  # no --compile: no compiled side measured
    raw = json.loads(raw_path.read_text())["workloads"]["small"]
    [row] = data["rows"]  # one workload run, one row
    assert row[0] == f"16 channels, 1 s windows, {raw['n_train']} windows ({raw['batches_per_epoch']} batches/epoch)"
    assert row[1] == f"{raw['samples_per_s']['lightning']:.0f}" and row[2] == f"{raw['samples_per_s']['plain']:.0f}"
    ratio = raw["ratio_lightning_over_plain"]
    assert row[3] == f"**{ratio:.2f}** ({raw['paired_ratios'][0]:.2f})"  # the median and each round's (one)
    if has_braindecode():
        assert re.fullmatch(r"\d+", row[4]) and re.fullmatch(r"\*\*\d+\.\d\d\*\* \(\d+\.\d\d\)", row[5])
        assert re.fullmatch(r"\d+\.\d\d", row[6])
    else:  # not measured here: empty, not a number from elsewhere
        assert row[4:7] == [MISSING] * 3
    assert row[7] == f"{raw['per_epoch_overhead_ms']:.1f} ms"
    alone = raw["alone"]
    assert row[8] == f"{alone['lightning']['peak_rss_mb']:.0f} / {alone['plain']['peak_rss_mb']:.0f} MB"
    assert re.fullmatch(r"\d+ / \d+ MB", row[8])
    assert any(line.startswith(".. list-table::") for line in docs_tables.rst_lines(data))


def test_bench_train_refuses_a_smoke_run_into_the_docs_tables(tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks" / "results").glob("*.json")}
    proc = subprocess.run([sys.executable, "scripts/bench_train.py", *TRAIN_SMALLEST, "--out",
                           str(tmp_path / "train.json"), "--docs-table"], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and "--docs-dir" in proc.stderr  # refused before measuring anything
    assert not (tmp_path / "train.json").exists()
    assert {p.name: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks" / "results").glob("*.json")} == before


def test_a_compile_run_makes_the_compile_table_not_the_training_loop_one(docs_tables, monkeypatch):
    """The ``--compile`` run's table from its results (the compiled run itself is tested in
    tests/pipeline/test_compile.py; compiling afresh here would cost CI minutes on a cold cache)."""
    monkeypatch.syspath_prepend(str(ROOT / "scripts"))  # results_file, as the script imports it
    bench_train = load_module("bmi_bench_train_test", ROOT / "scripts" / "bench_train.py")
    committed = docs_tables.load("compile")
    workload = {"n_chans": 16, "window_s": 1.0, "n_train": 288,
                "rounds": {"lightning": [{"seconds": 9.0}, {"seconds": 11.0}, {"seconds": 10.2}]},
                "compiled": {"ratio_compiled_over_eager": 1.31, "paired_ratios": [1.3, 1.31, 1.4],
                             "ratio_compiled_over_plain": 1.5, "first_run": {"seconds": 95.04}}}
    [table] = bench_train.docs_tables({"compile": True, "workloads": {"small": workload}})
    assert table["name"] == "compile" and table["columns"] == committed["columns"]
    assert table["rows"] == [["16 channels, 1 s, 288 windows", "1.31 (1.30, 1.31, 1.40)", "1.50", "95.0 s", "10.2 s"]]
    workload["compiled"]["ratio_compiled_over_eager"] = 0.9  # faster compiled: the ratio is bold
    assert bench_train.docs_tables({"compile": True, "workloads": {"small": workload}})[0]["rows"][0][1].startswith(
        "**0.90** (")
    workload["compiled"]["first_run"] = None  # the compiled side did not run to its end: no table
    assert bench_train.docs_tables({"compile": True, "workloads": {"small": workload}}) == []


def test_bench_dashboard_writes_the_dashboard_table(tmp_path, docs_tables):
    committed = docs_tables.load("dashboard")
    first, second = tmp_path / "first", tmp_path / "second"
    first_raw, second_raw = tmp_path / "first_raw.json", tmp_path / "second_raw.json"
    run_script("bench_dashboard.py", "--runs", "10", "--out", str(first_raw), "--docs-dir", str(first), timeout=120)
    alone = docs_tables.load(str(first / "dashboard.json"))  # no --before: this run's column only
    assert alone["columns"] == ["what", "now"]
    assert alone["title"] == "The comparison dashboard with 10 runs (2 studies, 1 failed run)"
    raw = json.loads(first_raw.read_text())
    assert raw["layout"] == {"runs": 10, "failed": 1, "studies": 2}  # the raw results are still written
    assert [row[1] for row in alone["rows"][:3]] == [
        f"{raw['bmi_compare_s']:.1f} s", f"{raw['api_list_runs_cold_s']:.2f} s", f"{raw['api_list_runs_again_s']:.2f} s"]
    if shutil.which("chromium") and importlib.util.find_spec("playwright"):
        assert alone["rows"][3][1] == f"{raw['page_first_paint_s']:.2f} s (10 rows, 2 folder rows)"
    else:
        assert alone["rows"][3][1] == MISSING

    # the committed table's form: an earlier run's raw results as the 'before' column
    run_script("bench_dashboard.py", "--runs", "10", "--before", str(first_raw), "--before-label", "2026-12-04 code",
               "--out", str(second_raw), "--docs-dir", str(second), timeout=120)
    data = docs_tables.load(str(second / "dashboard.json"))
    check_provenance(data, committed, "dashboard", "scripts/bench_dashboard.py --runs 10 --before", second_raw)
    assert data["columns"] == committed["columns"]
    assert [row[0] for row in data["rows"]] == [row[0].replace("300", "10") for row in committed["rows"]]
    assert [row[1] for row in data["rows"]] == [row[1] for row in alone["rows"]]  # 'before': the first run's cells
    for cell in [row[2] for row in data["rows"][:3]]:
        assert re.fullmatch(r"\d+\.\d+ s", cell)


def test_bench_dashboard_reproduces_the_committed_cells_from_its_raw_results(docs_tables):
    """The committed file keeps the raw results of its 'now' column: the script's formatting gives those cells."""
    bench = load_module("bench_dashboard_docs_test", ROOT / "scripts" / "bench_dashboard.py")
    committed = json.loads((ROOT / "docs" / "benchmarks" / "results" / "dashboard.json").read_text())
    if "raw" not in committed:  # a file the script wrote itself keeps its raw results in its source, not here
        pytest.skip("the committed dashboard table carries no raw results")
    table = bench.docs_table(committed["raw"], committed["raw"], "2026-12-04 code")
    assert table["title"] == committed["title"] and table["columns"] == committed["columns"]
    assert [[row[0], row[2]] for row in table["rows"]] == [[row[0], row[2]] for row in committed["rows"]]
