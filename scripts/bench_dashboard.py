"""The comparison dashboard at a lab's scale: ``bmi compare`` and the console's runs page on a few hundred runs.

Writes N synthetic run folders (the files a finished run leaves: run.json, config.yaml, summary.json,
metrics.csv) laid out as a lab's runs folder would be after a campaign (sweep studies of ``trial<n>`` runs,
cross-validations of ``fold<k>`` runs, a few failed trials), then measures:

* ``bmi compare`` on all of them, as a user runs it (a fresh process: imports, table, report, chart);
* the runs API's payload (``exports.runtime.console.runs.list_runs``): cold, and again (what a reload costs);
* the runs page's first paint in a real browser (Debian's chromium through Playwright, where installed): from
  navigation to the table's rows drawn, and how many rows the page draws.

::

    .venv/bin/python scripts/bench_dashboard.py [--runs 300] [--out bench_results/dashboard.json]
        [--before RAW.json [--before-label TEXT]] [--keep DIR] [--docs-table] [--docs-dir DIR]

``--out`` is the raw results (every figure above). ``--docs-table`` also writes the docs' results file
``dashboard`` (scripts/results_file.py): ``bmi compare``, the API's first load and reload and the page's first
paint of this run, in a column ``now``. ``--before`` adds a column ``before (TEXT)`` from the raw results
(``--out``) of an earlier run of this script on the same number of runs, such as one on the code before a change
(``--before-label``, e.g. ``2026-12-04 code``); without it the table has the one column of this run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
if str(ROOT / "scripts") not in sys.path:  # results_file, beside this file, also when tests load this as a module
    sys.path.append(str(ROOT / "scripts"))

import results_file  # noqa: E402


def write_runs(root: Path, n: int, seed: int = 0) -> dict[str, int]:
    """``n`` run folders under ``root``: two thirds in sweep studies (40 trials each, with their worker's
    sweep_summary, every other study with a study_report.html), the rest in 10-fold CVs (one per subject), a few
    sweep trials failed. Returns the layout's counts."""
    import yaml

    from datasets.atomic import write_json

    rng = random.Random(seed)
    n_sweep = (2 * n) // 3
    plan = [(f"sweep-s{s:02d}", f"trial{t}") for s in range((n_sweep + 39) // 40) for t in range(40)][:n_sweep]
    plan += [(f"cv-loso-s{c:02d}", f"fold{k}") for c in range((n - n_sweep + 9) // 10) for k in range(10)][:n - n_sweep]
    failed = 0
    for i, (folder, leaf) in enumerate(plan):
        run = root / folder / leaf
        run.mkdir(parents=True)
        model = rng.choice(["eegnet", "shallow", "deep", "logvar"])
        config = {"model": {"name": model, "params": {"dropout": round(rng.uniform(0.1, 0.5), 3)}},
                  "optim": {"lr": round(10 ** rng.uniform(-4, -2), 6), "weight_decay": 0.0},
                  "data": {"bandpass": rng.choice([[8.0, 30.0], [4.0, 40.0], [1.0, 45.0]]), "tmin": 0.5,
                           "tmax": rng.choice([1.5, 2.0, 2.5]), "batch_size": rng.choice([16, 32, 64]),
                           "split": {"method": "loso" if leaf.startswith("fold") else "holdout",
                                     "fold": int(leaf[4:]) if leaf.startswith("fold") else 0}},
                  "trainer": {"max_epochs": 30}, "seed": i, "runs_dir": str(root),
                  "tracking": {"group": folder}}
        (run / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        if leaf.startswith("trial") and i % 37 == 5:  # a trial that diverged
            write_json(run / "run.json", {"run_id": f"{folder}-{leaf}", "group": folder, "status": "failed",
                                          "error": "RuntimeError: Loss is nan"})
            failed += 1
            continue
        write_json(run / "run.json", {"run_id": f"{folder}-{leaf}", "group": folder, "status": "finished"})
        epochs = 30
        curve = [min(0.95, 0.33 + 0.5 * (1 - 0.9 ** e) + rng.gauss(0, 0.02)) for e in range(epochs)]
        lines = ["epoch,step,lr,train/loss,val/balanced_accuracy,val/loss"]
        lines += [f"{e},{10 * e},{config['optim']['lr']},{1.1 - 0.6 * curve[e]:.4f},{curve[e]:.4f},{1.2 - 0.7 * curve[e]:.4f}"
                  for e in range(epochs)]
        (run / "metrics.csv").write_text("\n".join(lines) + "\n")
        scores = {m: round(max(curve) - rng.uniform(0, 0.05), 4) for m in ("balanced_accuracy", "accuracy", "f1_macro")}
        scores["kappa"] = round(1.5 * scores["balanced_accuracy"] - 0.5, 4)
        test = {m: round(v - rng.uniform(0, 0.05), 4) for m, v in scores.items()}
        write_json(run / "summary.json", {"run_id": f"{folder}-{leaf}", "run_dir": str(run), "group": folder,
                                          "model": model, "val": scores, "test": test, "classes": ["rest", "grasp", "open"],
                                          "test_confusion_matrix": [[5, 1, 0], [1, 4, 1], [0, 2, 4]],
                                          "finished": f"2026-12-0{1 + i % 5} 10:{i % 60:02d}", "tags": []})
    sweeps = sorted({f for f, _ in plan if f.startswith("sweep-")})
    for k, folder in enumerate(sweeps):  # each worker's summary makes a folder a study; every other one has its report
        write_json(root / folder / "sweep_summary-trials0-39.json", {"study": folder, "storage": f"journal:{folder}.log",
                                                                      "metric": "val.balanced_accuracy"})
        if k % 2 == 0:
            (root / folder / "study_report.html").write_text(f"<!doctype html><title>{folder}</title><h1>Study {folder}</h1>")
    return {"runs": len(plan), "failed": failed, "studies": len({f for f, _ in plan})}


def time_compare(root: Path, out: Path) -> dict[str, float]:
    env = dict(os.environ, COLUMNS="120", MPLBACKEND="Agg")
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline.cli", "compare", "--runs-dir", str(root), "--out", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        raise RuntimeError(f"bmi compare failed: {proc.stderr}")
    return {"bmi_compare_s": round(wall, 3), "bmi_compare_output_lines": len(proc.stdout.splitlines())}


def time_api(root: Path) -> dict[str, float]:
    from exports.runtime.console import runs

    start = time.perf_counter()
    rows = runs.list_runs(root)
    cold = time.perf_counter() - start
    start = time.perf_counter()
    runs.list_runs(root)
    warm = time.perf_counter() - start
    start = time.perf_counter()  # which folders are studies, and which have a report: read at each request
    studies = runs.studies(root, rows)
    studies_s = time.perf_counter() - start
    return {"api_list_runs_cold_s": round(cold, 4), "api_list_runs_again_s": round(warm, 4),
            "api_studies_s": round(studies_s, 4), "api_studies": len(studies),
            "api_payload_kb": round(len(json.dumps({"runs": rows, "studies": studies})) / 1024, 1), "api_rows": len(rows)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def time_page(root: Path) -> dict[str, float] | dict[str, str]:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        return {"page": "skipped: no chromium or playwright"}
    secret = "bench-dashboard-secret-0123456789"
    port = free_port()
    console = subprocess.Popen([sys.executable, "-m", "pipeline.cli", "console", "--runs", str(root), "--listen",
                                f"127.0.0.1:{port}"], env=dict(os.environ, BMI_CONSOLE_TOKEN=secret),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox", "--disable-gpu"])
            page = browser.new_context(viewport={"width": 1440, "height": 1000}).new_page()
            deadline = time.monotonic() + 60
            while True:  # the console is up once its page answers
                try:
                    page.goto(f"http://127.0.0.1:{port}/runs?token={secret}")
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.3)
            times = []
            for _ in range(3):
                start = time.perf_counter()
                page.reload()
                page.wait_for_function("document.querySelectorAll('[data-testid=runs-table] tbody tr').length > 0")
                times.append(time.perf_counter() - start)
            drawn = page.evaluate("document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length")
            groups = page.evaluate("document.querySelectorAll('[data-testid=runs-table] tbody tr.group').length")
            reports = page.evaluate("document.querySelectorAll('[data-testid=runs-table] [data-testid=study-report]').length")
            start = time.perf_counter()  # open the first group
            page.click("[data-testid=runs-table] tbody tr.group >> nth=0")
            page.wait_for_function("document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length > 0")
            opened_s = time.perf_counter() - start
            opened = page.evaluate("document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length")
            page.uncheck("#group-toggle")  # ungrouped: paged
            paged = page.evaluate("document.querySelectorAll('[data-testid=runs-table] tbody tr[data-run]').length")
            pager = page.inner_text("#page-label")
            browser.close()
    finally:
        console.terminate()
        console.wait(10)
    return {"page_first_paint_s": round(min(times), 3), "page_first_paint_s_all": [round(t, 3) for t in times],
            "page_run_rows_drawn": drawn, "page_group_rows": groups, "page_study_report_links": reports,
            "page_open_group_s": round(opened_s, 3),
            "page_rows_in_opened_group": opened, "page_rows_ungrouped_first_page": paged, "page_pager": pager}


def _page_cell(raw: dict) -> str | None:
    """The page's first paint and what it drew: ``0.20 s (15 folder rows; opening one 0.09 s)`` when it folded
    every study, ``2.12 s (300 rows)`` when it drew the runs; None when the page was not measured."""
    if "page_first_paint_s" not in raw:
        return None
    drawn, groups = raw.get("page_run_rows_drawn", 0), raw.get("page_group_rows", 0)
    what = ", ".join([*([f"{drawn} rows"] if drawn or not groups else []), *([f"{groups} folder rows"] if groups else [])])
    if groups and not drawn and "page_open_group_s" in raw:
        what += f"; opening one {raw['page_open_group_s']:.2f} s"
    return f"{raw['page_first_paint_s']:.2f} s ({what})"


def docs_column(raw: dict) -> list[str | None]:
    """One run's cells of the docs' table (raw results as :func:`main` writes them), in :func:`docs_table`'s rows."""
    return [f"{raw['bmi_compare_s']:.1f} s", f"{raw['api_list_runs_cold_s']:.2f} s",
            f"{raw['api_list_runs_again_s']:.2f} s", _page_cell(raw)]


def _count(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def docs_table(now: dict, before: dict | None = None, before_label: str = "before") -> dict:
    """The docs' ``dashboard`` table: a row per measurement, this run's column ``now``, and with ``before`` (an
    earlier run's raw results on the same layout) its column first."""
    layout = now["layout"]
    what = [f"bmi compare on {layout['runs']} runs (fresh process, report and chart)", "runs API, first load",
            "runs API, reload", "runs page first paint"]
    columns = ["what", *([f"before ({before_label})"] if before else []), "now"]
    cells = [*([docs_column(before)] if before else []), docs_column(now)]
    title = (f"The comparison dashboard with {_count(layout['runs'], 'run', 'runs')} "
             f"({_count(layout['studies'], 'study', 'studies')}, {_count(layout['failed'], 'failed run', 'failed runs')})")
    return {"title": title, "columns": columns,
            "rows": [[label, *(column[i] for column in cells)] for i, label in enumerate(what)]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=300, help="synthetic run folders (default 300)")
    parser.add_argument("--out", default="bench_results/dashboard.json", help="results JSON")
    parser.add_argument("--keep", metavar="DIR", help="write the runs folder here and keep it (default: a temp dir)")
    parser.add_argument("--before", metavar="RAW.json",
                        help="the docs table's 'before' column: the raw results (--out) of an earlier run, same --runs")
    parser.add_argument("--before-label", default="earlier run",
                        help="what --before measured, in its column's header (e.g. '2026-12-04 code')")
    results_file.add_arguments(parser)
    args = parser.parse_args(argv)
    if args.runs < 10:
        parser.error(f"'--runs' ({args.runs}) must be at least 10.")
    if Path(args.out).resolve().parent == results_file.DOCS_RESULTS:
        parser.error(f"--out {args.out}: the raw results are not the docs' format; --docs-table writes the docs' file")
    before = None
    if args.before:
        before = json.loads(Path(args.before).read_text())
        if before.get("layout", {}).get("runs") != args.runs:
            parser.error(f"--before {args.before}: a run on {before.get('layout', {}).get('runs')} runs, "
                         f"this one on {args.runs}")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="bench-dashboard-"))
    try:
        root = work / "runs"
        if root.exists():
            raise SystemExit(f"{root} exists: give --keep an empty folder")
        layout = write_runs(root, args.runs)
        result = {"layout": layout, **time_compare(root, work / "compare"), **time_api(root), **time_page(root),
                  "cpus": os.cpu_count(), "python": sys.version.split()[0]}
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    from datasets.atomic import write_json

    write_json(Path(args.out), result)
    print(json.dumps(result, indent=2))
    if (docs := results_file.docs_folder(args)) is not None:
        table = docs_table(result, before, args.before_label)
        path = results_file.write_table("dashboard", title=table["title"], columns=table["columns"],
                                        rows=table["rows"], folder=docs,
                                        source=f"scripts/bench_dashboard.py (raw results: {args.out})")
        print(f"docs results file: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
