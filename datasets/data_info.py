"""What a decoder needs to know about its input, in one typed description.

Built once by the data module (:meth:`datasets.datamodule.EpochsDataModule.data_info`), written into every run
(``data_info.json``), and carried from there into the exported model's metadata (``exports.metadata``: its
``classes``, ``channels``, ``sfreq``, ``window``, ``preprocessing`` and ``normalization`` sections), which the
real-time runtime reads. :meth:`DataInfo.from_dict` refuses a malformed description with an error that names the
key, the value and what is allowed. Pure: standard library and :mod:`datasets.typed` only.

Windows: ``tmin`` and ``tmax`` here are the decoder's window relative to the cue (the window ending at ``tmax``
with cropped training), not the config's epoch ``tmin`` when the two differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

from .typed import ConfigError, from_mapping, to_mapping


class DataInfoError(ValueError):
    """A run's data description (or a model's copy of it) is malformed."""


@dataclass(frozen=True)
class Normalization:
    """How windows are normalised after preprocessing (fitted on the training split only).

    ``kind``: ``standardize`` (per-channel ``mean`` and ``std``) or ``none``; ``alignment``: Euclidean-alignment
    matrices per subject (or null); ``rms``: per-channel RMS of the filtered training data, in recording units
    (the runtime's amplitude check)."""

    kind: Literal["standardize", "none"]
    alignment: dict[str, list[list[float]]] | None = None
    rms: list[float] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self) -> None:
        if self.kind == "standardize" and (self.mean is None or self.std is None):
            raise ConfigError("'normalization' of kind 'standardize' needs 'mean' and 'std' per channel.")


@dataclass(frozen=True)
class DataSource:
    """Where the training windows came from, and where the causal filters started.

    ``kind``: ``recordings`` (continuous recordings, filtered from their first sample, as the server filters the
    live stream) or ``cut_trials`` (trials cut before the project saw them: MNE Epochs files, epoched EEGLAB).
    ``filter_start``: ``recording_start``; for cut trials ``trial_start`` (the filters ran from each trial's first
    sample, ``trial_tmin`` s from its event, and the window began after they settled, ``settle_seconds`` later)
    or ``preprocessed`` (the trials came filtered; the project applied no filters, so neither does the server:
    the live stream must arrive filtered the same way). ``baseline``: the file's baseline correction, if any."""

    kind: Literal["recordings", "cut_trials"] = "recordings"
    filter_start: Literal["recording_start", "trial_start", "preprocessed"] = "recording_start"
    trial_tmin: float | None = None
    trial_tmax: float | None = None
    settle_seconds: float | None = None
    baseline: list[float | None] | None = None

    def __post_init__(self) -> None:
        if (self.kind == "cut_trials") != (self.filter_start != "recording_start"):
            raise ConfigError(f"'source.filter_start' ({self.filter_start!r}) does not fit 'source.kind' "
                              f"({self.kind!r}): recordings start at 'recording_start', cut trials at "
                              "'trial_start' or 'preprocessed'.")


@dataclass(frozen=True)
class DataInfo:
    """The decoder's input: classes, channels, rate, window, preprocessing, normalisation; and where it came from."""

    classes: list[str]
    ch_names: list[str]
    ch_types: list[str]
    sfreq: float
    n_times: int
    tmin: float
    tmax: float
    preprocessing: dict[str, Any]
    normalization: Normalization
    ch_pos: list[list[float]] | None = None
    data_hash: str | None = None
    split_summary: dict[str, Any] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    source: DataSource = field(default_factory=DataSource)

    def __post_init__(self) -> None:
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes):
            raise ConfigError(f"'classes' ({self.classes}) must name at least 2 distinct classes.")
        if len(self.ch_types) != len(self.ch_names) or not self.ch_names:
            raise ConfigError(f"'ch_types' ({len(self.ch_types)}) must give one type per channel of 'ch_names' "
                              f"({len(self.ch_names)}).")
        if self.ch_pos is not None and len(self.ch_pos) != len(self.ch_names):
            raise ConfigError(f"'ch_pos' ({len(self.ch_pos)}) must give one position per channel ({len(self.ch_names)}).")
        if self.sfreq <= 0 or self.n_times < 1:
            raise ConfigError(f"'sfreq' ({self.sfreq}) must be positive and 'n_times' ({self.n_times}) at least 1.")
        if self.tmax <= self.tmin:
            raise ConfigError(f"'tmax' ({self.tmax}) must be greater than 'tmin' ({self.tmin}).")
        norm = self.normalization
        for key in ("rms", "mean", "std"):
            values = getattr(norm, key)
            if values is not None and len(values) != len(self.ch_names):
                raise ConfigError(f"'normalization.{key}' ({len(values)} values) must give one value per channel "
                                  f"({len(self.ch_names)}).")
        for key in ("sfreq_in", "ch_names", "sos", "decim"):
            if key not in self.preprocessing:
                raise ConfigError(f"'preprocessing' lacks {key!r} (it has {sorted(self.preprocessing)}).")

    @property
    def seconds(self) -> float:
        return self.n_times / self.sfreq

    @classmethod
    def from_dict(cls, data: Any, source: str = "data_info") -> "DataInfo":
        """Parse (and check) a description; unknown keys are kept out (written by a newer version), wrong or
        missing ones are a :class:`DataInfoError` naming them."""
        if not isinstance(data, dict):
            raise DataInfoError(f"{source}: must be a JSON object, got {type(data).__name__}.")
        known = {f.name for f in dataclasses.fields(cls)}
        try:
            return from_mapping(cls, {k: v for k, v in data.items() if k in known}, source)
        except ConfigError as err:
            raise DataInfoError(f"{source}: {err}") from None

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``data_info.json``), keys as written since the first version (``mean`` and ``std`` only
        with standardisation)."""
        out = to_mapping(self)
        out["normalization"] = {k: v for k, v in out["normalization"].items() if not (k in ("mean", "std") and v is None)}
        return out
