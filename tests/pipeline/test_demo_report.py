"""The demo report's aligned online score: one decision per cue, the one whose window ended at cue + tmax."""

import numpy as np

from pipeline.demo_report import aligned_scores

META = {"classes": ["rest", "grasp", "open"], "window": {"tmin": 0.5, "tmax": 2.5}}


def _decisions(t_start, hop, seconds, command_at):
    return [{"t_window_end": f"{t_start + t:.4f}", "command": command_at(t)} for t in np.arange(0, seconds, hop)]


def test_aligned_score_takes_the_decision_at_cue_plus_tmax():
    cues = [(1.0, 4.0, "grasp"), (6.0, 9.0, "open"), (11.0, 14.0, "rest")]
    truth = {c[0] + 2.5: c[2] for c in cues}

    def command(t):  # right exactly at cue + tmax (within half a hop), wrong everywhere else in the cue period
        for end, name in truth.items():
            if abs(t - end) < 0.025:
                return name
        return "rest" if t < 10 else "grasp"

    decisions = _decisions(100.0, 0.05, 16.0, command)
    result = aligned_scores(decisions, {"t_start": 100.0}, cues, 16.0, META, offline=[1, 2, 0])
    assert result["n_trials"] == 3 and abs(result["hop_s"] - 0.05) < 1e-6
    assert result["online"]["accuracy"] == 1.0  # the every-decision score would be far lower here
    assert result["offline_same_windows"]["accuracy"] == 1.0 and result["online_offline_agreement"] == 1.0
    # an offline model that disagrees on one trial shows up as 2/3 agreement
    result = aligned_scores(decisions, {"t_start": 100.0}, cues, 16.0, META, offline=[1, 0, 0])
    assert abs(result["online_offline_agreement"] - 2 / 3) < 1e-9


def test_cues_outside_the_streamed_period_are_not_scored():
    cues = [(1.0, 4.0, "grasp"), (30.0, 33.0, "open")]
    decisions = _decisions(0.0, 0.05, 10.0, lambda t: "grasp")
    result = aligned_scores(decisions, {"t_start": 0.0}, cues, 40.0, META, offline=[1, 2])
    assert result["n_trials"] == 1 and result["online"]["accuracy"] == 1.0


def test_hand_at_rest_counts_the_rest_cues_the_aperture_moved_in():
    """The aperture plot as numbers: still through the first rest cue, moving 0.5 -> 0.8 inside the second, and
    a movement that ended before the third leaves it still; movement cues do not count."""
    from pipeline.demo_report import hand_at_rest

    def aperture(t):
        if t < 5:
            return 0.5
        if t < 6:
            return 0.5 + 0.3 * (t - 5)  # inside rest cue 2 (4..7)
        if t < 9:
            return 0.8
        if t < 10:
            return 0.8 - 0.8 * (t - 9)  # inside the grasp cue (8..11) and before rest cue 3 (11..14)
        return 0.0

    rows = [{"t_arrival": 1000.0 + t, "aperture": aperture(t)} for t in np.arange(0, 15, 0.05)]
    cues = [(0.5, 3.5, "rest"), (4.0, 7.0, "rest"), (8.0, 11.0, "grasp"), (11.0, 14.0, "rest")]
    result = hand_at_rest(rows, cues)
    assert result["rest_cues"] == 3 and result["moved_in"] == 1
    assert abs(result["travel"] - 0.3) < 0.01
