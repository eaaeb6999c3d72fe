"""Summaries of the loop's timings, shared by the server's stats and the console's status."""

from __future__ import annotations

import numpy as np


def percentiles(values) -> dict[str, float | None]:
    """p50, p99 and max of ``values`` (None each when there are none)."""
    if not len(values):
        return {"p50": None, "p99": None, "max": None}
    arr = np.asarray(values, dtype=np.float64)
    return {"p50": float(np.percentile(arr, 50)), "p99": float(np.percentile(arr, 99)), "max": float(arr.max())}
