"""The recording the runtime tests stream."""

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture(scope="session")
def recording_array(recordings):
    """The first synthetic recording as float32 [n_chans, n_samples] with its channel names and rate."""
    import mne

    raw = mne.io.read_raw(recordings[0], preload=True, verbose="error")
    return raw.get_data().astype(np.float32), raw.ch_names, raw.info["sfreq"], Path(recordings[0])
