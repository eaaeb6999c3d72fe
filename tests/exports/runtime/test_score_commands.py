"""``score_commands`` tells a late command (the movement just cued, still in the decoder's window) from a
movement that starts at rest."""

import numpy as np

from exports.runtime.closed_loop import Decisions, score_commands


def decisions(segments: list[tuple[float, str]], until: float, hop: float = 0.05) -> Decisions:
    """A decision every ``hop`` s; ``segments`` are (from s, command), each lasting until the next."""
    t = np.arange(0.0, until, hop)
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
