"""MOABB datasets as a data source: each continuous run becomes a :class:`datasets.reading.Recording`.

``data: {moabb: {dataset: BNCI2014_001, subjects: [1, 2]}, events: {left_hand: left, right_hand: right}}`` reads
the dataset's continuous runs through MOABB (``dataset.get_data``: ``{subject: {session: {run: Raw}}}``), so the
project's own causal preprocessing and epoching apply unchanged (not MOABB's paradigm filters), with MOABB's
subject, session and run as the split groups. MOABB's stim channel is turned into annotations named by the
dataset's ``event_id`` (``left_hand``, ``right_hand``, ...), so ``data.events`` maps MOABB's event names.

A MOABB run lives in memory, not in a file, so its identity in the epochs cache is the dataset, subject, session,
run, MOABB version, the dataset's data folder and the bytes at both ends of the run's signal.

MOABB downloads whatever is missing. A training run should not start a download of gigabytes behind the user's
back, nor fail deep inside a downloader on a machine without network, so unless ``download: true`` the data are
checked to be on disk first (the dataset's own ``data_path`` with the network blocked); a missing dataset is a
FileNotFoundError that says where MOABB looks and how to download, and nothing is written.
"""

from __future__ import annotations

import contextlib
import difflib
import hashlib
import os
import socket
from pathlib import Path
from typing import Any, Iterator

import mne
import numpy as np

from .config import MoabbConfig

#: one subject's runs, kept between listing the runs and reading them ((name, options, subject) -> sessions)
_MEMO: dict[tuple, dict] = {}


def _moabb():
    try:
        import moabb
        import moabb.datasets  # noqa: F401  (registers the dataset classes)
    except ImportError:
        raise RuntimeError("Reading MOABB datasets needs moabb: pip install '.[moabb]'") from None
    return moabb


def dataset_classes() -> dict[str, type]:
    """MOABB's dataset classes by name (``BNCI2014_001``, ``PhysionetMI``, ``FakeDataset``, ...)."""
    _moabb()
    from moabb.datasets.base import BaseDataset
    from moabb.datasets.utils import dataset_list

    def subclasses(cls: type) -> list[type]:
        return [c for sub in cls.__subclasses__() for c in (sub, *subclasses(sub))]

    # a lab's own MOABB dataset class (a BaseDataset subclass) counts once its module is imported
    own = [c for c in subclasses(BaseDataset) if not c.__module__.startswith("moabb.")
           and not c.__name__.startswith("_") and not getattr(c, "__abstractmethods__", None)]
    return {cls.__name__: cls for cls in [*own, *dataset_list]}


def import_module(name: str) -> None:
    """Import ``moabb.module`` (where a lab's own dataset class lives); a module that cannot be imported is a
    one-line error naming it."""
    import importlib

    try:
        importlib.import_module(name)
    except ImportError as err:
        raise ValueError(f"'moabb.module' ({name!r}) cannot be imported ({err}): give an importable module (on "
                         "PYTHONPATH, or installed) that defines the dataset class.") from None


def make_dataset(name: str, options: dict[str, Any] | None = None):
    """Construct MOABB dataset ``name`` with keyword ``options``; an unknown name lists the close (or all) names.

    Parameters
    ----------
    name : str
        A class name in ``moabb.datasets``.
    options : dict, optional
        Keyword arguments of the dataset's constructor (e.g. ``n_subjects`` for ``FakeDataset``).

    Returns
    -------
    moabb.datasets.base.BaseDataset
    """
    known = dataset_classes()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=5, cutoff=0.6)
        hint = f"close names: {', '.join(close)}" if close else f"known: {', '.join(sorted(known))}"
        raise ValueError(f"'moabb.dataset' ({name!r}) is not a MOABB dataset; {hint}.")
    try:
        return known[name](**(options or {}))
    except TypeError as err:
        raise TypeError(f"'moabb.options' ({options}) do not fit {name}: {err}.") from None


def is_generated(dataset) -> bool:
    """True for MOABB's fake datasets (and a lab's subclasses of them), which make their data up and have nothing
    to download."""
    return any(cls.__module__ == "moabb.datasets.fake" for cls in type(dataset).__mro__)


def data_root() -> Path:
    """Where MOABB keeps datasets: MNE's ``MNE_DATA`` (config or environment), else ``~/mne_data``."""
    configured = mne.get_config("MNE_DATA")
    return Path(configured).expanduser() if configured else Path.home() / "mne_data"


class _NoNetwork(OSError):
    pass


@contextlib.contextmanager
def _network_blocked() -> Iterator[None]:
    """Any connection or name lookup fails at once (a download attempt shows up as _NoNetwork)."""
    def refuse(*args, **kwargs):
        raise _NoNetwork("network blocked while checking for downloaded data")

    saved = socket.socket.connect, socket.getaddrinfo, socket.create_connection
    socket.socket.connect, socket.getaddrinfo, socket.create_connection = refuse, refuse, refuse
    try:
        yield
    finally:
        socket.socket.connect, socket.getaddrinfo, socket.create_connection = saved


def check_downloaded(dataset, name: str, subjects: list[int]) -> None:
    """Raise FileNotFoundError (and write nothing) unless every subject's data are on disk.

    A dataset-specific folder (``MNE_DATASETS_<SIGN>_PATH``) counts as configured; otherwise ``data_root()``
    must exist. Each subject's files are then looked up through the dataset's own ``data_path`` with the
    network blocked, so a file that would have to be downloaded fails the check instead.
    """
    if is_generated(dataset):
        return
    root = data_root()
    how = (f"download it once with network (set 'data.moabb.download: true', or in Python: "
           f"moabb.datasets.{name}().download(subject_list={subjects})), or copy a downloaded copy there "
           "(MNE_DATA sets the folder)")
    # a dataset's own folder (MNE_DATASETS_<SIGN>_PATH) that exists; MOABB's fake datasets set theirs, and have no data
    keys = {**(mne.get_config() or {}), **os.environ}
    specific = [k for k, v in keys.items() if k.startswith("MNE_DATASETS_") and k.endswith("_PATH")
                and "FAKE" not in k and Path(str(v)).expanduser().is_dir()]
    if not root.is_dir() and not specific:
        raise FileNotFoundError(f"MOABB dataset {name} is not downloaded: {root} does not exist; {how}.")
    saved = os.environ.get("MNE_DATA")
    os.environ["MNE_DATA"] = str(root)  # so MOABB does not write its default into MNE's config file
    try:
        for subject in subjects:
            try:
                with _network_blocked(), mne.utils.use_log_level("error"):
                    dataset.data_path(subject)
            except Exception as err:  # any failure to find the files without the network means "not here"
                raise FileNotFoundError(
                    f"MOABB dataset {name} subject {subject} is not downloaded under {root} "
                    f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'needs the network'}); {how}."
                ) from None
    finally:
        if saved is None:
            os.environ.pop("MNE_DATA", None)
        else:
            os.environ["MNE_DATA"] = saved


def _subjects(dataset, cfg: MoabbConfig) -> list[int]:
    available = list(dataset.subject_list)
    if cfg.subjects is None:
        return available
    unknown = [s for s in cfg.subjects if s not in available]
    if unknown:
        raise ValueError(f"'moabb.subjects' has subjects {unknown} that {cfg.dataset} does not have; it has "
                         f"{available[0]}..{available[-1]} ({len(available)}).")
    return list(cfg.subjects)


def with_event_annotations(raw: mne.io.BaseRaw, dataset) -> mne.io.BaseRaw:
    """Name the run's events by the dataset's ``event_id`` as annotations (in place), from its stim channel,
    unless annotations with those names are already there. Each lasts until the end of the dataset's
    ``interval`` (the trial's imagery period, in seconds after the event)."""
    names = {code: name for name, code in dataset.event_id.items()}
    if set(raw.annotations.description) & set(dataset.event_id):
        return raw
    stim = [ch for ch, kind in zip(raw.ch_names, raw.get_channel_types()) if kind == "stim"]
    if not stim:
        return raw
    events = mne.find_events(raw, stim_channel=stim[0], shortest_event=1, verbose="error")
    events = events[np.isin(events[:, 2], list(names))]
    onsets = (events[:, 0] - raw.first_samp) / raw.info["sfreq"]
    duration = float(dataset.interval[1])
    ann = mne.Annotations(onsets, [duration] * len(onsets), [names[c] for c in events[:, 2]],
                          orig_time=raw.annotations.orig_time)
    raw.set_annotations(raw.annotations + ann if len(raw.annotations) else ann, verbose="error")
    return raw


def _signal_digest(raw: mne.io.BaseRaw) -> str:
    """The bytes at both ends of the run (a second each), as the cache hashes a file's ends."""
    n = min(raw.n_times, int(raw.info["sfreq"]))
    data = raw.get_data()
    return hashlib.sha1(np.ascontiguousarray(data[:, :n]).tobytes() + np.ascontiguousarray(data[:, -n:]).tobytes()).hexdigest()


def _load_subject(dataset, cfg: MoabbConfig, subject: int) -> dict:
    key = (cfg.dataset, repr(sorted(cfg.options.items())), subject)
    if key not in _MEMO:
        _MEMO.clear()  # one subject in memory at a time
        with mne.utils.use_log_level("error"):
            _MEMO[key] = dataset.get_data([subject])[subject]
    return _MEMO[key]


def moabb_recordings(cfg: MoabbConfig) -> list[dict[str, Any]]:
    """The fields of one :class:`datasets.reading.Recording` per continuous run of the configured MOABB dataset, in subject, session, run order.

    Parameters
    ----------
    cfg : MoabbConfig
        The ``data.moabb`` section.

    Returns
    -------
    list of dict
        ``path`` is a name, not a file (``<dataset>_sub-<s>_ses-<session>_run-<run>``); ``load`` returns a copy of
        the run's Raw with its events as annotations; ``identity`` keys the epochs cache.
    """
    moabb = _moabb()
    if cfg.module:
        import_module(cfg.module)
    dataset = make_dataset(cfg.dataset, cfg.options)
    subjects = _subjects(dataset, cfg)
    if not cfg.download:
        check_downloaded(dataset, cfg.dataset, subjects)
    recordings = []
    for subject in subjects:
        sessions = _load_subject(dataset, cfg, subject)
        chosen = [s for s in sessions if cfg.sessions is None or s in cfg.sessions]
        if not chosen:
            raise ValueError(f"'moabb.sessions' ({cfg.sessions}) match none of subject {subject}'s sessions: "
                             f"{list(sessions)}.")
        for session in chosen:
            runs = [r for r in sessions[session] if cfg.runs is None or r in cfg.runs]
            if not runs:
                raise ValueError(f"'moabb.runs' ({cfg.runs}) match none of subject {subject}'s runs in session "
                                 f"{session!r}: {list(sessions[session])}.")
            for run in runs:
                raw = sessions[session][run]
                identity = {"moabb": moabb.__version__, "dataset": cfg.dataset, "code": dataset.code,
                            "subject": subject, "session": session, "run": run, "data_root": str(data_root()),
                            "n_times": raw.n_times, "sfreq": raw.info["sfreq"], "ch_names": raw.ch_names,
                            "signal": _signal_digest(raw)}
                recordings.append(dict(
                    path=Path(f"{cfg.dataset}_sub-{subject}_ses-{session}_run-{run}"), subject=str(subject),
                    session=str(session), run=str(run), load=_loader(dataset, cfg, subject, session, run),
                    identity=identity))
    return recordings


def _loader(dataset, cfg: MoabbConfig, subject: int, session: str, run: str):
    def load() -> mne.io.BaseRaw:
        raw = _load_subject(dataset, cfg, subject)[session][run].copy()  # the epoching picks channels in place
        return with_event_annotations(raw, dataset)

    return load
