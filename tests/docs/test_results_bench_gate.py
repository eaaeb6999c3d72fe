"""``scripts/bench_gate.py`` and ``scripts/bench_demo_gate.py`` write the docs' results files (``--docs-table NAME``,
``scripts/results_file.py``): run at their smallest size into a temporary folder, every table named is written
in ``docs/benchmarks/tables.py``'s format, with the committed table's columns, the committed notes, the command
that ran, and cells that are this run's measurements (read back from the script's raw results)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

GATE_TABLES = ["gate_three_seeds", "gate_tradeoff", "gate_bands", "gate_refit", "gate_csp_init", "gate_slow_fields",
               "gate_s001_tasks", "gate_s001_late_onsets"]
DEMO_TABLES = ["demo_between_cues", "demo_release"]


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def _check_written(docs_tables, folder: Path, name: str, command: str) -> dict:
    """What every written table must hold: the format, the committed columns and notes, this run's command."""
    committed = docs_tables.load(name)
    data = docs_tables.load(str(folder / f"{name}.json"))
    assert data["benchmark"] == name
    assert data["columns"] == committed["columns"], name
    assert data["notes"] == committed["notes"], name  # measured prose is kept, not lost to a rerun
    assert command in data["command"], name
    assert "Python" in data["machine"] and data["date"] and data["rows"]
    assert any(line.startswith(".. list-table::") for line in docs_tables.rst_lines(data))
    return data


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_bench_gate_writes_its_docs_tables(tmp_path, docs_tables):
    command = ["scripts/bench_gate.py", "--quick", "--datasets", "synthetic_eeg", "--bands", "mu_beta", "--models",
               "flat", "--seeds", "0"]
    proc = _run([*command, "--out", str(tmp_path / "raw.json"), "--docs-table", ",".join(GATE_TABLES),
                 "--docs-dir", str(tmp_path)], timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = " ".join(command)
    raw = json.loads((tmp_path / "raw.json").read_text())["results"]["synthetic_eeg"]
    flat, gated = raw["mu_beta/flat"], raw["mu_beta/flat+rest_gate"]

    data = _check_written(docs_tables, tmp_path, "gate_three_seeds", shown)
    assert data["title"] == "One seed, and a rest gate on the flat decoder"
    assert [row[:2] for row in data["rows"]] == [["synthetic EEG", "flat"], ["synthetic EEG", "flat + rest gate"]]
    measured = [f"{flat['balanced_accuracy']:.2f}", f"{flat['movement_accuracy']:.2f}",
                f"{flat['online_rest_auc']:.3f}", f"{flat['false_movements_per_min']:.1f}",
                f"{flat['movement_time_during_rest']:.3f}", f"{flat['movement_hit_rate']:.2f}",
                f"{flat['time_to_correct_s']:.2f}"]
    assert data["rows"][0][2:] == measured

    data = _check_written(docs_tables, tmp_path, "gate_tradeoff", shown)
    sweep = gated["gate_sweep"]
    assert data["rows"] == [["synthetic EEG", "flat + rest gate", *(
        f"{sweep[key]['false_movements_per_min']:.1f} / {sweep[key]['movement_hit_rate']:.2f}"
        for key in ("0.5/0.2", "0.6/0.2", "0.6/0.5", "0.7/0.2", "0.7/0.5", "0.75/0.5", "0.8/0.2", "0.8/0.5"))]]
    assert data["rows"][0][5].split(" / ") == [f"{gated['false_movements_per_min']:.1f}",  # the default, 0.7 / 0.2 s
                                               f"{gated['movement_hit_rate']:.2f}"]

    for name in ("gate_bands", "gate_refit", "gate_csp_init", "gate_slow_fields", "gate_s001_tasks"):
        data = _check_written(docs_tables, tmp_path, name, shown)
        assert [row[0] for row in data["rows"]] == ["synthetic EEG", "synthetic EEG"], name
        assert data["rows"][1][data["columns"].index("decoder")] == "flat + rest gate", name
        assert data["rows"][0][data["columns"].index("hits")] == f"{flat['movement_hit_rate']:.2f}", name

    # its first column names the data and seeds of the run (the committed one: "S001, three seeds")
    committed = docs_tables.load("gate_s001_late_onsets")
    data = docs_tables.load(str(tmp_path / "gate_s001_late_onsets.json"))
    assert data["columns"] == ["synthetic EEG, one seed", *committed["columns"][1:]]
    assert data["notes"] == committed["notes"] and shown in data["command"]
    counts = flat["per_seed"][0]["counts"]
    assert data["rows"][0][:3] == ["flat", f"{counts['false_onsets']} ({flat['false_movements_per_min']:.2f} / min)",
                                   str(counts["late_onsets"])]


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_demo_gate_writes_its_docs_tables(tmp_path, docs_tables):
    command = ["scripts/bench_demo_gate.py", "--seeds", "0", "--quick", "--models", "logvar"]
    proc = _run([*command, "--out", str(tmp_path / "raw"), "--docs-table", ",".join(DEMO_TABLES),
                 "--docs-dir", str(tmp_path)], timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    shown = " ".join(command)
    pooled = json.loads((tmp_path / "raw" / "demo_gate.json").read_text())["pooled"]

    data = _check_written(docs_tables, tmp_path, "demo_between_cues", shown)
    assert data["title"] == "The demo's gate cross-fitted over one seed, gaps between cues scored"
    assert [row[0] for row in data["rows"]] == list(pooled)
    trained = pooled["as trained"]
    assert data["rows"][0][1].startswith(f"{trained['rest_cues_moved_in']} of {trained['rest_cues']}")
    assert data["rows"][0][5].startswith(f"{trained['hits']} of {trained['movement_cues']}")

    data = _check_written(docs_tables, tmp_path, "demo_release", shown)
    on_the_cues = "on the cues (2 s windows, the default)"
    assert [row[:2] for row in data["rows"]] == [[on_the_cues, "as trained"],
                                                 [on_the_cues, "gate chosen (the demo's default)"],
                                                 [on_the_cues, "gate defaults"]]
    assert data["rows"][0][4].split(" (")[0] == str(trained["hits"])
    assert not (ROOT / "bench_results" / "demo_gate" / "seed0-quick-logvar").exists()  # nothing in the repo


@pytest.mark.parametrize("script", ["scripts/bench_gate.py", "scripts/bench_demo_gate.py"])
def test_the_docs_table_is_named_and_known(script, tmp_path):
    proc = _run([script, "--docs-dir", str(tmp_path), "--out", str(tmp_path / "raw")], timeout=120)
    assert proc.returncode == 2 and "--docs-table" in proc.stderr
    proc = _run([script, "--docs-table", "no_such_table", "--out", str(tmp_path / "raw")], timeout=120)
    assert proc.returncode == 2 and "no_such_table" in proc.stderr
    assert list(tmp_path.iterdir()) == []
