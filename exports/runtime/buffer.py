"""Fixed-capacity ring buffers of multichannel samples with an O(1) append and a view of the newest window."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    """The newest ``capacity`` samples. Each sample is written once, into a buffer a few times the capacity;
    when that is full the newest samples move to its start, so the newest window is always one contiguous
    view and an append costs one copy of the chunk (plus, now and then, one of the window)."""

    SPARE = 3  # capacities of room beyond the window: one move per three capacities appended

    def __init__(self, n_chans: int, capacity: int):
        self._data = np.zeros((n_chans, (1 + self.SPARE) * capacity), dtype=np.float32)
        self.capacity = capacity
        self._end = 0  # one past the newest sample in _data
        self.count = 0  # samples currently held (<= capacity)

    def clear(self) -> None:
        self._end = 0
        self.count = 0

    def append(self, chunk: np.ndarray) -> None:
        n = chunk.shape[1]
        if n >= self.capacity:
            chunk, n = chunk[:, -self.capacity :], self.capacity
        if self._end + n > self._data.shape[1]:  # out of room: keep what the window still needs, at the start
            keep = min(self.count, self.capacity - n)
            self._data[:, :keep] = self._data[:, self._end - keep : self._end]
            self._end = keep
        self._data[:, self._end : self._end + n] = chunk
        self._end += n
        self.count = min(self.capacity, self.count + n)

    def latest(self, n: int) -> np.ndarray:
        """The newest ``n`` samples, oldest first, as a view ``[n_chans, n]``."""
        if n > self.count:
            raise ValueError(f"the buffer holds {self.count} samples, fewer than the {n} asked for")
        return self._data[:, self._end - n : self._end]


class PhaseRings:
    """A signal at the input rate kept as ``decim`` rings, one per decimation phase (sample ``k`` since the
    last clear goes to ring ``k % decim``), so that the newest ``n`` of every ``decim``-th sample counted back
    from the newest one are a contiguous view: the decoder's window is never gathered sample by sample."""

    def __init__(self, n_chans: int, capacity: int, decim: int):
        self.rings = [RingBuffer(n_chans, capacity) for _ in range(decim)]
        self.capacity, self.decim = capacity, decim
        self._seen = 0

    def clear(self) -> None:
        for ring in self.rings:
            ring.clear()
        self._seen = 0

    def append(self, chunk: np.ndarray) -> None:
        n = chunk.shape[1]
        for phase, ring in enumerate(self.rings):
            first = (phase - self._seen) % self.decim  # this chunk's first sample of that phase
            if first < n:
                ring.append(chunk[:, first :: self.decim])
        self._seen += n

    @property
    def _newest(self) -> RingBuffer:
        return self.rings[(self._seen - 1) % self.decim]

    @property
    def count(self) -> int:
        """How many of every ``decim``-th sample, ending at the newest, are held."""
        return self._newest.count if self._seen else 0

    def refill(self, source: "PhaseRings", transform) -> None:
        """Hold ``transform`` of what ``source`` (same shape) holds, phase by phase."""
        for ring, src in zip(self.rings, source.rings):
            ring.clear()
            if src.count:
                ring.append(transform(src.latest(src.count)))
        self._seen = source._seen

    def latest(self, n: int) -> np.ndarray:
        """The newest ``n`` of every ``decim``-th sample ending at the newest sample, oldest first (a view)."""
        if not self._seen:
            raise ValueError("the buffer holds no samples")
        return self._newest.latest(n)
