"""Channel renaming: one rule for training and the rig, equal to MNE's on the real PhysioNet names."""

import pytest

from datasets.channel_names import rename_channels


def test_eegbci_rule_equals_mne_standardize_on_the_real_edf(eegmmidb_dir):
    import mne

    raw = mne.io.read_raw_edf(eegmmidb_dir / "S001R03.edf", preload=False, verbose="error")
    ours = rename_channels(raw.ch_names, "eegbci")
    mne.datasets.eegbci.standardize(raw)
    assert ours == raw.ch_names and "FC5" in ours and "Fpz" in ours and "Cz" in ours


def test_mapping_and_errors():
    assert rename_channels(["a", "b"], {"a": "C3"}) == ["C3", "b"]
    with pytest.raises(ValueError, match="known rules: \\['eegbci'\\]"):
        rename_channels(["a"], "biosemi")
    with pytest.raises(ValueError, match="same name: \\['C3'\\]"):
        rename_channels(["a", "C3"], {"a": "C3"})
