"""`pipeline.demo.streamed_commands`: the demo's live decisions scored against the cues of the recording it
streamed, on a decision log written here whose hits, false onsets, gaps and latency are known by construction.

Decisions come every 100 ms, 50 ms off the tenths, so that none sits on a cue's edge; every cue lasts 3 s and the
model's window is 1 s (a movement command in the first 0.5 s after a movement cue is late, not a gap's)."""

import pytest

from pipeline.demo import streamed_commands

T_START = 100.0  # the stream's clock when the player started
META = {"classes": ["rest", "grasp", "open"], "window": {"seconds": 1.0}}
HOLD = ("rest", "hold")


def _log(times, decide):
    """Session-log decision rows: ``decide(t)`` gives (command, action) at ``t`` s after the start."""
    return [{"t_window_end": f"{T_START + t:.3f}", "command": c, "action": a}
            for t in times for c, a in [decide(t)]]


def test_hits_latency_false_onsets_and_gaps_of_a_written_log():
    times = [1.05 + 0.1 * k for k in range(111)]  # 1.05 .. 12.05 s

    def decide(t):
        if 2.6 <= t < 4.0:  # the grasp cue (2-5 s) answered at 2.65 s: 0.65 s after its onset
            return "grasp", "grasp"
        if 6.0 <= t < 6.3:  # the gap 5.5-7 s (after the grasp cue's 0.5 s of late answers): 3 of its 15 decisions
            return "open", "open"
        if 7.2 <= t < 7.5:  # the rest cue 7-10 s: a grasp onset (3 decisions) ...
            return "grasp", "grasp"
        if 8.0 <= t < 8.2:  # ... and an open onset (2): 2 false onsets, 5 of its 30 decisions moving
            return "open", "open"
        return HOLD

    rows = _log(times, decide)
    rows.insert(0, {"t_window_end": "", "command": "rest", "action": "hold"})  # withheld: no window, not scored
    cues = [(2.0, 5.0, "grasp"), (7.0, 10.0, "rest"),
            (11.0, 14.0, "open"),   # begun, but cut by the last decision (12.05 s): only the gap before it (10-11 s)
            (15.0, 18.0, "grasp")]  # after the last decision: not seen at all
    got = streamed_commands(rows, T_START, cues, duration=60.0, meta=META)
    assert got == {
        "hits": 1, "false_onsets": 2, "gaps_moved_in": 1, "gaps_moved_in_late": 0,
        "movement_hit_rate": 1.0, "time_to_correct_s": pytest.approx(0.65),
        "false_movements_per_min": pytest.approx(2 / (3 / 60)),  # 2 onsets in 3 s of rest cue: 40 per minute
        "late_onsets": 0, "movement_time_during_rest": pytest.approx(5 / 30),
        "n_movement_cues": 1, "n_rest_cues": 1,
        "movement_time_between_cues": pytest.approx(3 / 25),  # gaps 5.5-7 s (15 decisions) and 10-11 s (10)
        "n_gaps": 2,
    }


def test_the_player_loops_the_recording_and_each_loops_cues_count():
    """An 8 s recording streamed for 13 s: its one grasp cue (2-5 s) comes again at 10 s, and is missed there."""
    times = [1.05 + 0.1 * k for k in range(131)]  # 1.05 .. 14.05 s
    rows = _log(times, lambda t: ("grasp", "grasp") if 2.4 <= t < 3.0 else HOLD)
    got = streamed_commands(rows, T_START, [(2.0, 5.0, "grasp")], duration=8.0, meta=META)
    assert (got["n_movement_cues"], got["hits"], got["movement_hit_rate"]) == (2, 1, 0.5)
    assert got["time_to_correct_s"] == pytest.approx(0.45)
    # one gap, 5.5-10 s between the cue and its repeat, 45 decisions, none moving; no rest cue to score
    assert (got["n_gaps"], got["movement_time_between_cues"], got["gaps_moved_in"]) == (1, 0.0, 0)
    assert (got["n_rest_cues"], got["false_onsets"], got["false_movements_per_min"]) == (0, 0, None)


def test_nothing_to_score_is_none():
    rows = _log([1.05, 1.15], lambda t: HOLD)
    assert streamed_commands(rows, T_START, [], duration=8.0, meta=META) is None
    withheld = [{"t_window_end": "", "command": "rest", "action": "hold"}]
    assert streamed_commands(withheld, T_START, [(2.0, 5.0, "grasp")], duration=8.0, meta=META) is None
