"""Quiet liblsl for the acquisition commands (``bmi amp``, ``bmi calibrate``): its INFO lines say nothing these
commands do not report themselves. liblsl reads its settings from the file named by ``LSLAPICFG`` when it loads,
so this must run before mne_lsl or pylsl is imported; a user's own ``LSLAPICFG`` is kept.

The same settings as :mod:`exports.runtime.lsl_config`, at the lowest layer so that ``datasets`` may use them.
"""

from __future__ import annotations

import os
from pathlib import Path

QUIET_CONFIG = Path(__file__).with_name("lsl_quiet.cfg")


def quiet_liblsl(verbose: bool = False) -> None:
    if not verbose:
        os.environ.setdefault("LSLAPICFG", str(QUIET_CONFIG))
