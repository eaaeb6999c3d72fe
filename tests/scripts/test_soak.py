"""scripts/soak.py end to end: a short soak of the real ``bmi serve`` with every fault of its cycle once."""

from __future__ import annotations

import json
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
def test_soak_two_minutes(tmp_path):
    out = tmp_path / "soak.json"
    proc = subprocess.run([sys.executable, str(ROOT / "scripts" / "soak.py"), "--minutes", "2", "--block-minutes", "1",
                           "--out", str(out), "--keep", str(tmp_path / "run")],
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
