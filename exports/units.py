"""Physical units of channels: what training data were in (MNE reads SI units) and how to read a stream's.

Light on purpose (standard library only): shared by the exporter, which writes each channel's unit into
the model's metadata, and the rig, which reads the units a stream declares (LSL channel descriptions,
the TCP hello, or ``--units``) and scales them to the model's or refuses them.
"""

from __future__ import annotations

import re

# MNE keeps every recording in SI units; the unit of each channel type
SI_UNIT_BY_TYPE = {
    "eeg": "V", "ecog": "V", "seeg": "V", "dbs": "V", "eog": "V", "emg": "V", "ecg": "V", "bio": "V",
    "mag": "T", "ref_meg": "T", "grad": "T/m",
}
_PREFIXES = {"": 1.0, "k": 1e3, "m": 1e-3, "u": 1e-6, "µ": 1e-6, "μ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}
_WORD_PREFIXES = {"": "", "kilo": "k", "milli": "m", "micro": "u", "nano": "n", "pico": "p", "femto": "f"}
_WORD_UNITS = {"volt": "V", "volts": "V", "tesla": "T", "teslas": "T"}
_LENGTH = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}


class UnitError(ValueError):
    """A unit that cannot be read, or that measures another quantity than the model's input."""


def si_unit(ch_type: str) -> str:
    """The SI unit MNE stores a channel type in ("" for types without a physical unit)."""
    return SI_UNIT_BY_TYPE.get(ch_type, "")


def _base(text: str) -> tuple[str, float]:
    """'uV' -> ('V', 1e-6); 'microvolts' -> ('V', 1e-6); 'fT' -> ('T', 1e-15)."""
    low = text.strip()
    for word_prefix, prefix in _WORD_PREFIXES.items():
        for word, unit in _WORD_UNITS.items():
            if low.lower() == word_prefix + word:
                return unit, _PREFIXES[prefix]
    match = re.fullmatch(r"([kmuµμnpf]?)(V|T)", low)
    if match is None:
        raise UnitError(f"unknown unit {text!r}")
    return match.group(2), _PREFIXES[match.group(1)]


def to_si(text: str | None, si: str) -> float:
    """Factor that turns values in unit ``text`` into the SI unit ``si`` (``"V"``, ``"T"``, ``"T/m"``).

    Accepts symbols (``V``, ``mV``, ``uV``, ``µV``, ``nV``, ``T``, ``fT``, ``T/m``, ``fT/cm``), words
    (``volts``, ``microvolts``, ``femtotesla``) and mne-lsl's power-of-ten codes relative to the SI unit
    (``"0"`` = SI, ``"-6"`` = micro).
    """
    if text is None or not str(text).strip():
        raise UnitError("no unit declared")
    text = str(text).strip()
    if re.fullmatch(r"[+-]?\d+", text):
        return 10.0 ** int(text)
    numerator, _, denominator = text.partition("/")
    unit, factor = _base(numerator)
    if denominator:
        if denominator.strip() not in _LENGTH:
            raise UnitError(f"unknown length unit in {text!r}")
        unit, factor = unit + "/m", factor / _LENGTH[denominator.strip()]
    if unit != si:
        raise UnitError(f"{text!r} measures {unit}, not {si}")
    return factor


__all__ = ["SI_UNIT_BY_TYPE", "UnitError", "si_unit", "to_si"]
