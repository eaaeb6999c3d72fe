"""The metadata document embedded in every exported ONNX model (``metadata_props``).

One JSON string under the key :data:`METADATA_KEY`, with a schema version, holding everything the
runtime needs and nothing it must guess. Light: standard library only, shared by the exporter
(training side) and the runtime (rig side).

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
              "code_version": str, "config": {resolved training config}}
    }
"""

from __future__ import annotations

import json
from typing import Any

METADATA_KEY = "bmi_decoder"
SCHEMA = "bmi-decoder"
SCHEMA_VERSION = 2  # 2: channel units, renaming, training amplitude, filter settling time
REQUIRED_KEYS = (
    "schema",
    "schema_version",
    "created",
    "model",
    "io",
    "classes",
    "channels",
    "sfreq",
    "window",
    "preprocessing",
    "normalization",
    "run",
)


NESTED_KEYS = {
    "io": ("input_shape",),
    "channels": ("names", "types", "units", "rename"),
    "window": ("n_times", "seconds", "tmin", "tmax"),
    "preprocessing": ("sfreq_in", "ch_names", "sos", "decim", "settle_seconds"),
    "normalization": ("kind", "alignment", "rms"),
}


class MetadataError(ValueError):
    """The model's metadata is missing, from another tool, or from an unsupported schema version."""


def validate_metadata(meta: Any, source: str = "model") -> dict[str, Any]:
    """Check the document's schema and required keys; return it."""
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
    missing = [k for k in REQUIRED_KEYS if k not in meta]
    if missing:
        raise MetadataError(f"{source}: metadata lacks the keys {missing}.")
    for section, keys in NESTED_KEYS.items():
        if not isinstance(meta[section], dict):
            raise MetadataError(f"{source}: metadata '{section}' must be an object, got {type(meta[section]).__name__}.")
        lacking = [k for k in keys if k not in meta[section]]
        if lacking:
            raise MetadataError(f"{source}: metadata '{section}' lacks {lacking}.")
    n_chans = len(meta["channels"]["names"])
    per_channel = {"channels.types": meta["channels"]["types"], "channels.units": meta["channels"]["units"],
                   "normalization.rms": meta["normalization"]["rms"]}
    for name, values in per_channel.items():
        if not isinstance(values, list) or len(values) != n_chans:
            raise MetadataError(f"{source}: metadata '{name}' must list one value per channel ({n_chans}).")
    shape = meta["io"]["input_shape"]
    if not isinstance(shape, list) or len(shape) != 3 or shape[1] != n_chans or shape[2] != meta["window"]["n_times"]:
        raise MetadataError(
            f"{source}: input shape {shape} disagrees with {n_chans} channels x {meta['window']['n_times']} samples."
        )
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
