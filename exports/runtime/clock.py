"""Sample acquisition times on the server's clock, so that the age of a window means something.

LSL streams arrive clock-corrected by liblsl (``proc_clocksync``). A TCP client stamps samples with its
own clock, whose offset from ours is unknown: :class:`ArrivalClock` estimates it as the lower envelope of
(arrival time - sender timestamp) over a sliding window. The newest sample of every frame arrives a
transport delay after it was stamped, so the envelope is the clock offset plus the smallest transport
delay; ages measured with it exclude that smallest delay (well under a millisecond on one computer or a
wired LAN) and are never negative. A backlog (old samples arriving late) does not move the envelope,
because each burst also carries fresh samples; a sender clock that jumps back makes every window look old
(the server stays safe) until the jump leaves the window.
"""

from __future__ import annotations

from collections import deque


class ArrivalClock:
    """Maps a sender's timestamps to the local clock by the lower envelope of arrival - timestamp."""

    def __init__(self, window_s: float = 5.0):
        self.window_s = window_s
        self._lags: deque[tuple[float, float]] = deque()  # (arrival, arrival - timestamp), lag increasing

    def reset(self) -> None:
        self._lags.clear()

    def observe(self, timestamp: float, arrival: float) -> None:
        lag = arrival - timestamp
        while self._lags and self._lags[-1][1] >= lag:  # monotone deque: the front is the window's minimum
            self._lags.pop()
        self._lags.append((arrival, lag))
        while self._lags[0][0] < arrival - self.window_s:
            self._lags.popleft()

    @property
    def offset(self) -> float | None:
        """Local time minus sender time (plus the smallest transport delay), or None before any frame."""
        return self._lags[0][1] if self._lags else None

    def to_local(self, timestamp: float) -> float:
        if not self._lags:
            raise RuntimeError("ArrivalClock.to_local() before any frame was observed")
        return timestamp + self._lags[0][1]
