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
    assert result["rest_cues"] == 3 and result["moved_in"] == 1 and result["cut"] == 0
    # a rest cue clipped at the record's end (the hand moving in it) is cut: not counted, as the commands' scoring
    cut = hand_at_rest(rows, cues[:2] + [(8.0, 15.0, "rest")])
    assert (cut["rest_cues"], cut["moved_in"], cut["cut"]) == (2, 1, 1)
    assert abs(result["travel"] - 0.3) < 0.01


def test_streamed_commands_are_scored_as_rehearse_scores_them():
    """The stream's decisions against the cues of a looping 20 s recording, scored by cue as bmi rehearse does:
    a late answer still answers its cue, a command held over from a movement cue is no onset at rest, and a cue
    the stream did not see whole is not scored."""
    from pipeline.demo import streamed_commands

    cues = [(1.0, 4.0, "grasp"), (6.0, 9.0, "rest"), (11.0, 14.0, "open"), (15.5, 18.5, "rest")]

    def command(t):
        for start, end, name in ((2.5, 5.0, "grasp"), (7.0, 7.5, "open"),  # a grasp 1.5 s late; a spontaneous open
                                 (21.5, 26.5, "grasp"),  # loop 2: held 0.5 s into the rest cue at 26
                                 (33.0, 35.0, "open")):
            if start <= t < end:
                return name
        return "rest"

    rows = [{"t_window_end": f"{100.0 + t:.4f}", "command": command(t), "action": "hold" if command(t) == "rest" else "move"}
            for t in np.arange(0, 38.0, 0.05)]
    meta = {"classes": ["rest", "grasp", "open"], "window": {"tmin": 0.5, "tmax": 2.5, "seconds": 2.0}}
    result = streamed_commands(rows, 100.0, cues, 20.0, meta)
    # movement cues at 1, 11, 21, 31 (the second loop counts); 11's open never came
    assert result["n_movement_cues"] == 4 and result["hits"] == 3 and result["movement_hit_rate"] == 0.75
    assert abs(result["time_to_correct_s"] - 1.5) < 1e-6  # answers after 1.5, 0.5 and 2.0 s
    # rest cues at 6, 15.5 and 26; the one at 35.5 ends after the stream
    assert result["n_rest_cues"] == 3 and result["false_onsets"] == 1 and result["late_onsets"] == 0
    assert abs(result["false_movements_per_min"] - 1 / 0.15) < 1e-6
    assert abs(result["movement_time_during_rest"] - 20 / 180) < 1e-6  # 7.0-7.5 and 26.0-26.5
    # gaps before the cues the stream saw begin, less a movement cue's late answer (half the 2 s window): [5, 6),
    # [9, 11), [15, 15.5), [18.5, 21), [25, 26), [29, 31), [35, 35.5) (before the cut rest cue at 35.5); the
    # loop-2 grasp moves the hand through [25, 26)
    assert result["n_gaps"] == 7 and result["gaps_moved_in"] == result["gaps_moved_in_late"] == 1
    assert abs(result["movement_time_between_cues"] - 20 / 190) < 1e-6


def test_the_report_says_how_the_hand_behaved_at_rest_and_between_cues():
    from pipeline.demo_report import _rest_lines

    cmd = {"hits": 3, "n_movement_cues": 4, "movement_hit_rate": 0.75, "time_to_correct_s": 1.5, "false_onsets": 1,
           "late_onsets": 0, "n_rest_cues": 3, "false_movements_per_min": 6.7, "movement_time_during_rest": 0.11,
           "n_gaps": 6, "gaps_moved_in": 2, "gaps_moved_in_late": 1, "movement_time_between_cues": 0.11}
    lines = "\n".join(_rest_lines({"online": {"commands": cmd}}))
    assert "3 of 4 (0.75)" in lines and "11% of rest-cue decisions" in lines
    assert "between cues" in lines and ("11% of decisions commanded a movement; the hand moved in 2 of 6 gaps "
                                        "(1 of them only holding the movement just cued)") in lines
    # a recording whose cues follow each other (no gaps): no such line
    assert "between cues" not in "\n".join(_rest_lines({"online": {"commands": {**cmd, "n_gaps": 0}}}))
