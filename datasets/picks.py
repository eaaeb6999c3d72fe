"""Channel selection: by type, by name, and by region of interest from the sensors' positions.

The reference studies trained decoders on one hemisphere's sensorimotor cortex or the other, so the
ROIs are left / right / both sensorimotor regions, found geometrically (head coordinates: +x right,
+y nose, +z up) rather than from a name list, which makes them work for any EEG montage and for MEG.
"""

from __future__ import annotations

import numpy as np
import mne

from .config import PicksConfig

# Sensorimotor strip: around the central sulcus (y near the head centre), above the ears (z high enough),
# away from the midline for one hemisphere. Fractions of the head radius.
_Y_BAND = (-0.45, 0.30)
_Z_MIN = 0.20
_X_MIN = 0.10
DATA_TYPES = {"eeg", "mag", "grad", "ecog", "seeg", "dbs", "eog", "emg", "ecg", "misc"}


def _positions(raw: mne.io.BaseRaw, picks: list[int]) -> np.ndarray:
    pos = np.array([raw.info["chs"][i]["loc"][:3] for i in picks], dtype=float)
    if not np.isfinite(pos).all() or np.allclose(pos, 0):
        raise ValueError(
            "'picks.roi' needs sensor positions, but the channels have none: set 'montage' "
            "(e.g. colin27_1005, with 'rename: eegbci' for PhysioNet files) or use a file with digitised positions."
        )
    return pos


def roi_mask(pos: np.ndarray, roi: str) -> np.ndarray:
    """Which positions (``[n, 3]`` head coordinates) lie in the named ROI."""
    centre = pos.mean(axis=0)
    rel = pos - centre
    radius = np.median(np.linalg.norm(rel, axis=1))
    x, y, z = (rel / radius).T
    strip = (y > _Y_BAND[0]) & (y < _Y_BAND[1]) & (z > _Z_MIN)
    if roi == "left_sensorimotor":
        return strip & (x < -_X_MIN)
    if roi == "right_sensorimotor":
        return strip & (x > _X_MIN)
    return strip


def pick_channels(raw: mne.io.BaseRaw, cfg: PicksConfig) -> list[str]:
    """Names of the channels the config selects, in the recording's order."""
    names = raw.ch_names
    ch_types = raw.get_channel_types()
    if cfg.types:
        unknown = sorted(set(cfg.types) - DATA_TYPES - {"meg"})
        if unknown:
            raise ValueError(
                f"'picks.types' has unknown channel types {unknown}; allowed: meg, {', '.join(sorted(DATA_TYPES))}."
            )
        wanted = set(cfg.types) | ({"mag", "grad"} if "meg" in cfg.types else set())
    else:
        wanted = {"mag", "grad", "eeg", "ecog", "seeg", "dbs"}
    idx = [i for i, t in enumerate(ch_types) if t in wanted]
    idx = [i for i in idx if names[i] not in cfg.exclude and names[i] not in raw.info["bads"]]
    if cfg.names:
        missing = [n for n in cfg.names if n not in names]
        if missing:
            raise ValueError(f"'picks.names' has channels not in the recording: {missing}. It has: {names}.")
        wanted = set(cfg.names)
        idx = [i for i in idx if names[i] in wanted]
    if cfg.roi:
        mask = roi_mask(_positions(raw, idx), cfg.roi)
        idx = [i for i, keep in zip(idx, mask) if keep]
    if not idx:
        raise ValueError(f"The channel picks {cfg} select no channels from {len(names)} in the recording.")
    return [names[i] for i in idx]
