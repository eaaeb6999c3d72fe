"""MOABB's FakeDataset made learnable, for the tests that train or benchmark on MOABB data (no download): during a
left_hand trial C4's amplitude triples, during a right_hand trial C3's (a lateralised power change, as motor
imagery gives). Pure noise otherwise, as MOABB makes it. Importing this module makes ``LearnableFake`` a dataset
name ``data.moabb`` knows (``moabb.module: moabb_learnable``)."""

from __future__ import annotations

import mne
import numpy as np
from moabb.datasets.fake import FakeDataset


class LearnableFake(FakeDataset):
    """FakeDataset whose cues change the signal (see the module)."""

    def _generate_raw(self, n_events, duration):
        raw = super()._generate_raw(n_events, duration)
        data = raw.get_data()
        stim = data[raw.ch_names.index("stim")]
        length = int(self.interval[1] * self.sfreq)
        for onset in np.flatnonzero(stim):
            channel = raw.ch_names.index("C4" if stim[onset] == self.event_id["left_hand"] else "C3")
            data[channel, onset : onset + length] *= 3.0
        return mne.io.RawArray(data, raw.info, verbose="error")
