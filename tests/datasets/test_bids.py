"""BIDS datasets through mne-bids: subject / session / run entities become the group labels."""

import numpy as np
import pytest

from datasets.epochs import load_epochs

from data_helpers import data_config

mne_bids = pytest.importorskip("mne_bids")


def test_bids_dataset_reads_with_entities(synth_fif, tmp_path):
    import mne

    root = tmp_path / "bids"
    for path in synth_fif[:4]:  # sub-01 runs 1-3, sub-02 run 1
        raw = mne.io.read_raw(path, verbose="error")
        subject, _, run = path.name.split("_")[:3]
        bids_path = mne_bids.BIDSPath(subject=str(int(subject[4:])), session="1", run=run[4:], task="hand",
                                      datatype="eeg", root=root)
        mne_bids.write_raw_bids(raw, bids_path, format="EDF", allow_preload=True, overwrite=True, verbose="error")
    cfg = data_config([], tmp_path, bids={"root": str(root), "task": "hand", "datatype": "eeg"})
    ep = load_epochs(cfg, tmp_path)
    assert sorted(set(ep.groups["subject"])) == ["1", "2"]
    assert set(ep.groups["session"]) == {"1"} and len(set(ep.groups["run"])) == 3
    assert len(ep.y) == 4 * 12 and np.bincount(ep.y).tolist() == [16, 16, 16]
