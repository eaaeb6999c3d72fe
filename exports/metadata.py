"""The metadata document embedded in every exported ONNX model (``metadata_props``).

One JSON string under the key :data:`METADATA_KEY`, with a schema version, holding everything the
runtime needs and nothing it must guess. Typed once (:class:`DecoderMetadata`, its data sections from
:mod:`datasets.data_info`) and checked when a model is written and when it is read, with errors that name the
key. Light: the standard library and the pure typed-config helpers, shared by the exporter (training side) and
the runtime (rig side).

Schema (version 2)::

    {
      "schema": "bmi-decoder", "schema_version": 2,
      "created": ISO-8601 UTC time,
      "model": {"name": str, "hyperparameters": {...}, "n_params": int},
      "io": {"input": "signals", "input_shape": ["batch", n_chans, n_times],
             "outputs": ["logits", "probabilities"]},
      "classes": [class names in output order],
      "channels": {"names": [...], "types": [...],           # decoder input order
                   "units": [...],                             # SI unit of each channel's data ("V", "T", "T/m")
                   "rename": null | "eegbci" | {old: new},     # renaming applied to the recordings' names
                   "positions": null | [[x, y, z], ...]},      # sensor positions (m), for the console's layout
      "sfreq": float,                                         # rate the model sees (after decimation)
      "window": {"n_times": int, "seconds": float, "tmin": float, "tmax": float},
      "preprocessing": datasets.dsp.PreprocessingSpec.to_dict(),   # filters as SOS, reference, decim,
                                                                   # settle_seconds
      "normalization": {"kind": "standardize"|"none", "mean": [...], "std": [...],
                        "alignment": {subject: matrix} | null,
                        "rms": [...]},                    # per-channel RMS of the filtered training data
      "run": {"run_id": str, "metrics": {"val": {...}, "test": {...}}, "data_hash": str,
              "code_version": str, "config": {resolved training config}},
      "gate": null | {"output": "gate", "rest_class": str,   # a gated decoder (models.gated): the output "gate"
                      "threshold": float, "hysteresis": float, "dwell_s": float, "type_threshold": float}
      "source": {"kind": "recordings" | "cut_trials",         # optional (absent: recordings); see
                 "filter_start": "recording_start" | "trial_start" | "preprocessed",   # datasets.data_info
                 "trial_tmin", "trial_tmax", "settle_seconds", "baseline"}             # .DataSource
    }
"""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import dataclass, field
from typing import Any

from datasets.data_info import DataSource, Normalization
from datasets.typed import ConfigError, from_mapping

METADATA_KEY = "bmi_decoder"
SCHEMA = "bmi-decoder"
SCHEMA_VERSION = 2  # 2: channel units, renaming, training amplitude, filter settling time


class MetadataError(ValueError):
    """The model's metadata is missing, from another tool, from an unsupported schema version, or malformed."""


@dataclass(frozen=True)
class ModelInfo:
    name: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    n_params: int = 0


@dataclass(frozen=True)
class IOInfo:
    input_shape: list[Any]  # ["batch", n_chans, n_times]
    input: str = "signals"
    outputs: list[str] = field(default_factory=lambda: ["logits", "probabilities"])
    dtype: str = "float32"


@dataclass(frozen=True)
class ChannelsInfo:
    names: list[str]
    types: list[str]
    units: list[str]
    rename: Any = None  # null, "eegbci" or {old: new}
    positions: list[list[float]] | None = None


@dataclass(frozen=True)
class WindowInfo:
    n_times: int
    seconds: float
    tmin: float  # the decoder's window relative to the cue in training
    tmax: float


@dataclass(frozen=True)
class GateInfo:
    """A gated decoder's gate: its output, the rest class it stands for, and the server's thresholds."""

    rest_class: str
    threshold: float
    hysteresis: float
    dwell_s: float
    type_threshold: float = 0.0
    output: str = "gate"


@dataclass(frozen=True)
class DecoderMetadata:
    """The typed form of the document: what the runtime needs to know, checked once when a model is read."""

    schema: str
    schema_version: int
    created: str
    model: ModelInfo
    io: IOInfo
    classes: list[str]
    channels: ChannelsInfo
    sfreq: float
    window: WindowInfo
    preprocessing: dict[str, Any]
    normalization: Normalization
    run: dict[str, Any]
    gate: GateInfo | None = None  # optional: only gated decoders have it
    source: DataSource = field(default_factory=DataSource)  # optional: recordings unless it says cut trials


#: what the preprocessing section must hold (``datasets.dsp.PreprocessingSpec.to_dict``)
PREPROCESSING_KEYS = ("sfreq_in", "ch_names", "sos", "decim", "settle_seconds")


def _known(cls, data: dict[str, Any]) -> dict[str, Any]:
    """``data`` restricted to ``cls``'s fields, recursively (a newer exporter may add keys; they are ignored)."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        if f.name in data:
            value, tp = data[f.name], hints[f.name]
            out[f.name] = _known(tp, value) if dataclasses.is_dataclass(tp) and isinstance(value, dict) else value
    return out


def parse_metadata(meta: Any, source: str = "model") -> DecoderMetadata:
    """The document as :class:`DecoderMetadata`: schema and version checked, every section's types and the
    agreement of channels, shapes and per-channel values, with errors naming the key and what is allowed."""
    if not isinstance(meta, dict):
        raise MetadataError(f"{source}: metadata must be a JSON object, got {type(meta).__name__}.")
    if meta.get("schema") != SCHEMA:
        raise MetadataError(f"{source}: metadata schema {meta.get('schema')!r} is not {SCHEMA!r}.")
    if meta.get("schema_version") != SCHEMA_VERSION:
        raise MetadataError(
            f"{source}: metadata schema_version {meta.get('schema_version')!r} is not supported "
            f"(this code reads version {SCHEMA_VERSION}); re-export the run with `bmi export RUN_DIR` "
            "(retrain it if it was trained by an older version)."
        )
    missing = [f.name for f in dataclasses.fields(DecoderMetadata)
               if f.name not in meta and f.default is dataclasses.MISSING]
    if missing:
        raise MetadataError(f"{source}: metadata lacks the keys {missing}.")
    try:
        doc = from_mapping(DecoderMetadata, _known(DecoderMetadata, meta), "metadata")
    except ConfigError as err:
        raise MetadataError(f"{source}: {err}") from None
    lacking = [k for k in PREPROCESSING_KEYS if k not in doc.preprocessing]
    if lacking:
        raise MetadataError(f"{source}: metadata 'preprocessing' lacks {lacking}.")
    n_chans = len(doc.channels.names)
    per_channel = {"channels.types": doc.channels.types, "channels.units": doc.channels.units,
                   "normalization.rms": doc.normalization.rms}
    for name, values in per_channel.items():
        if values is None or len(values) != n_chans:
            raise MetadataError(f"{source}: metadata '{name}' must list one value per channel ({n_chans}).")
    if (doc.gate is not None) != ("gate" in doc.io.outputs):
        raise MetadataError(f"{source}: metadata 'gate' and the output 'gate' in 'io.outputs' go together "
                            f"(gate: {'set' if doc.gate is not None else 'null'}, outputs: {doc.io.outputs}).")
    if doc.gate is not None:
        if doc.gate.rest_class not in doc.classes:
            raise MetadataError(f"{source}: metadata 'gate.rest_class' ({doc.gate.rest_class!r}) is not one of the "
                                f"classes {doc.classes}.")
        for key in ("threshold", "hysteresis", "type_threshold"):
            if not 0 <= getattr(doc.gate, key) < 1:
                raise MetadataError(f"{source}: metadata 'gate.{key}' ({getattr(doc.gate, key)}) must be in [0, 1).")
        if doc.gate.dwell_s < 0:
            raise MetadataError(f"{source}: metadata 'gate.dwell_s' ({doc.gate.dwell_s}) must be >= 0.")
    shape = doc.io.input_shape
    if len(shape) != 3 or shape[1] != n_chans or shape[2] != doc.window.n_times:
        raise MetadataError(
            f"{source}: input shape {shape} disagrees with {n_chans} channels x {doc.window.n_times} samples."
        )
    return doc


def validate_metadata(meta: Any, source: str = "model") -> dict[str, Any]:
    """Check the document (:func:`parse_metadata`); return it as the mapping it is."""
    parse_metadata(meta, source)
    return meta


def parse_metadata_props(props: dict[str, str], source: str = "model") -> dict[str, Any]:
    """Read our document out of an ONNX model's ``metadata_props`` (a str -> str mapping)."""
    if METADATA_KEY not in props:
        raise MetadataError(
            f"{source} has no {METADATA_KEY!r} metadata: it was not exported by `bmi export` "
            f"(metadata keys found: {sorted(props) or 'none'})."
        )
    try:
        meta = json.loads(props[METADATA_KEY])
    except json.JSONDecodeError as err:
        raise MetadataError(f"{source}: the {METADATA_KEY!r} metadata is not valid JSON ({err}).") from None
    return validate_metadata(meta, source)
