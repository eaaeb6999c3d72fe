"""The epochs cache: read + preprocess + epoch once, reuse until a file or the spec changes.

A cache entry is a folder ``<cache_dir>/<key>/`` holding ``X.npy`` (memory-mapped on load, so a large
dataset is never in RAM twice), ``y.npy``, ``trial.npy``, ``release.npy`` (which windows are ``data.release``'s),
``groups.npz`` and ``meta.json``. It is built in a temporary sibling folder and renamed into place in one step, so
a killed process never leaves an entry that a later run would trust. The key hashes the files' identity (path,
size, modification time and the bytes at both ends) and every config field that changes the epochs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from .atomic import publish_dir
from .config import DataConfig
from .typed import to_mapping

CACHE_VERSION = 5  # 3: filters start at steady state, windows before settling dropped; 4: event counts;
# 5: release.npy, and trial.npy joins a release window with the windows it shares samples with
# Fields that do not change the epochs themselves (they act later, in the DataModule).
_NOT_IN_KEY = {"split", "normalize", "euclidean_alignment", "alignment_calibration", "crop", "batch_size", "cache_dir",
               "reject"}
_EDGE = 1 << 20


def file_identity(path: Path) -> dict[str, Any]:
    stat = path.stat()
    digest = hashlib.sha1()
    with open(path, "rb") as fh:
        digest.update(fh.read(_EDGE))
        if stat.st_size > 2 * _EDGE:
            fh.seek(-_EDGE, os.SEEK_END)
            digest.update(fh.read(_EDGE))
    return {"path": str(path), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "edges_sha1": digest.hexdigest()}


def cache_key(cfg: DataConfig, files: list[Path], identities: list[dict | None] | None = None) -> str:
    """``identities``: per file, what identifies data held in memory (a MOABB run) in place of the file's own."""
    fields = {k: v for k, v in to_mapping(cfg).items() if k not in _NOT_IN_KEY}
    identities = identities or [None] * len(files)
    doc = {"version": CACHE_VERSION, "config": fields,
           "files": [ident if ident is not None else file_identity(p) for p, ident in zip(files, identities)]}
    return hashlib.sha256(json.dumps(doc, sort_keys=True, default=str).encode()).hexdigest()[:20]


def entry_dir(cache_root: Path, key: str) -> Path:
    return cache_root / key


def is_complete(entry: Path) -> bool:
    return (entry / "meta.json").is_file() and (entry / "X.npy").is_file()


def new_staging_dir(cache_root: Path, key: str) -> Path:
    cache_root.mkdir(parents=True, exist_ok=True)
    staging = cache_root / f".tmp-{key}-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    return staging


def publish(staging: Path, entry: Path) -> None:
    """Move a finished staging folder into place atomically (another process may have won the race)."""
    try:
        publish_dir(staging, entry)
    except OSError:
        if is_complete(entry):
            shutil.rmtree(staging, ignore_errors=True)
        else:
            raise
