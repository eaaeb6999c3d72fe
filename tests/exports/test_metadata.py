"""The metadata schema, typed once: every malformed document or data description is refused with an error that
names the key and what is allowed (never a KeyError or TypeError later, on the rig)."""

from __future__ import annotations

import copy
import json

import pytest

from datasets.data_info import DataInfo, DataInfoError
from exports.metadata import MetadataError, parse_metadata, validate_metadata


@pytest.fixture
def meta(exported):
    return copy.deepcopy(exported.metadata)


def test_an_exported_document_parses_into_the_typed_schema(meta, trained_run):
    doc = parse_metadata(meta)
    assert doc.window.n_times == meta["window"]["n_times"] and doc.channels.names == meta["channels"]["names"]
    assert doc.normalization.kind == "standardize" and len(doc.normalization.mean) == len(doc.channels.names)
    info = DataInfo.from_dict(json.loads((trained_run / "data_info.json").read_text()))
    assert info.to_dict() == json.loads((trained_run / "data_info.json").read_text())  # the JSON form round-trips
    assert (doc.sfreq, doc.window.tmin, doc.window.tmax, doc.classes) == (info.sfreq, info.tmin, info.tmax, info.classes)
    meta["channels"]["future_key"] = 1  # a newer exporter's addition is ignored, not refused
    assert validate_metadata(meta) is meta


@pytest.mark.parametrize("path, value, error", [
    (("window", "n_times"), "250", r"'metadata.window.n_times' must be an integer, got '250'|metadata.window.n_times must be an integer"),
    (("channels", "units"), None, r"metadata.channels.units must be a list|must list one value per channel"),
    (("channels",), {"names": ["C3"]}, r"metadata.channels: .*missing .*'types'"),
    (("normalization", "kind"), "zscore", r"metadata.normalization.kind \('zscore'\) must be one of 'standardize', 'none'"),
    (("normalization", "mean"), None, r"'standardize' needs 'mean' and 'std'"),
    (("sfreq",), "fast", r"metadata.sfreq must be a number, got 'fast'"),
    (("preprocessing",), {"sos": []}, r"metadata 'preprocessing' lacks \['sfreq_in', 'ch_names', 'decim', 'settle_seconds'\]"),
    (("normalization", "rms"), [1.0], r"'normalization.rms' must list one value per channel"),
])
def test_a_malformed_document_is_refused_naming_the_key(meta, path, value, error):
    node = meta
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    with pytest.raises(MetadataError, match=error):
        validate_metadata(meta, "decoder.onnx")


def test_a_malformed_data_description_is_refused_naming_the_key(trained_run):
    info = json.loads((trained_run / "data_info.json").read_text())
    for key, value, error in (("n_times", "many", "must be an integer"), ("ch_types", ["eeg"], "one type per channel"),
                              ("tmax", -1.0, r"'tmax' \(-1.0\) must be greater than 'tmin'")):
        bad = {**info, key: value}
        with pytest.raises(DataInfoError, match=error):
            DataInfo.from_dict(bad, "data_info.json")
    with pytest.raises(DataInfoError, match=r"data_info.json: .*missing .*'classes'"):
        DataInfo.from_dict({k: v for k, v in info.items() if k != "classes"}, "data_info.json")
