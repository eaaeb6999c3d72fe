"""scripts/soak.py end to end: a short soak of the real ``bmi serve`` with every fault of its cycle once, and the
docs' results file (``soak``) it writes from that run."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FAULTS = ["stall_backlog", "dc_step", "nan_burst", "reconnect_units", "misscaled_units", "estop_resume",
          "sse_clients", "log_start_stop"]
SAFE_ANSWER = {"stall_backlog": "stale", "dc_step": "jump", "nan_burst": "nonfinite",
               "reconnect_units": "new_connection", "misscaled_units": "new_connection",
               "estop_resume": "emergency_stop"}


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_soak_two_minutes(tmp_path, docs_tables):
    out = tmp_path / "raw.json"
    docs = tmp_path / "docs"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "2", "--block-minutes", "1",
                           "--memory-every-s", "5", "--out", str(out), "--keep", str(tmp_path / "run"),
                           "--docs-dir", str(docs)],
                          cwd=ROOT, capture_output=True, text=True, timeout=360)
    assert out.is_file(), proc.stdout[-3000:] + proc.stderr[-3000:]
    r = json.loads(out.read_text())
    report = proc.stdout[-4000:]
    assert r["server"]["exit"] == 0 and r["server"]["crashed"] is None, report + r["server"].get("stderr_tail", "")
    assert r["movement_commands_on_bad_data"] == 0, r["movement_commands_on_bad_data_list"]
    assert r["movement_commands"] > 1000, report  # the hand moved on good data: the zero above means something
    assert r["missed_hops_server"] == 0, r["missed_hop_gaps"]
    assert r["messages_lost"] == 0
    for fault in FAULTS:
        kind = r["faults_by_type"][fault]
        assert kind["injected"] >= 1, (fault, kind)
        assert kind["answered"] == kind["injected"], [f for f in r["faults"] if f["fault"] == fault]
    for row in r["faults"]:
        if row["fault"] in SAFE_ANSWER:  # answered with a safe message, for the fault's own reason
            assert row["time_to_safe_ms"] is not None and row["safe_reason"] == SAFE_ANSWER[row["fault"]], row
        else:  # the console's clients and the session log: decoding goes on
            assert row["missed_hops_server"] == 0 and row["recovery_s"] is not None, row
    reconnect = next(f for f in r["faults"] if f["fault"] == "reconnect_units")
    assert reconnect["foreign_units_refused"] and reconnect["units"] == "uV", reconnect
    misscaled = next(f for f in r["faults"] if f["fault"] == "misscaled_units")
    assert misscaled["decisions_on_misscaled"] == 0 and "amplitude" in misscaled["refused_as"], misscaled
    memory = [m for m in r["memory"]["samples"] if m["server_mib"] is not None]
    assert len(memory) >= 2, r["memory"]
    assert r["memory"]["growth_mib_per_hour"]["server"] is not None
    assert all(b["decisions"] > 0 and b["latency_ms"]["p99"] is not None for b in r["blocks"]), r["blocks"]
    assert proc.returncode == 0, report
    check_docs_table(docs_tables, docs / "soak.json", r)


def check_docs_table(docs_tables, path: Path, r: dict) -> None:
    """The docs' table of this run: the committed table's layout and notes, one row per block with the run's own
    figures, and the command, machine and date recorded (the row format itself: tests/docs)."""
    committed, data = docs_tables.load("soak"), docs_tables.load(str(path))
    assert data["benchmark"] == "soak" and data["notes"] == committed["notes"]  # measured prose is kept
    assert data["columns"] == ["block (1 min)", *committed["columns"][1:]], data["columns"]
    assert data["title"].startswith("Soak: 2 minutes of a MEG-scale stream")
    assert [row[0] for row in data["rows"]] == ["0-1", "1-2"], data["rows"]
    for row, block in zip(data["rows"], r["blocks"]):
        _, decisions, latency, server_p99, missed, bad, rss = row
        assert decisions == str(block["decisions"]) and bad == str(block["bad_moves"]), row
        assert re.fullmatch(r"\d+\.\d\d / \d+\.\d\d / \d+(\.\d)?", latency), latency
        assert latency.split(" / ")[1] == f"{block['latency_ms']['p99']:.2f}", (latency, block["latency_ms"])
        assert server_p99 == f"{block['server_processing_ms']['p99']:.2f}"
        assert missed.split()[0] == str(block["missed_hops_server"])
        assert re.fullmatch(r"\d+\.\d -> \d+\.\d", rss), rss  # sampled every 5 s: first and last of the block
    assert "scripts/soak.py --minutes 2 --block-minutes 1" in data["command"], data["command"]
    assert "Python" in data["machine"] and "onnxruntime" in data["machine"] and data["date"]
