"""When the decoding loop polls its input instead of sleeping on it.

A loop woken by the stream library (liblsl's condition variable, ``select`` on a socket) runs 0.4-0.5 ms after
the samples arrived on the project's machine (LSL loopback, 306 x 10 samples every 10 ms: push -> pull p50
0.85 ms blocking, 0.38 ms polling), and its first numpy calls after a sleep run on cold caches. Amplifiers
send chunks at a steady pace, so the loop sleeps until shortly before the next chunk is due and polls from
then on: a running loop takes the chunk as it lands. The price is CPU: at most ``2 x ahead`` per chunk
interval (polling from ``ahead`` before the expected arrival to ``ahead`` after it, then sleeping again until
woken), with ``ahead`` capped at a quarter of the interval, so never more than half of one core. Between polls
the loop yields its core (:func:`yield_core`), so the library thread that receives the samples is never kept
waiting by the loop polling for them (on two cores, polling without yielding raised the p99 latency). A stream
whose chunks mostly land outside the window (a bursty pace) is not polled for: polling would cost the CPU and
catch nothing.
"""

from __future__ import annotations

import math
import os
import time
from collections import deque

#: give the core to any other runnable thread, then carry on (a no-op when none is waiting)
yield_core = getattr(os, "sched_yield", None) or (lambda: time.sleep(0))

MAX_SHARE = 0.25  # of the chunk interval polled ahead of (and, at most, behind) the expected arrival
HISTORY = 32  # inter-arrival intervals the median is taken over (robust to a chunk split across two pulls)
MIN_HISTORY = 8  # intervals needed before polling starts
MIN_ON_TIME = 0.25  # share of the recent chunks that must land inside the window for polling to go on


class ArrivalPacer:
    """Tracks when chunks arrive and says whether the loop should poll now or may sleep until when."""

    def __init__(self, ahead_s: float):
        if not ahead_s >= 0:
            raise ValueError(f"'poll-ahead-ms' ({ahead_s * 1000:g}) must be >= 0 (0: always sleep until woken).")
        self.ahead_s = ahead_s
        self._last: float | None = None
        self._intervals: deque[float] = deque(maxlen=HISTORY)
        self._window = (math.inf, math.inf)  # (poll from, poll until) around the next expected arrival
        self._on_time: deque[bool] = deque(maxlen=HISTORY)  # whether each recent chunk landed inside its window
        self.polling = bool(ahead_s)  # off while too few chunks land inside the window
        self.chunks = 0  # arrivals seen
        self.in_window = 0  # ... of which while the loop was polling for them
        self.interval_ms: float | None = None  # the chunk interval last learnt (kept across restarts, for the stats)

    def arrived(self, now: float) -> None:
        """Samples came at ``now`` (monotonic seconds)."""
        self.chunks += 1
        on_time = self._window[0] <= now < self._window[1]  # judged even while not polling: the chunks' own pace
        self.in_window += on_time and self.polling
        if self._window[0] < math.inf:
            self._on_time.append(on_time)
            if len(self._on_time) >= MIN_HISTORY:
                self.polling = bool(self.ahead_s) and sum(self._on_time) >= MIN_ON_TIME * len(self._on_time)
        if self._last is not None:
            self._intervals.append(now - self._last)
        self._last = now
        interval = self._interval()
        if interval is None:
            return
        self.interval_ms = interval * 1000
        ahead = min(self.ahead_s, MAX_SHARE * interval)
        expected = now + interval
        self._window = (expected - ahead, expected + ahead)

    def restart(self) -> None:
        """A new connection or a gap: forget the pace (no polling until it is learnt again)."""
        self._last, self._window = None, (math.inf, math.inf)
        self._intervals.clear()
        self._on_time.clear()
        self.polling = bool(self.ahead_s)

    def poll_now(self, now: float) -> bool:
        """True while the next chunk is due: poll instead of sleeping."""
        return self.polling and self._window[0] <= now < self._window[1]

    def wake_at(self, now: float, deadline: float) -> float:
        """When to wake from a sleep that would last until ``deadline``: the polling window's start if sooner."""
        start = self._window[0]
        return min(deadline, start) if self.polling and start > now else deadline

    def _interval(self) -> float | None:
        """The median of the recent intervals (a few microseconds for 32 floats, after each chunk's work)."""
        if len(self._intervals) < MIN_HISTORY:
            return None
        return sorted(self._intervals)[len(self._intervals) // 2]
