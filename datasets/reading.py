"""Find and read recording files with MNE, with errors that name the file and what is allowed."""

from __future__ import annotations

import glob
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import mne

from .channel_names import rename_channels
from .config import DataConfig

# Extensions mne.io.read_raw dispatches on (lower case; ".fif.gz" handled by suffixes).
SUPPORTED = (".fif", ".fif.gz", ".edf", ".bdf", ".gdf", ".vhdr", ".set", ".cnt", ".mff", ".snirf", ".ds", ".sqd", ".con", ".nxe", ".xdf", ".xdfz")  # XDF: datasets.xdf

# Default group patterns, tried in order on the file name: BIDS-like, then PhysioNet eegmmidb (S001R03.edf).
DEFAULT_PATTERNS = (
    r"sub-(?P<subject>[A-Za-z0-9]+)(?:_ses-(?P<session>[A-Za-z0-9]+))?(?:_task-[A-Za-z0-9]+)?(?:_run-(?P<run>[A-Za-z0-9]+))?",
    r"S(?P<subject>\d{3})R(?P<run>\d{2})",
)


@dataclass
class Recording:
    """One file to read, with its group labels."""

    path: Path
    subject: str
    session: str
    run: str
    #: for data held in memory (a MOABB run): returns the Raw, and what identifies it in the epochs cache
    load: Callable[[], mne.io.BaseRaw] | None = None
    identity: dict | None = None


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return ".fif.gz" if name.endswith(".fif.gz") else path.suffix.lower()


def resolve_files(patterns: list[str], config_dir: Path) -> list[Path]:
    """Expand paths and globs (relative to ``config_dir``); missing files are a FileNotFoundError."""
    files: list[Path] = []
    for pattern in patterns:
        full = Path(pattern) if Path(pattern).is_absolute() else config_dir / pattern
        if glob.has_magic(str(full)):
            matches = sorted(Path(p) for p in glob.glob(str(full)))
            if not matches:
                raise FileNotFoundError(f"No recording files match {pattern!r} (looked in {full.parent}).")
            files.extend(matches)
        else:
            if not full.is_file():
                raise FileNotFoundError(f"Recording file not found: {full}")
            files.append(full)
    for path in files:
        if _suffix(path) not in SUPPORTED:
            raise ValueError(
                f"Unsupported recording format {_suffix(path)!r} for {path}. Supported: {', '.join(SUPPORTED)}."
            )
    return list(dict.fromkeys(p.resolve() for p in files))


def group_labels(path: Path, pattern: str | None) -> tuple[str, str, str]:
    """(subject, session, run) from the file name, by ``pattern`` or the default patterns."""
    found = named_groups(path, pattern)
    subject = found.get("subject") or path.stem
    return subject, found.get("session") or "1", found.get("run") or path.stem


def named_groups(path: Path, pattern: str | None) -> dict[str, str | None]:
    """The groups (subject, session, run) the file name names, by ``pattern`` or the default patterns; those it
    does not name are missing or None."""
    if pattern is not None:
        match = re.search(pattern, path.name)
        if match is None:
            raise ValueError(f"File name {path.name!r} does not match 'group_pattern' ({pattern!r}).")
        found = match.groupdict()
        if not any(found.get(k) for k in ("subject", "session", "run")):
            raise ValueError(
                f"'group_pattern' ({pattern!r}) must have named groups among subject, session, run, e.g. "
                r"'sub-(?P<subject>\d+)_run-(?P<run>\d+)'."
            )
    else:
        found = {}
        for default in DEFAULT_PATTERNS:
            match = re.search(default, path.name)
            if match:
                found = match.groupdict()
                break
    return found


def list_recordings(cfg: DataConfig, config_dir: Path) -> list[Recording]:
    """The recordings a config names, from ``files`` or a BIDS dataset, with subject/session/run labels."""
    if cfg.moabb is not None:  # continuous runs held in memory by MOABB
        from .moabb_source import moabb_recordings

        return [Recording(**fields) for fields in moabb_recordings(cfg.moabb)]
    if cfg.bids is not None:
        return _bids_recordings(cfg, config_dir)
    return [Recording(p, *group_labels(p, cfg.group_pattern)) for p in resolve_files(cfg.files, config_dir)]


def _bids_recordings(cfg: DataConfig, config_dir: Path) -> list[Recording]:
    try:
        from mne_bids import find_matching_paths
    except ImportError:
        raise RuntimeError("Reading BIDS needs mne-bids: pip install '.[bids]'") from None
    root = Path(cfg.bids.root)
    root = root if root.is_absolute() else config_dir / root
    if not root.is_dir():
        raise FileNotFoundError(f"BIDS root not found: {root}")
    paths = find_matching_paths(
        root, subjects=cfg.bids.subjects, sessions=cfg.bids.sessions, runs=cfg.bids.runs,
        tasks=cfg.bids.task, datatypes=cfg.bids.datatype, suffixes=cfg.bids.datatype,
        extensions=[".fif", ".edf", ".bdf", ".vhdr", ".set", ".gdf"],
    )
    if not paths:
        raise FileNotFoundError(f"No {cfg.bids.datatype} recordings match the 'bids' filters under {root}.")
    return [Recording(Path(p.fpath), p.subject or "1", p.session or "1", p.run or p.basename) for p in paths]


def read_recording(rec: Recording, cfg: DataConfig) -> mne.io.BaseRaw:
    """The recording's Raw: from its loader (data held in memory) or read from its file."""
    return standardise_names(rec.load(), cfg) if rec.load is not None else read_raw(rec.path, cfg)


def read_raw(path: Path, cfg: DataConfig) -> mne.io.BaseRaw:
    """Open one file (data read lazily), standardise names / set the montage as configured."""
    if _suffix(path) in (".xdf", ".xdfz"):  # LSL recordings: several streams, chosen by data.xdf
        from .xdf import read_xdf

        return standardise_names(read_xdf(path, cfg.xdf), cfg)
    try:
        raw = mne.io.read_raw(path, preload=False, verbose="error")  # read block by block later
    except Exception as err:  # MNE raises many types for corrupt files; name the file
        raise ValueError(f"Could not read recording {path}: {type(err).__name__}: {err}") from None
    return standardise_names(raw, cfg)


def standardise_names(inst, cfg: DataConfig):
    """Rename channels and set the montage as configured, on a Raw or an Epochs (in place; returns it)."""
    raw = inst
    if cfg.rename is not None:  # the rule the rig applies to a live stream too (datasets.channel_names)
        raw.rename_channels(dict(zip(raw.ch_names, rename_channels(raw.ch_names, cfg.rename))))
    if cfg.montage:
        try:
            montage = mne.channels.make_standard_montage(cfg.montage)
        except ValueError:
            raise ValueError(
                f"'montage' ({cfg.montage!r}) is not a standard montage; known: "
                f"{', '.join(mne.channels.get_builtin_montages())}."
            ) from None
        raw.set_montage(montage, on_missing="ignore", verbose="error")
    return raw


def check_same_channels(reference: tuple[Path, list[str]], other: tuple[Path, list[str]]) -> None:
    """Files of one dataset must carry the same picked channels; list the differences otherwise."""
    (p0, ch0), (p1, ch1) = reference, other
    if ch0 == ch1:
        return
    missing = [c for c in ch0 if c not in ch1]
    extra = [c for c in ch1 if c not in ch0]
    detail = f"missing {missing}, extra {extra}" if (missing or extra) else "same names in another order"
    raise ValueError(f"Channels differ between {p0.name} and {p1.name}: {detail}.")
