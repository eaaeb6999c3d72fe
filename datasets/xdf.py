"""LSL recordings (XDF, as LabRecorder writes them) read into an :class:`mne.io.RawArray` with cue annotations.

An XDF file holds several streams, each with its own clock: an amplifier, a marker stream, perhaps a glove. pyxdf
reads them with its clock synchronisation (every stream's time stamps put on the recording computer's clock
through the clock offsets LabRecorder measured) and its dejitter (a regular stream's stamps fitted to a straight
line, so network jitter does not move samples). One regularly sampled stream becomes the signal, with the
channel names, types and units of its XML header (samples put in SI units, as MNE keeps them); one marker stream
becomes annotations at ``marker time - first signal sample time`` on the signal's clock.

Which streams: ``data.xdf.stream`` / ``data.xdf.markers`` name a stream by its name or its type; by default the
one EEG / MEG / ECoG / sEEG stream with a nominal rate, and the one irregular marker stream. Anything ambiguous is
an error that lists the file's streams.
"""

from __future__ import annotations

import warnings
from decimal import Decimal, InvalidOperation
from pathlib import Path

import numpy as np

from .config import XdfConfig

#: stream types taken as the signal when no stream is named (compared in lower case)
SIGNAL_TYPES = ("eeg", "meg", "ecog", "seeg")
#: unit names (lower case) -> power of ten from the unit to SI, beside mne-lsl's numeric codes ("-6")
UNIT_POWERS = {"v": 0, "volt": 0, "volts": 0, "mv": -3, "millivolt": -3, "millivolts": -3,
               "uv": -6, "µv": -6, "μv": -6, "microvolt": -6, "microvolts": -6, "nv": -9, "nanovolt": -9,
               "nanovolts": -9, "t": 0, "tesla": 0, "ft": -15, "femtotesla": -15, "ft/cm": -13, "t/m": 0,
               "ft/m": -15}
#: LSL channel types MNE spells otherwise
TYPE_ALIASES = {"marker": "stim", "markers": "stim", "trigger": "stim", "meg": "mag"}
_LOC_NAMES = ("R0x", "R0y", "R0z", "Exx", "Exy", "Exz", "Eyx", "Eyy", "Eyz", "Ezx", "Ezy", "Ezz")  # mne-lsl's


def _text(node: dict | None, key: str, default: str = "") -> str:
    """A leaf of pyxdf's parsed XML (every value a one-item list), stripped; ``default`` when absent."""
    if not isinstance(node, dict):
        return default
    value = node.get(key)
    while isinstance(value, list):
        value = value[0] if value else None
    return default if value is None else str(value).strip()


def _rate(stream: dict) -> float:
    try:
        return float(_text(stream["info"], "nominal_srate", "0"))
    except ValueError:
        return 0.0


def _is_signal(stream: dict) -> bool:
    return _rate(stream) > 0 and _text(stream["info"], "channel_format") != "string"


def _is_markers(stream: dict) -> bool:
    return _rate(stream) == 0


def describe(stream: dict) -> str:
    """One stream as the errors list it: name, type, channels, rate and format."""
    info = stream["info"]
    rate = _rate(stream)
    return (f"{_text(info, 'name')!r} (type {_text(info, 'type') or '-'}, {_text(info, 'channel_count', '?')} ch, "
            f"{f'{rate:g} Hz' if rate else 'irregular'}, {_text(info, 'channel_format')})")


def _listing(streams: list[dict]) -> str:
    return "; ".join(describe(s) for s in streams) or "none"


def _match(streams: list[dict], spec: str) -> list[dict]:
    """Streams called ``spec``; when none is, those of type ``spec`` (case-insensitive)."""
    named = [s for s in streams if _text(s["info"], "name") == spec]
    return named or [s for s in streams if _text(s["info"], "type").lower() == spec.lower()]


def choose_signal(streams: list[dict], spec: str | None, path: Path) -> dict:
    """The signal stream: the one named (or typed) ``spec``, else the one EEG/MEG/ECoG/sEEG stream with a rate."""
    if spec is not None:
        found = _match(streams, spec)
        what = f"'data.xdf.stream' ({spec!r})"
        if not found:
            raise ValueError(f"{what} names no stream of {path.name} (by name or type); it holds: {_listing(streams)}.")
        found_signal = [s for s in found if _is_signal(s)]
        if not found_signal:
            raise ValueError(f"{what} in {path.name} is {_listing(found)}: not a regularly sampled numeric stream.")
        found = found_signal
    else:
        found = [s for s in streams if _is_signal(s) and _text(s["info"], "type").lower() in SIGNAL_TYPES]
        what = f"{path.name}: no 'data.xdf.stream' given and"
        if not found:
            raise ValueError(f"{what} no stream of type {'/'.join(t.upper() for t in SIGNAL_TYPES)} with a nominal "
                             f"rate; name the signal stream in 'data.xdf.stream'. Streams: {_listing(streams)}.")
    if len(found) > 1:
        raise ValueError(f"{what} {len(found)} signal streams fit ({_listing(found)}); name one in 'data.xdf.stream' "
                         f"(all streams: {_listing(streams)}).")
    return found[0]


def choose_markers(streams: list[dict], spec: str | None, path: Path) -> dict | None:
    """The marker stream: the one named (or typed) ``spec``, else the one irregular stream; None when there is none."""
    if spec is not None:
        found = [s for s in _match(streams, spec) if _is_markers(s)]
        if not found:
            raise ValueError(f"'data.xdf.markers' ({spec!r}) names no irregular (marker) stream of {path.name}; it "
                             f"holds: {_listing(streams)}.")
    else:
        found = [s for s in streams if _is_markers(s)]
        if not found:
            return None
    if len(found) > 1:
        raise ValueError(f"{path.name}: {len(found)} marker streams fit ({_listing(found)}); name one in "
                         "'data.xdf.markers'.")
    return found[0]


def _unit_power(unit: str) -> int:
    """Power of ten from a stream's unit to SI: a unit name or mne-lsl's exponent code; 0 when unknown."""
    unit = unit.strip().lower()
    if unit in UNIT_POWERS:
        return UNIT_POWERS[unit]
    try:
        value = Decimal(unit)
    except InvalidOperation:
        return 0
    return int(value) if value == int(value) else 0


def channel_info(stream: dict):
    """The :class:`mne.Info` of a signal stream from its XML header, and per channel the factor to SI units.

    Names, types, units and positions come from ``desc/channels/channel`` where present; a channel without a
    label is ``ch<N>``, without a known type takes the stream's type (else ``misc``)."""
    import mne

    info = stream["info"]
    n = int(_text(info, "channel_count", "0"))
    desc = info.get("desc")
    desc = desc[0] if isinstance(desc, list) and desc else desc
    channels_node = desc.get("channels") if isinstance(desc, dict) else None
    channels_node = channels_node[0] if isinstance(channels_node, list) and channels_node else channels_node
    channels = channels_node.get("channel", []) if isinstance(channels_node, dict) else []
    if len(channels) != n:
        channels = [{}] * n  # a header without (or with a wrong) channel list: numbered channels
    known = set(mne.io.get_channel_type_constants())
    stype = _text(info, "type").lower()
    stype = TYPE_ALIASES.get(stype, stype)
    stype = stype if stype in known else "misc"
    names, types, factors, locs = [], [], [], []
    for k, ch in enumerate(channels):
        names.append(_text(ch, "label") or f"ch{k + 1}")
        kind = _text(ch, "type").lower()
        kind = TYPE_ALIASES.get(kind, kind)
        types.append(kind if kind in known else stype)
        factors.append(10.0 ** _unit_power(_text(ch, "unit")))
        loc = ch.get("loc") if isinstance(ch, dict) else None
        loc = loc[0] if isinstance(loc, list) and loc else loc
        locs.append([float(_text(loc, key, "nan") or "nan") for key in _LOC_NAMES] if isinstance(loc, dict) else None)
    if len(set(names)) != len(names):
        dupes = sorted({c for c in names if names.count(c) > 1})
        raise ValueError(f"Stream {_text(info, 'name')!r} names channels more than once: {dupes}.")
    mne_info = mne.create_info(names, _rate(stream), types)
    with mne_info._unlock():
        for ch, loc in zip(mne_info["chs"], locs):
            if loc is not None:
                ch["loc"] = np.array(loc)
    return mne_info, np.array(factors)


def _labels(series) -> list[str]:
    """Marker values as strings (first channel; numeric codes as integers where they are)."""
    out = []
    for sample in series:
        value = sample[0] if isinstance(sample, (list, tuple, np.ndarray)) else sample
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        out.append(str(value))
    return out


def read_xdf(path: str | Path, cfg: XdfConfig | None = None):
    """Read an XDF file's signal stream into an :class:`mne.io.RawArray`, its marker stream as annotations.

    Parameters
    ----------
    path : str | Path
        The ``.xdf`` (or gzip-compressed ``.xdfz``) file.
    cfg : XdfConfig | None
        Which streams (``stream``, ``markers``: a name or a type; None chooses as described in the module) and the
        duration of each marker's annotation (``durations``, seconds by label; 0 otherwise).

    Returns
    -------
    raw : mne.io.RawArray
        The signal in SI units, its first sample at time 0; markers as annotations on that clock.

    Raises
    ------
    FileNotFoundError
        When ``path`` does not exist.
    ValueError
        When the file cannot be read, or no (or more than one) stream fits the choice; the message lists the
        file's streams.
    """
    import mne
    import pyxdf

    path = Path(path)
    cfg = cfg or XdfConfig()
    if not path.is_file():
        raise FileNotFoundError(f"XDF file not found: {path}")
    try:  # clock offsets applied, regular streams dejittered (pyxdf's defaults, stated so they stay)
        streams, _ = pyxdf.load_xdf(str(path), synchronize_clocks=True, dejitter_timestamps=True, verbose=False)
    except Exception as err:  # pyxdf raises many types for a broken file; name the file
        raise ValueError(f"Could not read XDF file {path}: {type(err).__name__}: {err}") from None
    signal = choose_signal(streams, cfg.stream, path)
    markers = choose_markers(streams, cfg.markers, path)
    stamps = np.asarray(signal["time_stamps"], dtype=float)
    if stamps.size == 0:
        raise ValueError(f"{path.name}: the signal stream {describe(signal)} holds no samples.")
    info, to_si = channel_info(signal)
    data = np.asarray(signal["time_series"], dtype=np.float64).T * to_si[:, None]
    raw = mne.io.RawArray(data, info, verbose="error")
    if markers is not None and len(markers["time_stamps"]):
        onsets = np.asarray(markers["time_stamps"], dtype=float) - stamps[0]
        labels = _labels(markers["time_series"])
        inside = (onsets >= -0.5 / raw.info["sfreq"]) & (onsets < raw.times[-1] + 1 / raw.info["sfreq"])
        if not inside.all():
            warnings.warn(f"{path.name}: {int((~inside).sum())} marker(s) of {describe(markers)} lie outside the "
                          f"signal's {raw.times[-1]:.1f} s and are left out.")
        onsets, labels = np.clip(onsets[inside], 0.0, None), [x for x, keep in zip(labels, inside) if keep]
        durations = np.minimum([cfg.durations.get(x, 0.0) for x in labels], raw.times[-1] - onsets)
        raw.set_annotations(mne.Annotations(onsets, np.clip(durations, 0.0, None), labels))
    return raw
