"""Quiet liblsl: its INFO lines (config loaded, version) and reconnect messages say nothing the server does not
report itself. liblsl reads its settings from the file named by ``LSLAPICFG`` when it loads, so this must run
before pylsl or mne_lsl is imported; a user's own ``LSLAPICFG`` is kept."""

from __future__ import annotations

import os
from pathlib import Path

QUIET_CONFIG = Path(__file__).with_name("lsl_quiet.cfg")


def quiet_liblsl(verbose: bool = False) -> None:
    if not verbose:
        os.environ.setdefault("LSLAPICFG", str(QUIET_CONFIG))
