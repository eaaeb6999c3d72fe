"""Sample acquisition times on the server's clock, so that the age of a window means something.

LSL streams arrive clock-corrected by liblsl (``time_correction``). A TCP client stamps samples with its
own clock, whose offset from ours is unknown: :class:`ArrivalClock` estimates it as the lower envelope of
(arrival time - sender timestamp). The newest sample of every frame arrives a transport delay after it was
stamped, so the envelope is the clock offset plus the smallest transport delay; ages measured with it
exclude that smallest delay (well under a millisecond on one computer or a wired LAN).

The estimate is kept, not recomputed from whatever arrived last. A late frame (a stall, a backlog)
only shows a larger lag, which is what it is: old data. So the estimate

- falls at once to any smaller lag (a lower envelope: no frame can arrive before it was stamped);
- rises only to the smallest lag of a whole window (``window_s``) of live streaming, that is frames without a
  silence over ``GAP_S`` and lags that did not fall by more than ``STEADY_S`` across the window. A backlog
  being drained fails both: its lags fall as it catches up, and a pause breaks the continuity. A sender
  clock that really stepped back, or drifts slower than ours, passes them (so does a sender that turns
  persistently late by a fixed amount, or a backlog drained less than 1 % faster than real time for over a
  window: from one side they look the same as a step back, and are adopted as one: a clock fault);
- never expires. An earlier version windowed the envelope by arrival time: after a pause longer than the
  window the old lags were gone, the backlog read at once re-estimated the offset from the old frames
  themselves, and their windows looked 0 ms old. Windowing by the sender's timestamps instead fails for a
  backlog longer than the window (the old lags leave it while the backlog is read), so no time-based expiry
  at all.

How the estimate moves is the clock check's input (:class:`~.server.Server`): a move larger than the
freshness limit, either way, is a clock fault. That check waits until the estimate has ``settled``: the
first frames of a connection only converge on the envelope, and a sender whose timestamps run faster than
our clock for good (a file sent unpaced: a test burst) has no real-time clock to check.
"""

from __future__ import annotations

from collections import deque

GAP_S = 1.0  # a silence this long breaks "live streaming" (amplifiers send every few to 100 ms)
STEADY_S = 0.05  # lags falling by more than this over the window: a backlog being drained, not a clock step
SETTLE_S = 1.0  # the estimate is settled once it has not fallen by more than SETTLE_DROP_S for this long
SETTLE_DROP_S = 0.02  # so a sender running some % faster than our clock never settles: no real-time stream

# A timestamp this far ahead of our clock, on top of one of the sender's chunks (Server._clock_problem), is a
# clock fault. A sample cannot be acquired after it arrived; liblsl's time_correction errs by well under a
# millisecond on a LAN, and 5 ms is 3 % of the default freshness limit (150 ms): what a tolerated lead can hide.
AHEAD_TOLERANCE_S = 0.005


class ArrivalClock:
    """Maps a sender's timestamps to the local clock by a kept lower envelope of arrival - timestamp."""

    def __init__(self, window_s: float = 5.0):
        if not window_s > 0:
            raise ValueError(f"ArrivalClock window_s ({window_s}) must be positive.")
        self.window_s = window_s
        self.reset()

    def reset(self) -> None:
        """A new connection: its clock is unknown."""
        self._offset: float | None = None
        self._lags: deque[tuple[float, float]] = deque()  # (arrival, lag) over the window, oldest first
        self._mins: deque[tuple[float, float]] = deque()  # the same, lag increasing: the window's minimum first
        self._live_since: float | None = None  # arrival of the first frame after the last silence over GAP_S
        self._last_arrival: float | None = None
        self._settle_ref: tuple[float, float] | None = None  # (arrival, offset) when the estimate last fell a lot
        self.settled = False

    def observe(self, timestamp: float, arrival: float) -> None:
        lag = arrival - timestamp
        if self._last_arrival is None or arrival - self._last_arrival > GAP_S:
            self._live_since = arrival
        self._last_arrival = arrival
        self._lags.append((arrival, lag))
        while self._mins and self._mins[-1][1] >= lag:
            self._mins.pop()
        self._mins.append((arrival, lag))
        start = arrival - self.window_s  # the newest entry always stays: neither deque empties
        while self._lags[0][0] < start:
            self._lags.popleft()
        while self._mins[0][0] < start:
            self._mins.popleft()
        if self._offset is None or lag < self._offset:
            self._offset = lag
        elif (arrival - self._live_since >= self.window_s and self._mins[0][1] > self._offset
              and self._lags[0][1] - lag <= STEADY_S):
            self._offset = self._mins[0][1]  # a whole window of live streaming, none of it as early as before
        if not self.settled:
            if self._settle_ref is None or self._offset < self._settle_ref[1] - SETTLE_DROP_S:
                self._settle_ref = (arrival, self._offset)
            elif arrival - self._settle_ref[0] >= SETTLE_S:
                self.settled = True

    @property
    def offset(self) -> float | None:
        """Local time minus sender time (plus the smallest transport delay), or None before any frame."""
        return self._offset

    def to_local(self, timestamp: float) -> float:
        if self._offset is None:
            raise RuntimeError("ArrivalClock.to_local() before any frame was observed")
        return timestamp + self._offset
