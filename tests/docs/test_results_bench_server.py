"""The closed-loop benchmarks write the docs' results format (``--docs-table``, ``scripts/results_file.py``):
``scripts/bench_server.py`` (``closed_loop``; ``channel_mix`` and ``poll_ahead`` from its comparisons) and
``scripts/soak.py`` (``soak``), each run at its smallest size into a temporary folder, write files that
``docs/benchmarks/tables.py`` loads, with the committed table's columns, the committed notes, and the date,
machine and command filled in; the cells are the run's own figures, formatted as the committed ones. The soak's
run is tests/scripts/test_soak.py's (one soak checks both the safety goals and the table)."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"
SHAPE = "eeg_64ch_500Hz"  # the smaller of bench_server's two shapes
MS3 = r"\d+\.\d\d / \d+\.\d\d / \d+\.\d\d"  # p50 / p99 / max (ms)
MS2 = r"\d+\.\d\d / \d+\.\d\d"
SPREAD = r"\d+\.\d\d(-\d+\.\d\d)?"  # one round's figure, or the range over rounds


def load_module(name: str, path: Path, monkeypatch=None):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    if monkeypatch is not None:  # registered while it runs: soak.py's dataclasses look their module up
        monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def scripts(monkeypatch):
    """scripts/bench_server.py and scripts/soak.py as modules (they import their neighbours from scripts/)."""
    monkeypatch.syspath_prepend(str(SCRIPTS))
    return (load_module("bmi_bench_server_test", SCRIPTS / "bench_server.py", monkeypatch),
            load_module("bmi_soak_test", SCRIPTS / "soak.py", monkeypatch))


def run(args: list[str], timeout: int) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def closed_loop_columns(committed: list[str]) -> list[str]:
    """The committed closed_loop table set two runs side by side (a busy and a quiet moment of the machine); one
    run measures one of them, so the script's table has each figure once."""
    return [c.removesuffix(", busy") for c in committed if c != "quiet"]


def check_provenance(data: dict, committed: dict, command: str) -> None:
    assert data["notes"] == committed["notes"]  # measured prose is kept, not lost to a rerun
    assert command in data["command"], data["command"]
    assert "Python" in data["machine"] and "onnxruntime" in data["machine"] and data["date"]
    assert data["source"].startswith("scripts/") and "raw results" in data["source"]


def test_bench_server_plain_run_writes_the_closed_loop_table_only(tmp_path, docs_tables):
    committed = docs_tables.load("closed_loop")
    args = ["scripts/bench_server.py", "--seconds", "3", "--no-console", "--shapes", SHAPE,
            "--out", str(tmp_path / "raw.json"), "--docs-dir", str(tmp_path)]
    proc = run(args, timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    data = docs_tables.load(str(tmp_path / "closed_loop.json"))
    assert data["benchmark"] == "closed_loop"
    assert data["columns"] == closed_loop_columns(committed["columns"])
    assert len(data["rows"]) == 1, data["rows"]
    stream, end_to_end, server, dropped, missed, late = data["rows"][0]
    raw = json.loads((tmp_path / "raw.json").read_text())[SHAPE]
    assert stream == SHAPE
    assert re.fullmatch(MS3, end_to_end) and re.fullmatch(MS2, server), data["rows"]
    assert end_to_end.split(" / ")[0] == f"{raw['latency_ms']['p50']:.2f}"  # the run's own figures
    assert server.split(" / ")[1] == f"{raw['server_processing_ms']['p99']:.2f}"
    assert dropped == str(raw["dropped_samples"]) and late == str(raw["late_hops"])
    assert missed == f"{raw['missed_hops']} of {raw['decisions_expected']}" and raw["decisions_expected"] > 0
    check_provenance(data, committed, f"scripts/bench_server.py --seconds 3 --no-console --shapes {SHAPE}")
    # no comparison in this run: their tables are not written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["closed_loop.json", "raw.json"]
    assert any(line.startswith(".. list-table::") for line in docs_tables.rst_lines(data))


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_bench_server_comparisons_write_the_channel_mix_and_poll_ahead_tables(tmp_path, docs_tables):
    args = ["scripts/bench_server.py", "--seconds", "3", "--no-console", "--shapes", SHAPE,
            "--compare-whole-graph", "1", "--compare-poll-ahead", "1", "--out", str(tmp_path / "raw.json"),
            "--docs-dir", str(tmp_path)]
    proc = run(args, timeout=380)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    raw = json.loads((tmp_path / "raw.json").read_text())
    assert docs_tables.load(str(tmp_path / "closed_loop.json"))["rows"][0][0] == SHAPE
    for name, feature, default, off in (("channel_mix", "whole_graph", "mix_on_arrival", "whole_graph"),
                                        ("poll_ahead", "poll_ahead", "poll_ahead", "no_poll_ahead")):
        committed = docs_tables.load(name)
        data = docs_tables.load(str(tmp_path / f"{name}.json"))
        assert data["benchmark"] == name
        assert data["columns"] == committed["columns"], name
        assert len(data["rows"]) == 1, data["rows"]
        row = data["rows"][0]
        comparison = raw[f"{feature}_comparison"][SHAPE]
        ratio = comparison[f"ratio_{default}_to_{off}"]
        assert row[0] == SHAPE
        assert row[1] == f"{ratio['end_to_end_p50']:.2f} / {ratio['end_to_end_p99']:.2f}", row
        assert row[2] == f"{ratio['server_p50']:.2f} / {ratio['server_p99']:.2f}", row
        if name == "poll_ahead":
            share = comparison[default][0]["cpu_share"] * 100
            assert row[3] == f"{ratio['cpu_share']:.2f} ({share:.0f} % of a core)", row
        sides = row[-2:]
        assert all(re.fullmatch(f"{SPREAD} / {SPREAD}", cell) for cell in sides), row
        for cell, side in zip(sides, (default, off)):
            assert cell == (f"{comparison[side][0]['end_to_end_p50']:.2f} / "
                            f"{comparison[side][0]['end_to_end_p99']:.2f}"), (name, side, row)
        check_provenance(data, committed, f"--compare-whole-graph 1 --compare-poll-ahead 1 --out {tmp_path}")


def test_bench_server_tables_of_several_rounds_give_each_sides_range(scripts, docs_tables):
    """Without running anything: two rounds per side show as ranges, MEG scale first, and a session that had
    no decision shows the tables' empty mark rather than nan."""
    bench_server, _ = scripts

    def session(p50, p99):
        return {"end_to_end_p50": p50, "end_to_end_p99": p99, "server_p50": 0.5, "server_p99": 0.9,
                "cpu_share": 0.152}

    def comparison(default, off):
        return {default: [session(2.34, 3.54), session(2.38, 4.33)], off: [session(2.59, 4.18), session(3.0, 4.62)],
                f"ratio_{default}_to_{off}": {"end_to_end_p50": 0.8412, "end_to_end_p99": 0.85, "server_p50": 0.78,
                                              "server_p99": 0.72, "cpu_share": 1.014}}

    plain = {"latency_ms": {"p50": float("nan"), "p99": float("nan"), "max": float("nan")},
             "server_processing_ms": None, "dropped_samples": 0, "missed_hops": 5, "decisions_expected": 5,
             "late_hops": None}
    results = {SHAPE: plain, "meg_306ch_1kHz": plain,
               "whole_graph_comparison": {s: comparison("mix_on_arrival", "whole_graph") for s in bench_server.SHAPES},
               "poll_ahead_comparison": {s: comparison("poll_ahead", "no_poll_ahead") for s in bench_server.SHAPES}}
    out = {t["name"]: t for t in bench_server.docs_tables(results)}
    assert list(out) == ["closed_loop", "channel_mix", "poll_ahead"]
    assert out["closed_loop"]["rows"][0] == [SHAPE, "— / — / —", "— / —", 0, "5 of 5", None]
    for name in ("channel_mix", "poll_ahead"):
        assert out[name]["columns"] == docs_tables.load(name)["columns"]
        assert [row[0] for row in out[name]["rows"]] == ["meg_306ch_1kHz", SHAPE]
        assert out[name]["rows"][0][1:3] == ["0.84 / 0.85", "0.78 / 0.72"]
        assert out[name]["rows"][0][-2:] == ["2.34-2.38 / 3.54-4.33", "2.59-3.00 / 4.18-4.62"]
    assert out["poll_ahead"]["rows"][0][3] == "1.01 (15 % of a core)"


def test_soak_table_of_a_long_run_reads_as_the_committed_one(scripts, docs_tables):
    """Without running anything: blocks of 5 minutes labelled in minutes, the maximum to three figures, the
    server's RSS first -> last; missed hops while the server waited for a CPU shown apart."""
    _, soak = scripts

    def block(b, p50, p99, peak, rss, missed=0, server=0):
        return {"block": b, "from_s": b * 300.0, "to_s": (b + 1) * 300.0, "decisions": 5533,
                "latency_ms": {"p50": p50, "p99": p99, "max": peak}, "server_processing_ms": {"p99": 1.551},
                "missed_hops": missed, "missed_hops_server": server, "bad_moves": 0, "server_rss_mib": rss}

    result = {"minutes": 30.0, "block_minutes": 5.0, "fault_every_s": 30.0,
              "blocks": [block(0, 1.134, 9.16, 201.4, [154.0, None, 162.31]), block(1, 1.2, 2.77, 7.2, [161.8]),
                         block(2, 1.0, 2.0, 10.34, [], missed=3)]}
    table = soak.docs_table(result)
    committed = docs_tables.load("soak")
    assert table["columns"] == committed["columns"] and table["title"] == committed["title"]
    assert table["rows"][0] == ["0-5", 5533, "1.13 / 9.16 / 201", "1.55", "0", 0, "154.0 -> 162.3"]
    assert table["rows"][1][:3] == ["5-10", 5533, "1.20 / 2.77 / 7.2"] and table["rows"][1][-1] == "161.8"
    assert table["rows"][2][2] == "1.00 / 2.00 / 10.3" and table["rows"][2][-1] is None
    assert table["rows"][2][4] == "0 (+3 while it waited for a CPU)"
