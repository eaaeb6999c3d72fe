"""The documented table of what each region of interest holds (``docs/journeys/roi_channels.csv``, shown on the
training journey's page) is what ``picks.roi`` selects."""

from __future__ import annotations

import csv
import re
import sys
from pathlib import Path

import mne
import numpy as np
import pytest

from datasets.config import DataConfig, PicksConfig
from datasets.picks import pick_channels
from datasets.reading import read_raw
from datasets.typed import from_mapping

ROOT = Path(__file__).resolve().parents[2]
ROIS = ("left_sensorimotor", "right_sensorimotor", "sensorimotor")


def documented_roi_table() -> dict[str, dict[str, list[str]]]:
    """{montage row: {roi: channels}} from the docs' ROI table."""
    with open(ROOT / "docs" / "journeys" / "roi_channels.csv", newline="") as f:
        return {r["montage"]: {roi: [c.strip() for c in r[roi].split(",")] for roi in ROIS} for r in csv.DictReader(f)}


def _row(table: dict, starts: str) -> dict[str, list[str]]:
    return next(v for k, v in table.items() if k.startswith(starts))


def test_biosemi64_rois_are_the_documented_ones():
    info = mne.create_info(mne.channels.make_standard_montage("biosemi64").ch_names, 250.0, "eeg")
    info.set_montage("biosemi64")
    raw = mne.io.RawArray(np.zeros((64, 10)), info, verbose="error")
    documented = _row(documented_roi_table(), "BioSemi 64")
    for roi in ROIS:
        assert pick_channels(raw, PicksConfig(types=["eeg"], roi=roi)) == documented[roi], roi
    assert re.search(r"C3", ",".join(documented["left_sensorimotor"])) and "C4" in documented["right_sensorimotor"]


def test_physionet_rois_are_the_documented_ones(eegmmidb_dir):
    cfg = from_mapping(DataConfig, {"files": ["x.edf"], "events": {"T1": "left"}, "rename": "eegbci",
                                    "montage": "colin27_1005"}, "data")
    raw = read_raw(eegmmidb_dir / "S001R04.edf", cfg)
    documented = _row(documented_roi_table(), "PhysioNet 64")
    for roi in ROIS:
        assert pick_channels(raw, PicksConfig(types=["eeg"], roi=roi)) == documented[roi], roi


def test_the_table_check_fails_on_a_wrong_list(monkeypatch):
    table = documented_roi_table()
    table["BioSemi 64 (bmi data synth, the demo)"]["left_sensorimotor"] = ["C3"]
    monkeypatch.setattr(sys.modules[__name__], "documented_roi_table", lambda: table)
    with pytest.raises(AssertionError, match="left_sensorimotor"):
        test_biosemi64_rois_are_the_documented_ones()
