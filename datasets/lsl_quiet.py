"""Quiet liblsl for every command that opens a stream (``bmi serve``, ``amp``, ``play``, ``calibrate``, the demo):
its INFO lines and reconnect messages say nothing these commands do not report themselves. liblsl reads its
settings from the file named by ``LSLAPICFG`` when it loads, so this must run before mne_lsl or pylsl is
imported; a user's own ``LSLAPICFG`` is kept.

It lives in the lowest layer so that acquisition and the rig's runtime share one file (the runtime may import it).
"""

from __future__ import annotations

import os
from pathlib import Path

QUIET_CONFIG = Path(__file__).with_name("lsl_quiet.cfg")


def quiet_liblsl(verbose: bool = False) -> None:
    if not verbose:
        os.environ.setdefault("LSLAPICFG", str(QUIET_CONFIG))
