"""Reading recordings into epochs: formats, events, picks and ROIs, groups, and every bad input."""

import numpy as np
import pytest

from datasets.dsp import CausalPreprocessor
from datasets.epochs import load_epochs
from datasets.picks import pick_channels

from data_helpers import data_config


def test_fif_epochs_with_classes_groups_and_causal_filtering(synth_fif, tmp_path):
    ep = load_epochs(data_config(synth_fif, tmp_path), tmp_path)
    assert ep.X.shape == (2 * 3 * 12, 64, 125) and ep.X.dtype == np.float32
    assert ep.classes == ["rest", "grasp", "open"] and np.bincount(ep.y).tolist() == [24, 24, 24]
    assert sorted(set(ep.groups["subject"])) == ["01", "02"] and sorted(set(ep.groups["run"])) == ["01", "02", "03"]
    assert len(np.unique(ep.trial)) == len(ep.y)
    assert ep.sfreq == 125.0 and ep.spec.causal and ep.spec.decim == 2


def test_offline_epochs_equal_the_online_filter_on_the_same_recording(synth_fif, tmp_path):
    """The training data are exactly what the runtime computes from the stream (chunked, causal)."""
    import mne

    cfg = data_config(synth_fif[:1], tmp_path)
    ep = load_epochs(cfg, tmp_path)
    raw = mne.io.read_raw(synth_fif[0], preload=True, verbose="error")
    proc = CausalPreprocessor(ep.spec)
    data = raw.get_data()
    online = np.concatenate([proc.process(data[:, i : i + 37]) for i in range(0, data.shape[1], 37)], axis=1)
    events, ids = mne.events_from_annotations(raw, verbose="error")
    first = events[0, 0] - raw.first_samp
    start = int(round((first + 0.5 * raw.info["sfreq"]) / ep.spec.decim))
    np.testing.assert_allclose(ep.X[0], online[:, start : start + 125], rtol=1e-5, atol=1e-12)


def test_edf_reads_through_the_same_path(synth_edf, tmp_path):
    ep = load_epochs(data_config(synth_edf, tmp_path), tmp_path)
    assert ep.X.shape[1:] == (64, 125) and len(ep.y) == 2 * 9


def test_real_eegmmidb_runs_give_the_documented_epochs(eegmmidb_dir, tmp_path):
    files = [eegmmidb_dir / f"S001R{r:02d}.edf" for r in (3, 7, 11)]
    cfg = data_config(files, tmp_path, events={"T1": "left", "T2": "right"}, rename="eegbci",
                      montage="colin27_1005", tmin=0.5, tmax=2.5, resample=None)
    ep = load_epochs(cfg, tmp_path)
    assert len(ep.y) == 45 and np.bincount(ep.y).tolist() in ([22, 23], [23, 22])
    assert ep.X.shape[1:] == (64, 320) and ep.sfreq == 160.0
    assert sorted(set(ep.groups["run"])) == ["03", "07", "11"] and set(ep.groups["subject"]) == {"001"}


def test_roi_picks_one_hemisphere(synth_fif):
    import mne

    from datasets.config import PicksConfig

    raw = mne.io.read_raw(synth_fif[0], verbose="error")
    left = pick_channels(raw, PicksConfig(roi="left_sensorimotor"))
    right = pick_channels(raw, PicksConfig(roi="right_sensorimotor"))
    both = pick_channels(raw, PicksConfig(roi="sensorimotor"))
    assert "C3" in left and "C4" in right and not set(left) & set(right)
    assert set(left) | set(right) <= set(both)
    pos = {ch["ch_name"]: ch["loc"][0] for ch in raw.info["chs"]}
    assert all(pos[c] < 0 for c in left) and all(pos[c] > 0 for c in right)
    assert "Oz" not in both and "Fpz" not in both


def test_meg_like_recordings_and_roi(tmp_path):
    from datasets.synthetic import write_synthetic

    files = write_synthetic(tmp_path / "meg", modality="meg", n_subjects=1, n_runs=1, trials_per_class=2, sfreq=500.0)
    cfg = data_config(files, tmp_path, picks={"types": ["grad"], "roi": "left_sensorimotor"}, resample=125.0)
    ep = load_epochs(cfg, tmp_path)
    assert 0 < ep.X.shape[1] < 204 and set(ep.ch_types) == {"grad"}


def test_missing_unsupported_and_unmatched_inputs(synth_fif, tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.fif"):
        load_epochs(data_config([tmp_path / "nope.fif"], tmp_path), tmp_path)
    with pytest.raises(FileNotFoundError, match="No recording files match"):
        load_epochs(data_config([str(tmp_path / "*.edf")], tmp_path), tmp_path)
    odd = tmp_path / "rec.xyz"
    odd.write_text("x")
    with pytest.raises(ValueError, match=r"Unsupported recording format '.xyz'.*Supported: .fif"):
        load_epochs(data_config([odd], tmp_path), tmp_path)
    corrupt = tmp_path / "broken_raw.fif"
    corrupt.write_bytes(b"\x00" * 100)
    with pytest.raises(ValueError, match="Could not read recording .*broken_raw.fif"):
        load_epochs(data_config([corrupt], tmp_path), tmp_path)
    with pytest.raises(ValueError, match=r"No events in .* match 'events' \(\['T1'\]\); the file holds: \['grasp', 'open', 'rest'\]"):
        load_epochs(data_config(synth_fif[:1], tmp_path, events={"T1": "left"}), tmp_path)


def test_window_outside_recording_channels_differ_and_group_pattern(synth_fif, tmp_path):
    with pytest.raises(ValueError, match="falls outside"):
        load_epochs(data_config(synth_fif[:1], tmp_path, tmin=500.0, tmax=501.0), tmp_path)
    with pytest.raises(ValueError, match=r"does not match 'group_pattern'"):
        load_epochs(data_config(synth_fif[:1], tmp_path, group_pattern=r"subj(?P<subject>\d+)"), tmp_path)
    import mne

    raw = mne.io.read_raw(synth_fif[1], preload=True, verbose="error").drop_channels(["C3", "Cz"])
    other = tmp_path / "sub-09_ses-01_run-01_raw.fif"
    raw.save(other, verbose="error")
    with pytest.raises(ValueError, match=r"Channels differ between .*: missing \['C3', 'Cz'\]"):
        load_epochs(data_config([synth_fif[0], other], tmp_path), tmp_path)
    assert not list((tmp_path / "cache").glob(".tmp-*"))  # no partial cache left behind


def test_release_windows_end_where_the_config_says_after_each_movement_cue(synth_fif, tmp_path):
    """`data.release`: after each movement cue one more window, labelled rest, ending `after_s` after the cue's
    end. The reference is the plain event path on a copy of the file whose annotations hold a rest cue placed by
    hand at (cue end + after_s - tmax); a window that would reach the next movement cue is dropped with a warning
    (one that ends in a rest cue is kept)."""
    import mne

    raw = mne.io.read_raw(synth_fif[0], preload=True, verbose="error")
    ann = raw.annotations
    moving = ann.description != "rest"
    after = 0.75
    by_hand = ann + mne.Annotations(ann.onset[moving] + ann.duration[moving] + after - 1.5, 3.0, "rest",
                                    orig_time=ann.orig_time)
    copy = tmp_path / "by_hand_raw.fif"
    raw.copy().set_annotations(by_hand).save(copy, verbose="error")

    released = load_epochs(data_config(synth_fif[:1], tmp_path, release={"after_s": after}), tmp_path)
    reference = load_epochs(data_config([copy], tmp_path), tmp_path)
    plain = load_epochs(data_config(synth_fif[:1], tmp_path), tmp_path)  # the same cache: another entry
    assert np.bincount(released.y).tolist() == [4 + 8, 4, 4] and np.bincount(plain.y).tolist() == [4, 4, 4]
    np.testing.assert_array_equal(released.y, reference.y)
    np.testing.assert_array_equal(released.X, reference.X)
    # each window says whether it is a cue's own or one of letting go (the test split leaves the latter out)
    assert released.release.sum() == 8 and not plain.release.any()
    np.testing.assert_array_equal(released.X[~released.release], plain.X)

    # 5 s after the cue (3 s long): the gaps between cues are 1.5-2.5 s, so only the windows before a rest cue stay
    onset, end = ann.onset[moving], ann.onset[moving] + ann.duration[moving]
    kept = int((end + 5.0 <= np.r_[onset[1:], np.inf]).sum())
    assert 0 < kept < moving.sum()
    with pytest.warns(UserWarning, match=f"{moving.sum() - kept} release window\\(s\\) dropped: the next movement cue"):
        late = load_epochs(data_config(synth_fif[:1], tmp_path, release={"after_s": 5.0}), tmp_path)
    assert np.bincount(late.y).tolist() == [4 + kept, 4, 4]

    # cues marked without a duration have no end to place the window after: refused, naming the file
    marks = tmp_path / "marks_raw.fif"
    raw.copy().set_annotations(mne.Annotations(ann.onset, 0.0, ann.description, orig_time=ann.orig_time)).save(
        marks, verbose="error")
    with pytest.raises(ValueError, match=r"8 movement cue\(s\) of marks_raw.fif have no duration"):
        load_epochs(data_config([marks], tmp_path, release={"after_s": after}), tmp_path)


def test_a_release_window_sharing_samples_with_the_next_cue_shares_its_trial(eegmmidb_dir, tmp_path):
    """On EEGMMIDB the rest cue T0 follows each movement at once, so a window of letting go ending 1.5 s after a
    movement (2 s long) shares its last second with the next rest cue's window (0.5-2.5 s after T0): the two are one
    trial, which a split keeps on one side."""
    cfg = data_config([eegmmidb_dir / "S001R03.edf"], tmp_path, events={"T0": "rest", "T1": "left", "T2": "right"},
                      rename="eegbci", tmin=0.5, tmax=2.5, resample=None, release={"after_s": 1.5})
    ep = load_epochs(cfg, tmp_path)
    released = np.flatnonzero(ep.release)
    assert len(released) == 14 and len(np.unique(ep.trial)) == len(ep.y) - len(released)
    second = 160  # samples at 160 Hz
    for i in released:
        (j,) = np.flatnonzero((ep.trial == ep.trial[i]) & ~ep.release)
        assert ep.classes[ep.y[j]] == "rest"
        np.testing.assert_array_equal(ep.X[i][:, second:], ep.X[j][:, :second])  # the same samples


def test_a_release_window_joins_every_window_it_shares_samples_with():
    """A window of letting go after a short cue overlaps the movement's window before it and the rest cue's window
    after it: all three are one trial. Cue windows that overlap only each other, and windows apart, keep their own."""
    from datasets.epochs import _trials

    starts = np.array([0, 50, 90, 300, 340, 600])  # windows of 100 samples
    released = np.array([False, True, False, False, False, True])
    trial = _trials(starts, released, 100)
    assert trial[0] == trial[1] == trial[2]  # movement, its release window, the rest cue after it
    assert len({trial[0], trial[3], trial[4], trial[5]}) == 4  # 3 and 4 overlap, but neither is a release window


@pytest.mark.parametrize("release, extra, message", [
    ({"after_s": 0.0}, {}, r"'release.after_s' \(0.0\) must be positive"),
    ({"after_s": 1.0, "label": "idle"}, {}, r"'release.label' \('idle'\) must be one of the classes"),
    ({"after_s": 1.0}, {"stim_channel": "STI 014"}, r"'release' needs each cue's duration"),
])
def test_bad_release_settings_are_named(synth_fif, tmp_path, release, extra, message):
    from datasets.config import ConfigError

    with pytest.raises(ConfigError, match=message):
        data_config(synth_fif[:1], tmp_path, release=release, **extra)
