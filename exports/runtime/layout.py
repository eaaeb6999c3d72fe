"""How a stream maps onto the model's input: channel renaming and order, rate, and units.

A stream is described by :class:`StreamDescription` (what LSL's stream info, the TCP hello or a replay
file declare). :func:`plan_layout` checks it against the model and returns the channel order and the
per-channel factor that turns stream units into the model's, or raises :class:`StreamMismatch` naming
every problem, so a stream that does not fit is refused before any decision.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from datasets.channel_names import rename_channels

from ..units import UnitError, to_si


class StreamMismatch(ValueError):
    """The stream cannot feed this model (channels, rate or units)."""


@dataclass
class StreamDescription:
    ch_names: list[str]
    sfreq: float
    units: list[str | None] | None = None  # as declared, per channel; None = not declared
    source: str = ""


@dataclass
class Layout:
    order: np.ndarray  # stream channel index of each model channel
    scale: np.ndarray  # float32 per model channel: stream units -> model units
    notes: list[str] = field(default_factory=list)  # what was assumed or converted, for the operator


def plan_layout(
    desc: StreamDescription,
    meta: dict[str, Any],
    *,
    rename: str | Mapping[str, str] | None = None,
    units: str | None = None,
    on_unit_mismatch: str = "scale",
) -> Layout:
    """Match ``desc`` to the model ``meta``; ``units`` overrides the stream's declared units (all channels).

    ``on_unit_mismatch``: "scale" converts a stream in other units of the same quantity (microvolts for a
    model trained in volts), "refuse" refuses it. Another quantity (tesla for volts) is always refused.
    """
    spec = meta["preprocessing"]
    model_names, model_units = list(spec["ch_names"]), list(meta["channels"]["units"])
    try:
        names = rename_channels(desc.ch_names, rename)
    except ValueError as err:
        raise StreamMismatch(f"The stream's channel names cannot be renamed: {err}") from None
    problems = []
    missing = [c for c in model_names if c not in names]
    if missing:
        problems.append(f"missing channels {missing}")
    if abs(float(desc.sfreq) - float(spec["sfreq_in"])) > 1e-6:
        problems.append(f"sampling rate {desc.sfreq:g} Hz, the model expects {spec['sfreq_in']:g} Hz")
    if problems:
        extra = [c for c in names if c not in model_names]
        hint = "" if rename is not None or not missing else " (different names? --rename eegbci or a mapping file)"
        raise StreamMismatch(f"The stream does not match the model: {'; '.join(problems)} (stream has "
                             f"{len(names)} channels; {len(extra)} not used by the model: {extra[:10]}){hint}.")
    order = np.array([names.index(c) for c in model_names])
    declared = [units] * len(model_names) if units is not None else (
        [desc.units[i] for i in order] if desc.units is not None else [None] * len(model_names))
    scale, notes, wrong = np.ones(len(model_names), dtype=np.float64), [], []
    if all(u is None or not str(u).strip() for u in declared):
        notes.append(f"the stream declares no units: assuming the model's ({', '.join(sorted(set(model_units)))}); "
                     "the amplitude check catches a scale error")
        return Layout(order, scale.astype(np.float32), notes)
    for i, (name, unit, si) in enumerate(zip(model_names, declared, model_units)):
        try:
            scale[i] = to_si(unit, si) if si else 1.0
        except UnitError as err:
            wrong.append(f"{name}: {err}")
    if wrong:
        raise StreamMismatch(f"Stream units do not fit the model's ({', '.join(sorted(set(model_units)))}): "
                             f"{'; '.join(wrong[:5])}{' ...' if len(wrong) > 5 else ''}.")
    converted = sorted({(str(u), s) for u, s in zip(declared, scale) if s != 1.0})
    if converted:
        stream_units = ", ".join(u for u, _ in converted)
        if on_unit_mismatch == "refuse":
            raise StreamMismatch(f"The stream is in {stream_units}, the model in {', '.join(sorted(set(model_units)))}: "
                                 "refused (--on-unit-mismatch refuse; 'scale' converts).")
        notes.append("converting stream units to the model's: " + ", ".join(f"{u} x{s:g}" for u, s in converted))
    return Layout(order, scale.astype(np.float32), notes)


__all__ = ["StreamDescription", "StreamMismatch", "Layout", "plan_layout"]
