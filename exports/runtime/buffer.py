"""A fixed-capacity ring buffer of multichannel samples with an O(1) append and a view of the newest window."""

from __future__ import annotations

import numpy as np


class RingBuffer:
    def __init__(self, n_chans: int, capacity: int):
        self._data = np.zeros((n_chans, 2 * capacity), dtype=np.float32)  # doubled: the newest window is contiguous
        self.capacity = capacity
        self._pos = 0
        self.count = 0  # samples currently held (<= capacity)

    def clear(self) -> None:
        self._pos = 0
        self.count = 0

    def append(self, chunk: np.ndarray) -> None:
        n = chunk.shape[1]
        if n >= self.capacity:
            chunk, n = chunk[:, -self.capacity :], self.capacity
        end = self._pos + n
        first = min(n, self.capacity - self._pos)
        for offset in (0, self.capacity):  # write both copies
            self._data[:, self._pos + offset : self._pos + offset + first] = chunk[:, :first]
            if first < n:
                self._data[:, offset : offset + n - first] = chunk[:, first:]
        self._pos = end % self.capacity
        self.count = min(self.capacity, self.count + n)

    def latest(self, n: int) -> np.ndarray:
        """The newest ``n`` samples, oldest first, as a view ``[n_chans, n]``."""
        if n > self.count:
            raise ValueError(f"the buffer holds {self.count} samples, fewer than the {n} asked for")
        end = self._pos + self.capacity
        return self._data[:, end - n : end]
