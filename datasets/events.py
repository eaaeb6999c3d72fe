"""Events from annotations or a stim channel, mapped to class names by the config."""

from __future__ import annotations

import warnings
from pathlib import Path

import mne
import numpy as np

from .config import DataConfig


def find_events(raw: mne.io.BaseRaw, cfg: DataConfig, path: Path) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
    """Sample indices (relative to the first sample) and class indices of the mapped events, and how often
    every event name (or stim code) occurs in the file, mapped or not.

    ``cfg.events`` keys are annotation descriptions or, with a stim channel, event codes (as strings).
    No match is an error listing what the file holds.
    """
    classes = cfg.class_names
    if cfg.stim_channel:
        if cfg.stim_channel not in raw.ch_names:
            raise ValueError(f"'stim_channel' ({cfg.stim_channel!r}) is not in {path.name}; channels: {raw.ch_names}.")
        events = mne.find_events(raw, stim_channel=cfg.stim_channel, shortest_event=1, verbose="error")
        found = {str(code): int(code) for code in np.unique(events[:, 2])}
    else:
        events, found = mne.events_from_annotations(raw, verbose="error")
    counts = {name: int((events[:, 2] == code).sum()) for name, code in found.items()}
    samples, labels = [], []
    for key, class_name in cfg.events.items():
        if str(key) in found:
            code = found[str(key)]
            sel = events[:, 2] == code
            samples.append(events[sel, 0] - raw.first_samp)
            labels.append(np.full(sel.sum(), classes.index(class_name)))
    if not samples:
        raise ValueError(
            f"No events in {path.name} match 'events' ({sorted(cfg.events)}); the file holds: {sorted(found) or 'none'}."
        )
    samples, labels = np.concatenate(samples), np.concatenate(labels)
    order = np.argsort(samples, kind="stable")
    return samples[order].astype(np.int64), labels[order].astype(np.int64), counts


def missing_events(event_counts: dict[str, int], events: dict[str, str]) -> list[str]:
    """The keys of ``events`` that occur in none of the files (``event_counts``: summed over the files)."""
    return [str(key) for key in events if event_counts.get(str(key), 0) == 0]


def missing_events_message(event_counts: dict[str, int], events: dict[str, str], n_files: int) -> str:
    """What a partial mapping is missing, and what the files hold instead."""
    missing = missing_events(event_counts, events)
    mapped = ", ".join(f"{key} (-> {events[key]})" for key in missing)
    held = ", ".join(f"{k} ({n})" for k, n in sorted(event_counts.items()) if n) or "no events"
    return (f"'data.events' maps {mapped}, which never occur{'s' if len(missing) == 1 else ''} in the {n_files} "
            f"file(s); they hold: {held}.")


def release_events(raw: mne.io.BaseRaw, cfg: DataConfig, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """``data.release``: an event after each movement cue, placed so that its window (``tmin`` .. ``tmax``) ends
    ``release.after_s`` after the cue's annotation ends, with the release class; sample indices as
    :func:`find_events` gives them. Dropped (with a warning) where the next movement cue begins before that window
    ends; a rest cue may (EEGMMIDB's T0 follows each movement at once: the window ends inside it)."""
    release, ann = cfg.release, raw.annotations
    names = {str(k): v for k, v in cfg.events.items()}
    keep = np.isin(ann.description, list(names))
    onset, duration = ann.onset[keep], ann.duration[keep]
    classes = [names[d] for d in ann.description[keep]]
    order = np.argsort(onset, kind="stable")
    onset, duration, classes = onset[order], duration[order], [classes[i] for i in order]
    movement = np.array([c != release.label for c in classes], dtype=bool)
    if not movement.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    if (duration[movement] <= 0).any():
        raise ValueError(f"'release' places windows after each movement cue's end, but {int((duration[movement] <= 0).sum())} "
                         f"movement cue(s) of {path.name} have no duration (their annotations last 0 s).")
    onset, duration = onset[movement], duration[movement]
    ends = onset + duration + release.after_s  # where each release window ends, in the annotations' time
    fits = ends <= np.r_[onset[1:], np.inf]
    if not fits.all():
        warnings.warn(f"{path.name}: {int((~fits).sum())} release window(s) dropped: the next movement cue begins "
                      f"less than {release.after_s} s after the one before ends.")
    end_index = raw.time_as_index(ends[fits], use_rounding=True, origin=ann.orig_time)
    samples = end_index - int(round(cfg.tmax * raw.info["sfreq"]))  # the event whose window ends there
    return samples.astype(np.int64), np.full(len(samples), cfg.class_names.index(release.label), dtype=np.int64)
