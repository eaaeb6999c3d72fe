"""Atomic file writes: the one helper every layer uses (standard library only).

A file is written under a temporary name in its own folder and renamed over the target in one step
(``os.replace``), so a killed process leaves either the old file or the new one, never a half-written file
that a later run would trust. On any error the temporary file is removed and the target is untouched.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator


def temporary_sibling(path: str | Path, suffix: str = ".tmp") -> Path:
    """A unique hidden name beside ``path`` (same folder, so the final rename never crosses file systems)."""
    path = Path(path)
    return path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}{suffix}")


@contextmanager
def atomic_path(path: str | Path, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``path``, on an error it is deleted.

    ``suffix`` keeps an extension tools look at (``.onnx``, ``.csv``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_sibling(path, suffix)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text(path: str | Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """JSON with two-space indentation; values JSON cannot hold (paths, numpy scalars) as strings."""
    return write_text(path, json.dumps(data, indent=2, default=str))


def publish_dir(staging: str | Path, target: str | Path) -> Path:
    """Move a finished folder written under a temporary name into place in one step (``os.rename``: it fails
    when ``target`` exists and is not empty, so a folder another process published is never replaced)."""
    os.rename(staging, target)
    return Path(target)


def copy_file(src: str | Path, dst: str | Path) -> Path:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)
    return Path(dst)
