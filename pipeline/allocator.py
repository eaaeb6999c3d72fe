"""Keep freed tensor memory in the process instead of handing it back to the OS after every training step.

glibc serves allocations above its mmap threshold (128 KiB, raised adaptively up to 32 MiB) with fresh
``mmap`` pages and unmaps them on free, and trims the heap top as soon as 128 KiB are free. A CPU training
step allocates and frees the same large activation buffers every batch, so each step page-faults all of them
in again: on this project's 2-core machine, 64-channel EEGNet training spent half its time in the kernel
(2.7 M page faults, `scripts/bench_train.py`). Raising the three thresholds keeps those pages mapped and
reused. PyTorch's CPU tuning guide recommends jemalloc or tcmalloc for the same reason; this needs no
``LD_PRELOAD``. Elsewhere than glibc (macOS, musl, Windows) it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
SETTINGS = {M_MMAP_THRESHOLD: 1 << 30, M_TRIM_THRESHOLD: 1 << 30, M_TOP_PAD: 256 << 20}

_tuned = False


def keep_freed_memory() -> bool:
    """Raise glibc's mmap, trim and top-pad thresholds for this process; True when glibc accepted them."""
    global _tuned
    if _tuned:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    _tuned = all(mallopt(param, value) == 1 for param, value in SETTINGS.items())
    return _tuned
