"""`keep_freed_memory`: a large buffer freed and allocated again is reused instead of page-faulted back in."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# allocate, free and allocate again a 64 MiB buffer (above glibc's largest adaptive mmap threshold, 32 MiB);
# print the page faults of the second allocation
PROBE = """
import resource, sys
import numpy as np
if sys.argv[1] == "tuned":
    from pipeline.allocator import keep_freed_memory
    assert keep_freed_memory()
faults = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(2):
    before = faults()
    buffer = np.ones(16 << 20, dtype=np.float32)
    del buffer
print(faults() - before)
"""


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt settings are glibc's")
def test_freed_buffers_are_reused_not_faulted_in_again():
    faults = {}
    for mode in ("default", "tuned"):
        out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        faults[mode] = int(out.stdout)
    assert faults["default"] >= 30  # 64 MiB mapped afresh: 16384 pages (32 with transparent huge pages)
    assert faults["tuned"] < faults["default"] / 4, faults


def test_is_idempotent_and_harmless_off_glibc():
    from pipeline.allocator import keep_freed_memory

    first = keep_freed_memory()
    assert keep_freed_memory() == first
    assert first == (platform.libc_ver()[0] == "glibc" and sys.platform.startswith("linux"))
