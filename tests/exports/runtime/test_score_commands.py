"""``score_commands`` tells a late command (the movement just cued, still in the decoder's window) from a
movement that starts at rest."""

import numpy as np

from exports.runtime.closed_loop import Decisions, score_commands


def decisions(segments: list[tuple[float, str]], until: float, hop: float = 0.05, start: float = 0.0) -> Decisions:
    """A decision every ``hop`` s from ``start``; ``segments`` are (from s, command), each lasting until the next."""
    t = np.arange(start, until, hop)
    starts = np.array([s for s, _ in segments])
    command = [segments[i][1] for i in np.searchsorted(starts, t + 1e-9, side="right") - 1]
    action = ["hold" if c == "rest" else c for c in command]
    return Decisions(t=t, command=command, action=action, probabilities=np.zeros((len(t), 3)),
                     gate=np.full(len(t), np.nan), classes=["rest", "grasp", "open"])


CUES = [(0.0, "rest"), (4.0, "grasp"), (8.0, "rest"), (12.0, "rest")]  # 4 s each: 12 s of rest cues


def test_an_onset_repeating_the_cue_just_before_within_late_s_is_late_the_others_spontaneous():
    d = decisions([(0.0, "rest"), (5.0, "grasp"), (7.9, "rest"),
                   (8.1, "grasp"),   # 0.1 s after the grasp cue ended: late
                   (8.3, "rest"), (8.5, "open"),    # another class: from rest
                   (8.7, "rest"), (9.5, "grasp"),   # the same class, 1.5 s after the cue: from rest
                   (9.7, "rest"), (12.2, "grasp"),  # after a rest cue: from rest
                   (12.4, "rest")], until=16.0)
    scores = score_commands(d, CUES, 4.0, late_s=1.0)
    assert scores["counts"]["false_onsets"] == 4
    assert scores["late_onsets"] == scores["counts"]["late_onsets"] == 1
    assert scores["false_movements_per_min"] == 4 / 0.2
    assert scores["spontaneous_movements_per_min"] == 3 / 0.2
    # without late_s every onset at rest counts as spontaneous; a longer late_s takes in the 9.5 s onset too
    assert score_commands(d, CUES, 4.0)["spontaneous_movements_per_min"] == 4 / 0.2
    assert score_commands(d, CUES, 4.0, late_s=2.0)["late_onsets"] == 2


def test_cues_before_the_first_decision_are_left_out_of_every_rest_score():
    d = decisions([(0.0, "rest"), (1.0, "open"), (1.2, "rest")], until=16.0)
    d = Decisions(t=d.t[d.t >= 0.5], command=[c for c, t in zip(d.command, d.t) if t >= 0.5],
                  action=[a for a, t in zip(d.action, d.t) if t >= 0.5], probabilities=d.probabilities[d.t >= 0.5],
                  gate=d.gate[d.t >= 0.5], classes=d.classes)
    assert score_commands(d, CUES, 4.0)["counts"]["false_onsets"] == 1
    scores = score_commands(d, CUES, 4.0, from_s=float(d.t[0]))
    assert scores["counts"]["false_onsets"] == 0 and scores["n_cues_unscored"] == 1 and scores["n_rest_cues"] == 2


def test_the_gaps_between_cues_are_scored_as_rest_after_a_movement_cues_late_answer():
    cues = [(0.0, "rest"), (6.0, "grasp"), (12.0, "rest"), (18.0, "open"), (24.0, "rest")]  # 4 s each, 2 s gaps
    d = decisions([(0.0, "rest"), (7.0, "grasp"),
                   (10.9, "rest"),  # the grasp carried 0.9 s past its cue: late, within late_s
                   (11.5, "open"), (11.7, "rest"),  # in the gap after the grace: the hand moves between cues
                   (19.0, "open"), (23.5, "rest")],  # the open held 1.5 s past its cue: past the grace, its class
                  until=28.0, start=0.025)  # decisions off the cue boundaries
    scores = score_commands(d, cues, 4.0, late_s=1.0)
    counts = scores["counts"]
    assert (scores["n_gaps"], counts["gaps_moved_in"], counts["gaps_moved_in_late"]) == (4, 2, 1)
    # [4, 6), [11, 12), [16, 18), [23, 24); moving: the open at 11.5-11.7 and the held open at 23.0-23.5
    assert (counts["gap_decisions"], counts["gap_moving"]) == (40 + 20 + 40 + 20, 4 + 10)
    assert scores["movement_time_between_cues"] == 14 / 120 and scores["gaps_moving"] == 2 / 4
    # without late_s the late decisions count too (the grasp's 18, the open's 20 more); the gap after the grasp
    # moved with another class too, so only the open's is held; none of it touches the rest-cue scores
    plain = score_commands(d, cues, 4.0)
    assert (plain["counts"]["gap_decisions"], plain["counts"]["gap_moving"]) == (4 * 40, 4 + 18 + 30)
    assert plain["counts"]["gaps_moved_in_late"] == 1
    assert plain["counts"]["rest_moving"] == counts["rest_moving"] == 0


def test_cues_that_follow_each_other_leave_no_gaps_to_score():
    cues = [(0.0, "rest"), (4.2, "grasp"), (8.3, "rest")]  # EEGMMIDB-like: durations about the median
    scores = score_commands(decisions([(0.0, "open")], until=12.0, start=0.025), cues, 4.0, late_s=0.5)
    assert scores["n_gaps"] == 0 and scores["movement_time_between_cues"] is None and scores["gaps_moving"] is None


def test_a_cue_cut_by_the_end_of_the_decisions_is_not_scored_but_the_gap_before_it_is():
    cues = [(0.0, "rest"), (6.0, "grasp"), (12.0, "rest")]  # decisions end at 14: the last rest cue is cut
    d = decisions([(0.0, "rest"), (7.0, "grasp"), (10.5, "rest"), (11.5, "open"), (11.7, "rest"), (13.0, "open")],
                  until=14.0, start=0.025)
    whole = score_commands(d, cues, 4.0, late_s=1.0)  # as if the last cue were whole: its open counts
    cut = score_commands(d, cues, 4.0, late_s=1.0, until_s=float(d.t[-1]))
    assert (whole["n_rest_cues"], whole["counts"]["false_onsets"]) == (2, 1)
    assert (cut["n_rest_cues"], cut["counts"]["false_onsets"], cut["n_cues_unscored"]) == (1, 0, 1)
    for scores in (whole, cut):  # [4, 6) and [11, 12), whose open moves the hand
        assert (scores["n_gaps"], scores["counts"]["gaps_moved_in"], scores["counts"]["gap_decisions"]) == (2, 1, 60)
