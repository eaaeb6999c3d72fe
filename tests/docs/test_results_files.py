"""Benchmark scripts write the docs' results format (``--docs-table``, ``scripts/results_file.py``): a converted
script run at its smallest size into a temporary folder writes a file that ``docs/benchmarks/tables.py`` loads,
with the committed table's columns, the committed notes, and the date, machine and command filled in."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "docs" / "benchmarks" / "results"


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.timeout(600)
def test_bench_inference_writes_the_inference_table(tmp_path, docs_tables):
    committed = docs_tables.load("inference")
    proc = subprocess.run([sys.executable, "scripts/bench_inference.py", "--quick", "--models", "logvar", "--shapes",
                           "eeg_64ch_1s_160Hz", "--out", str(tmp_path / "raw.json"), "--docs-dir", str(tmp_path)],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = docs_tables.load(str(tmp_path / "inference.json"))
    assert data["benchmark"] == "inference"
    assert data["columns"] == committed["columns"]
    assert [row[:2] for row in data["rows"]] == [["eeg_64ch_1s_160Hz", "logvar"]]
    assert data["notes"] == committed["notes"]  # measured prose is kept, not lost to a rerun
    assert "scripts/bench_inference.py --quick --models logvar" in data["command"]
    assert "Python" in data["machine"] and "onnxruntime" in data["machine"] and data["date"]
    assert not (tmp_path / "rig_inference.json").exists()  # one shape: the rig table needs its three
    assert json.loads((tmp_path / "raw.json").read_text())["shapes"]["eeg_64ch_1s_160Hz"]["logvar"]["onnxruntime"]
    assert any(line.startswith(".. list-table::") for line in docs_tables.rst_lines(data))


def test_a_table_that_breaks_the_format_is_refused_and_nothing_is_written(tmp_path):
    results_file = load_module("bmi_results_file_test", ROOT / "scripts" / "results_file.py")
    with pytest.raises(ValueError, match="row 1 has 1 cells"):
        results_file.write_table("faults", title="t", columns=["a", "b"], rows=[["only one"]], source="test",
                                 folder=tmp_path)
    assert list(tmp_path.iterdir()) == []  # no file, no temporary left behind
    path = results_file.write_table("faults", title="t", columns=["a", "b"], rows=[["x", None]], source="test",
                                    folder=tmp_path, notes=["new notes"])
    data = json.loads(path.read_text())
    assert data["rows"] == [["x", results_file.MISSING]] and data["notes"] == ["new notes"]
