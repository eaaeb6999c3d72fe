"""Trials cut before the project saw them (MNE Epochs files, epoched EEGLAB ``.set``) as a data source.

A continuous recording is filtered from its first sample and cut after the filters have settled, exactly as the
server filters the live stream. Cut trials have no before: the causal filters can only start at each trial's first
sample, so the start of every trial is a filter transient. This module measures it with the project's own settle
measure (:attr:`datasets.dsp.PreprocessingSpec.settle_samples`, the time after which the start-up error is below
1 % of the filtered signal) and refuses a window (``data.tmin`` .. ``data.tmax`` on the trials' own time axis) that
starts inside it, unless the trials are declared already filtered (``data.preprocessed: true``: the project's
filters are skipped, and the exported model tells the server so).

Classes come from the file's ``event_id`` (names, codes, or MNE's ``/``-separated tags) mapped through
``data.events``; groups (subject, session, run) from the trials' ``metadata`` columns of those names, else from
the file name (``data.group_pattern`` or the default patterns), else subject = the file's stem, session = 1 and
run = one of :data:`RUN_BLOCKS` blocks of consecutive trials (stated in a warning). Each trial's metadata row is
kept in the epochs cache (``trials.json``).
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path
from typing import Any

import mne
import numpy as np

from .config import DataConfig
from .dsp import CausalPreprocessor, PreprocessingSpec, apply_offline, make_spec
from .picks import pick_channels
from .reading import check_same_channels, named_groups, standardise_names

#: MNE's names for Epochs files (``mne.read_epochs`` warns about others)
EPOCHS_SUFFIXES = ("-epo.fif", "_epo.fif", "-epo.fif.gz", "_epo.fif.gz")
#: runs made of consecutive trials when neither the file name nor the metadata name one
RUN_BLOCKS = 5
GROUPS = ("subject", "session", "run")


def _eeglab_trials(path: Path) -> int:
    """How many trials an EEGLAB ``.set`` holds (1: continuous); 1 when it cannot be read (the reader says why)."""
    from pymatreader import read_mat  # an MNE dependency (it reads EEGLAB with it)

    try:
        mat = read_mat(str(path), variable_names=["trials", "EEG"])
    except Exception:  # a corrupt file: the reader names it
        return 1
    eeg = mat.get("EEG", mat) if isinstance(mat.get("EEG", mat), dict) else mat
    try:
        return int(np.asarray(eeg.get("trials", 1)).ravel()[0])
    except (TypeError, ValueError, IndexError):
        return 1


def is_epochs_file(path: Path) -> bool:
    """Whether ``path`` holds cut trials: an MNE Epochs file (by MNE's naming) or an EEGLAB ``.set`` of trials."""
    name = Path(path).name.lower()
    if name.endswith(EPOCHS_SUFFIXES):
        return True
    return name.endswith(".set") and Path(path).is_file() and _eeglab_trials(Path(path)) > 1


def check_sources(recordings, cfg: DataConfig) -> bool:
    """Whether the recordings are cut trials; refuse a mix of cut trials and continuous recordings, and
    ``data.preprocessed`` / ``data.release`` where they do not apply. Runs before anything is written."""
    cut = [getattr(r, "load", None) is None and is_epochs_file(r.path) for r in recordings]
    if any(cut) and not all(cut):
        one, other = (next(r.path.name for r, c in zip(recordings, cut) if c is flag) for flag in (True, False))
        raise ValueError(f"'data.files' mixes cut trials ({one}) and continuous recordings ({other}): train on "
                         "one kind at a time (their filters start differently).")
    if cfg.preprocessed and not any(cut):
        raise ValueError("'data.preprocessed: true' applies to cut trials (-epo.fif, epoched EEGLAB .set) only; "
                         "continuous recordings are filtered by the project, as the server filters the live stream.")
    if any(cut) and cfg.release is not None:
        raise ValueError("'data.release' places windows after each cue's end in a continuous recording; cut trials "
                         "have no such time: drop 'release'.")
    if any(cut) and cfg.stim_channel:
        raise ValueError(f"'data.stim_channel' ({cfg.stim_channel!r}) does not apply to cut trials: their classes "
                         "come from the file's event_id.")
    return bool(cut) and all(cut)


def read_epochs_file(path: Path, cfg: DataConfig) -> mne.BaseEpochs:
    """Read all trials of an Epochs file or an epoched EEGLAB set, names and montage standardised as configured."""
    try:
        if Path(path).name.lower().endswith(".set"):
            epochs = mne.read_epochs_eeglab(path, verbose="error")
        else:
            epochs = mne.read_epochs(path, proj=False, preload=True, verbose="error")
    except Exception as err:  # MNE raises many types for corrupt files; name the file
        raise ValueError(f"Could not read trials from {path}: {type(err).__name__}: {err}") from None
    epochs.load_data()
    return standardise_names(epochs, cfg)


def trial_classes(epochs: mne.BaseEpochs, cfg: DataConfig, path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Indices of the trials ``data.events`` maps, their class indices, and how many trials every event name has.

    A key of ``data.events`` is an event name of the file's ``event_id``, its code (as a string), or MNE tags
    (``"left"`` matches ``"left/hand"``). No match is an error listing what the file holds.
    """
    classes = cfg.class_names
    code_to_name = {int(code): name for name, code in epochs.event_id.items()}
    codes = epochs.events[:, 2].astype(int)
    counts = {name: int((codes == code).sum()) for code, name in code_to_name.items()}
    labels = np.full(len(codes), -1, dtype=np.int64)
    for key, class_name in cfg.events.items():
        key = str(key)
        tags = set(key.split("/"))
        names = [n for n in epochs.event_id if n == key or str(epochs.event_id[n]) == key or tags <= set(n.split("/"))]
        sel = np.isin(codes, [epochs.event_id[n] for n in names])
        clash = sel & (labels >= 0) & (labels != classes.index(class_name))
        if clash.any():
            raise ValueError(f"{path.name}: {int(clash.sum())} trial(s) match 'events' key {key!r} ({class_name}) and "
                             f"another class's key too; make the keys of 'data.events' distinct.")
        labels[sel] = classes.index(class_name)
    keep = np.flatnonzero(labels >= 0)
    if not len(keep):
        held = ", ".join(f"{n} ({code})" for n, code in sorted(epochs.event_id.items())) or "none"
        raise ValueError(f"No trials in {path.name} match 'events' ({sorted(map(str, cfg.events))}); its event_id "
                         f"holds: {held}.")
    return keep, labels[keep], counts


def _spec(epochs: mne.BaseEpochs, picks: list[str], cfg: DataConfig, path: Path) -> PreprocessingSpec:
    sfreq = epochs.info["sfreq"]
    try:
        if cfg.preprocessed:  # already filtered: only the (stateless) re-reference, no filters, no decimation
            if cfg.resample is not None:
                raise ValueError(f"'resample' ({cfg.resample}) needs the project's anti-alias filter, which "
                                 "'preprocessed: true' skips: resample the trials before saving them, or drop 'resample'.")
            return make_spec(sfreq, picks, reference=cfg.reference)
        bandpass = tuple(cfg.bandpass) if cfg.bandpass is not None else None
        return make_spec(sfreq, picks, reference=cfg.reference, bandpass=bandpass, notch=cfg.notch,
                         order=cfg.filter_order, resample=cfg.resample, causal=cfg.phase == "causal")
    except ValueError as err:
        raise ValueError(f"{path.name} ({sfreq:g} Hz): {err}") from None


def window_on_trials(epochs: mne.BaseEpochs, spec: PreprocessingSpec, cfg: DataConfig, path: Path) -> tuple[int, int]:
    """First output sample and length of the window in each trial; refuse a window outside the trials or one that
    starts inside the filters' start-up transient (naming the numbers and the ways out)."""
    sf, decim = spec.sfreq_in, spec.decim
    n_out = -(-len(epochs.times) // decim)
    zero = int(round(-epochs.tmin * sf))  # the event's sample in each trial
    start = int(round((zero + cfg.tmin * sf) / decim))
    n_times = int(round((cfg.tmax - cfg.tmin) * spec.sfreq_out))
    last = epochs.tmin + (len(epochs.times) - 1) / sf
    if start < 0 or start + n_times > n_out:
        raise ValueError(f"The window 'data.tmin'={cfg.tmin:g} s .. 'data.tmax'={cfg.tmax:g} s lies outside the trials of "
                         f"{path.name} ({epochs.tmin:g} .. {last:g} s around each event): choose a window inside them.")
    if start < spec.settle_out:
        settled = epochs.tmin + spec.settle_out * decim / sf
        overlap = min(settled, cfg.tmax) - cfg.tmin
        raise ValueError(
            f"{path.name}: the window 'data.tmin'={cfg.tmin:g} s .. 'data.tmax'={cfg.tmax:g} s starts inside the filter "
            f"transient: the causal filters (bandpass {cfg.bandpass}, notch {cfg.notch}) start at each trial's first "
            f"sample ({epochs.tmin:g} s) and settle {spec.settle_samples / sf:.3f} s later ({settled:.3f} s), so "
            f"{overlap:.3f} s ({overlap / (cfg.tmax - cfg.tmin):.0%}) of the window would be filter start-up. Move "
            f"'data.tmin' to {math.ceil(settled * 1000) / 1000:g} s or later, or set 'data.preprocessed: true' if the "
            "trials are already filtered (the project's filters are then skipped, here and in the server)."
        )
    if not spec.causal and start + n_times > n_out - spec.settle_out:  # zero phase: the end is a transient too
        raise ValueError(f"{path.name}: with 'phase: zero' the filters' transient also ends each trial "
                         f"({spec.settle_samples / sf:.3f} s): end the window by {last - spec.settle_samples / sf:.3f} s.")
    return start, n_times


def trial_groups(epochs: mne.BaseEpochs, keep: np.ndarray, cfg: DataConfig, path: Path) -> dict[str, np.ndarray]:
    """Subject / session / run of each kept trial: metadata columns, else the file name, else the fallbacks."""
    found = named_groups(path, cfg.group_pattern)
    fallback = {"subject": path.name.split("-epo")[0].split("_epo")[0].removesuffix(".set"), "session": "1"}
    md = epochs.metadata
    out = {}
    for key in GROUPS:
        from_name = found.get(key) or fallback.get(key)
        values = np.full(len(keep), from_name if from_name else "", dtype=object)
        if md is not None and key in md.columns:
            column = md[key].iloc[keep]
            named = column.notna().to_numpy()
            values[named] = [_group_str(v) for v in column[named]]
        if key == "run" and not all(values):
            n_blocks = min(RUN_BLOCKS, len(keep))
            blocks = np.zeros(len(keep), dtype=np.int64)
            for b, idx in enumerate(np.array_split(np.arange(len(keep)), n_blocks)):
                blocks[idx] = b + 1
            unnamed = np.array([not v for v in values])
            values[unnamed] = [f"{fallback['subject']}-b{b}" for b in blocks[unnamed]]
            if cfg.split.by == "run" and cfg.split.method != "loso":
                warnings.warn(f"{path.name}: neither its file name nor its trials' metadata name a run; the split by run "
                              f"uses {n_blocks} blocks of consecutive trials as runs ({fallback['subject']}-b1 .. "
                              f"-b{n_blocks}).")
        out[key] = values.astype(str)
    return out


def _group_str(value: Any) -> str:
    """A metadata value as a group label (3.0 -> "3")."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def trial_metadata(epochs: mne.BaseEpochs, keep: np.ndarray) -> list[dict[str, Any]]:
    """Each kept trial's event name, its index in the file and its metadata row (JSON-able)."""
    code_to_name = {int(code): name for name, code in epochs.event_id.items()}
    rows = [{} for _ in keep]
    if epochs.metadata is not None:
        rows = json.loads(epochs.metadata.iloc[keep].to_json(orient="records"))
    return [{"event": code_to_name.get(int(epochs.events[i, 2]), str(epochs.events[i, 2])), "index": int(i), **row}
            for i, row in zip(keep, rows)]


def process_epochs_file(rec, cfg: DataConfig, ch_names_ref):
    """One file of cut trials -> windows, as :func:`datasets.epochs._process_file` returns them for a recording,
    plus ``extra``: per-trial groups, per-trial metadata and the :class:`datasets.data_info.DataSource`."""
    path = rec.path
    epochs = read_epochs_file(path, cfg)
    picks = pick_channels(epochs, cfg.picks)
    if ch_names_ref is not None:
        check_same_channels(ch_names_ref, (path, picks))
    keep, labels, counts = trial_classes(epochs, cfg, path)
    spec = _spec(epochs, picks, cfg, path)
    start, n_times = window_on_trials(epochs, spec, cfg, path)
    baseline = list(epochs.baseline) if epochs.baseline is not None else None
    if baseline is not None and (cfg.preprocessed or cfg.bandpass is None or cfg.bandpass[0] is None):
        warnings.warn(f"{path.name}: its trials were baseline-corrected ({baseline[0]} .. {baseline[1]} s), which the "
                      "server does not do to the live stream, and no high-pass removes the offset it leaves.")
    sub = epochs.copy().pick(picks)
    types = sub.get_channel_types()
    positions = np.array([ch["loc"][:3] for ch in sub.info["chs"]], dtype=np.float64)
    positions = positions.tolist() if np.isfinite(positions).all() and np.abs(positions).sum() > 0 else None
    data = sub.get_data()[keep]  # [n_trials, n_chans, n_samples], recording units
    X = np.empty((len(keep), len(picks), n_times), dtype=np.float32)
    proc = CausalPreprocessor(spec) if spec.causal else None
    for i, trial in enumerate(data):
        if proc is not None:
            proc.reset()  # each trial starts the filters afresh, from its first sample
            out = proc.process(trial)
        else:
            out = apply_offline(spec, trial)
        X[i] = out[:, start : start + n_times]
    extra = {
        "groups": trial_groups(epochs, keep, cfg, path),
        "trials": trial_metadata(epochs, keep),
        "source": {"kind": "cut_trials", "filter_start": "preprocessed" if cfg.preprocessed else "trial_start",
                   "trial_tmin": float(epochs.tmin), "trial_tmax": float(epochs.tmax),
                   "settle_seconds": spec.settle_samples / spec.sfreq_in, "baseline": baseline},
    }
    released = np.zeros(len(keep), dtype=bool)
    trials = np.arange(len(keep), dtype=np.int64)  # one window per trial: each its own trial
    return X, labels, released, trials, picks, types, spec, positions, counts, extra
