"""The input pacer: when the decoding loop polls for the next chunk instead of sleeping until woken."""

import numpy as np
import pytest

from exports.runtime.pacing import MIN_HISTORY, ArrivalPacer


def _paced(ahead_s: float, interval: float, n: int = MIN_HISTORY + 1, start: float = 100.0) -> ArrivalPacer:
    pacer = ArrivalPacer(ahead_s)
    for i in range(n):
        pacer.arrived(start + i * interval)
    return pacer


def test_polls_from_ahead_of_the_expected_chunk_to_as_long_after_it():
    pacer = _paced(0.001, 0.010)  # last arrival at 100.08, the next expected at 100.09
    assert pacer.interval_ms == pytest.approx(10.0)
    assert not pacer.poll_now(100.0885)
    assert pacer.poll_now(100.0895)
    assert pacer.poll_now(100.0905)
    assert not pacer.poll_now(100.0915)  # a late chunk: back to sleeping until woken
    # a sleep that would last past the window's start wakes at its start; a shorter one is kept
    assert pacer.wake_at(100.081, 100.095) == pytest.approx(100.089)
    assert pacer.wake_at(100.081, 100.085) == pytest.approx(100.085)
    assert pacer.wake_at(100.092, 100.097) == pytest.approx(100.097)  # after the window: the caller's own deadline


def test_polling_is_capped_at_a_quarter_of_the_interval():
    pacer = _paced(0.005, 0.002)  # chunks every 2 ms: poll 0.5 ms either side, not 5
    last = 100.0 + MIN_HISTORY * 0.002
    assert not pacer.poll_now(last + 0.0014)
    assert pacer.poll_now(last + 0.0016)
    assert pacer.poll_now(last + 0.0024)
    assert not pacer.poll_now(last + 0.0026)


def test_the_interval_is_robust_to_chunks_split_across_two_pulls():
    pacer = ArrivalPacer(0.001)
    t = 100.0
    for i in range(20):  # every third chunk arrives in two pieces 0.1 ms apart
        t += 0.010
        pacer.arrived(t)
        if i % 3 == 0:
            t += 0.0001
            pacer.arrived(t)
    assert pacer.interval_ms == pytest.approx(10.0, abs=0.2)


def test_no_polling_before_the_pace_is_learnt_after_a_restart_or_when_off():
    assert _paced(0.001, 0.010, n=MIN_HISTORY).interval_ms is None
    assert not _paced(0.001, 0.010, n=MIN_HISTORY).poll_now(100.0 + MIN_HISTORY * 0.010 - 0.0005)
    pacer = _paced(0.001, 0.010)
    pacer.restart()
    assert not pacer.poll_now(100.09)
    assert pacer.interval_ms == pytest.approx(10.0)  # the last pace learnt stays in the stats
    assert pacer.wake_at(100.081, 100.085) == 100.085
    off = _paced(0.0, 0.010)
    assert not any(off.poll_now(100.08 + k * 0.0001) for k in range(200))


def test_a_negative_lead_is_refused():
    with pytest.raises(ValueError, match="poll-ahead-ms"):
        ArrivalPacer(-0.001)


def test_counts_the_chunks_that_came_while_it_polled():
    pacer = _paced(0.001, 0.010)  # learnt at the 9th arrival (100.08)
    pacer.arrived(100.0902)  # inside the window: the loop was polling for it
    pacer.arrived(100.1050)  # 4.8 ms late: outside
    assert (pacer.chunks, pacer.in_window) == (MIN_HISTORY + 3, 1)


def test_a_stream_whose_chunks_land_outside_the_window_is_not_polled_for_until_they_land_inside_again():
    rng = np.random.default_rng(0)
    pacer, t = ArrivalPacer(0.0005), 100.0
    for _ in range(40):  # a bursty pace: 10 ms on average, +-6 ms from one chunk to the next
        t += 0.010 + rng.uniform(-0.006, 0.006)
        pacer.arrived(t)
    assert not pacer.polling
    assert not any(pacer.poll_now(t + k * 0.0001) for k in range(200))
    assert pacer.wake_at(t, t + 0.005) == t + 0.005  # sleeps until its own deadline
    for _ in range(40):  # steady again (judged on time while the loop sleeps)
        t += 0.010
        pacer.arrived(t)
    assert pacer.polling and pacer.poll_now(t + 0.010)
