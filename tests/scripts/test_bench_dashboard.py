"""The dashboard at a lab's scale: ``bmi compare`` and the console's runs API on 300 run folders as
``scripts/bench_dashboard.py`` writes them (sweep studies, CVs, failed trials)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def many_runs(tmp_path_factory) -> Path:
    spec = importlib.util.spec_from_file_location("bench_dashboard", ROOT / "scripts" / "bench_dashboard.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    root = tmp_path_factory.mktemp("dash") / "runs"
    assert bench.write_runs(root, 300) == {"runs": 300, "failed": 6, "studies": 15}
    return root


def test_compare_charts_the_best_runs_and_folds_long_folders(many_runs, tmp_path):
    from rich.console import Console

    from pipeline.compare import CHART_RUNS, compare_runs, find_runs, render, unfinished_runs

    table = compare_runs(find_runs([], many_runs), root=many_runs, out=tmp_path, curve="val/balanced_accuracy")
    assert len(table["rows"]) == 294 and len(table["folders"]) == 15  # every finished run, under its study or CV
    best = sorted(table["rows"], key=lambda r: r["test.balanced_accuracy"], reverse=True)[:CHART_RUNS]
    assert table["chart_runs"] == [r["run"] for r in best]  # the chart: the best 20, not 294 bars and curves
    assert len(table["curves"]) == CHART_RUNS
    console = Console(width=120, record=True, file=open(os.devnull, "w"))
    for item in render(table, width=120, unfinished=unfinished_runs(many_runs), top=3):
        console.print(item)
    text = console.export_text()
    hidden = [int(n) for n in re.findall(r"… (\d+) more", text)]
    assert len(hidden) == 15 and sum(hidden) + 3 * 15 == 294  # each folder: its best 3, and a count of the rest
    assert "the chart shows the best 20 of 294 runs" in text and "not compared, 6 unfinished" in text
    assert len(text.splitlines()) < 120  # a screenful or two, not three hundred lines


def test_runs_api_reads_each_run_once_and_again_when_it_changes(many_runs):
    from exports.runtime.console import runs

    start = time.perf_counter()
    first = {r["id"]: r for r in runs.list_runs(many_runs)}
    cold = time.perf_counter() - start
    start = time.perf_counter()
    again = {r["id"]: r for r in runs.list_runs(many_runs)}
    warm = time.perf_counter() - start
    assert len(first) == 300 and all(again[k] is first[k] for k in first)  # not read again
    assert warm < cold
    failed = [r for r in first.values() if r["status"] == "failed"]
    assert len(failed) == 6 and all(r["error"] == "RuntimeError: Loss is nan" for r in failed)
    assert first["sweep-s00/trial3"]["folder"] == "sweep-s00"
    studies = runs.studies(many_runs, list(first.values()))
    assert sorted(studies) == [f"sweep-s{k:02d}" for k in range(5)]  # the sweeps, not the CVs
    assert [s["report"] for s in studies.values()] == [True, False, True, False, True]
    path = many_runs / "sweep-s00" / "trial3" / "summary.json"
    summary = json.loads(path.read_text())
    summary["test"]["balanced_accuracy"] = 0.123456
    path.write_text(json.dumps(summary))
    changed = {r["id"]: r for r in runs.list_runs(many_runs)}
    assert changed["sweep-s00/trial3"]["test"]["balanced_accuracy"] == 0.123456
    assert changed["sweep-s00/trial4"] is first["sweep-s00/trial4"]


def test_runs_page_first_paint_folds_studies_and_pages(many_runs):
    import shutil

    if shutil.which("chromium") is None and os.environ.get("BMI_REQUIRE_BROWSER") != "1":
        pytest.skip("the runs page test needs Debian's chromium (apt-get install chromium)")
    spec = importlib.util.spec_from_file_location("bench_dashboard", ROOT / "scripts" / "bench_dashboard.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    page = bench.time_page(many_runs)
    assert page["page_group_rows"] == 15 and page["page_run_rows_drawn"] == 0  # one folded row per study or CV
    assert page["page_study_report_links"] == 3  # the 5 sweep studies' rows: every other one links its report
    assert page["page_rows_in_opened_group"] == 10  # a click opens the first folder (cv-loso-s00): its 10 folds
    assert page["page_rows_ungrouped_first_page"] == 100 and page["page_pager"] == "page 1 of 3"
    assert page["page_first_paint_s"] < 5.0
