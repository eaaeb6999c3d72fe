"""Recording files -> preprocessed epochs with class and group labels, through the epochs cache.

Each recording is filtered as one continuous stream from its first sample with the causal spec
(:mod:`datasets.dsp`), exactly as the real-time server will filter the live stream, and then cut into
windows on the decimated grid; windows that start before the filters have settled are dropped, as the
server withholds decisions until then. Epochs are written file by file into a memory-mapped array, so a dataset
larger than RAM is fine.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import mne
import numpy as np

from . import atomic, cache
from .config import DataConfig
from .dsp import CausalPreprocessor, PreprocessingSpec, apply_offline, make_spec
from .epochs_files import check_sources, process_epochs_file
from .events import find_events, missing_events, release_events
from .picks import pick_channels
from .reading import check_same_channels, list_recordings, read_recording


@dataclass
class EpochsData:
    """Preprocessed (not normalised) epochs and everything known about them."""

    X: np.ndarray  # float32 [n_epochs, n_chans, n_times], memory-mapped from the cache
    y: np.ndarray  # int64 class index into ``classes``
    classes: list[str]
    groups: dict[str, np.ndarray]  # "subject" / "session" / "run" -> str per epoch
    trial: np.ndarray  # trial id per epoch; windows sharing samples share it (splits keep trials whole)
    ch_names: list[str]
    ch_types: list[str]
    sfreq: float  # the model's input rate
    tmin: float
    tmax: float
    spec: PreprocessingSpec
    data_hash: str
    files: list[str] = field(default_factory=list)
    file_index: np.ndarray | None = None  # which file each epoch came from
    cache_path: str = ""
    ch_pos: list[list[float]] | None = None  # sensor positions (m, head or device frame), when the files have them
    event_counts: dict[str, int] = field(default_factory=dict)  # every event name in the files -> occurrences
    release: np.ndarray | None = None  # True for a window of letting go (data.release), not a cue's own window
    source: dict = field(default_factory=dict)  # datasets.data_info.DataSource: recordings, or cut trials
    trial_info: list[dict] | None = None  # cut trials: each window's event, index in its file and metadata row

    def missing_events(self, events: dict[str, str]) -> list[str]:
        """Keys of the config's ``events`` that occur in none of the files."""
        return missing_events(self.event_counts, events)

    @property
    def n_times(self) -> int:
        return self.X.shape[2]


def _window_starts(samples: np.ndarray, cfg: DataConfig, spec: PreprocessingSpec, n_out: int, path: Path):
    """First output-grid sample of each epoch; drops (with a warning) windows outside the recording."""
    n_times = int(round((cfg.tmax - cfg.tmin) * spec.sfreq_out))
    starts = np.round((samples + cfg.tmin * spec.sfreq_in) / spec.decim).astype(np.int64)
    # the first samples of a recording are filter start-up, which the server never decodes either
    inside = (starts >= spec.settle_out) & (starts + n_times <= n_out)
    if not inside.any():
        raise ValueError(
            f"The epoch window tmin={cfg.tmin} s, tmax={cfg.tmax} s falls outside {path.name} "
            f"({n_out / spec.sfreq_out:.1f} s long, filters settled after {spec.settle_samples / spec.sfreq_in:.2f} s) "
            "for every event."
        )
    if not inside.all():
        warnings.warn(f"{path.name}: {np.sum(~inside)} epoch(s) fall outside the recording or start before the "
                      f"filters settle ({spec.settle_samples / spec.sfreq_in:.2f} s) and are dropped.")
    return starts, inside, n_times


def _trials(starts: np.ndarray, released: np.ndarray, n_times: int) -> np.ndarray:
    """Each window's trial (a file-local id): its own, except that a window of letting go and every window it shares
    samples with are one trial (the rest cue that follows a movement at once, as in EEGMMIDB; the movement itself
    when its cue is short), so no split puts the same samples in training and validation."""
    parent = np.arange(len(starts))

    def root(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    order = np.argsort(starts, kind="stable")
    for a, i in enumerate(order):
        for j in order[a + 1 :]:
            if starts[j] - starts[i] >= n_times:
                break  # sorted: no later window reaches back to this one
            if released[i] or released[j]:
                parent[root(j)] = root(i)
    return np.array([root(i) for i in range(len(starts))], dtype=np.int64)


def _preprocess(raw: mne.io.BaseRaw, spec: PreprocessingSpec, block_seconds: float = 60.0) -> np.ndarray:
    """The whole recording through the spec, one block at a time (the causal filter carries its state), so
    only the decimated output and one block are in memory besides the raw data."""
    if not spec.causal:
        return apply_offline(spec, raw.get_data())
    proc = CausalPreprocessor(spec)
    step = max(spec.decim, int(block_seconds * spec.sfreq_in) // spec.decim * spec.decim)
    out = np.empty((len(spec.ch_names), -(-raw.n_times // spec.decim)), dtype=np.float32)  # float32, as stored
    pos = 0
    for start in range(0, raw.n_times, step):
        block = proc.process(raw.get_data(start=start, stop=min(start + step, raw.n_times)))
        out[:, pos : pos + block.shape[1]] = block
        pos += block.shape[1]
    return out


def _process_file(rec, cfg: DataConfig, ch_names_ref):
    raw = read_recording(rec, cfg)
    picks = pick_channels(raw, cfg.picks)
    if ch_names_ref is not None:
        check_same_channels(ch_names_ref, (rec.path, picks))
    samples, labels, event_counts = find_events(raw, cfg, rec.path)
    released = np.zeros(len(samples), dtype=bool)
    if cfg.release is not None:  # windows of letting go after each movement cue, labelled rest
        extra, extra_labels = release_events(raw, cfg, rec.path)
        samples, labels = np.concatenate([samples, extra]), np.concatenate([labels, extra_labels])
        released = np.r_[released, np.ones(len(extra), dtype=bool)]
        order = np.argsort(samples, kind="stable")
        samples, labels, released = samples[order], labels[order], released[order]
    raw.pick(picks)
    types = raw.get_channel_types()
    positions = np.array([ch["loc"][:3] for ch in raw.info["chs"]], dtype=np.float64)
    positions = positions.tolist() if np.isfinite(positions).all() and np.abs(positions).sum() > 0 else None
    bandpass = tuple(cfg.bandpass) if cfg.bandpass is not None else None
    spec = make_spec(
        raw.info["sfreq"], picks, reference=cfg.reference, bandpass=bandpass, notch=cfg.notch,
        order=cfg.filter_order, resample=cfg.resample, causal=cfg.phase == "causal",
    )
    data = _preprocess(raw, spec)
    starts, inside, n_times = _window_starts(samples, cfg, spec, data.shape[1], rec.path)
    starts, labels, released = starts[inside], labels[inside], released[inside]
    idx = starts[:, None] + np.arange(n_times)[None, :]
    X = np.ascontiguousarray(data[:, idx].transpose(1, 0, 2), dtype=np.float32)
    # every epoch: 'reject' acts in the DataModule
    return X, labels, released, _trials(starts, released, n_times), picks, types, spec, positions, event_counts


def load_epochs(cfg: DataConfig, config_dir: Path | None = None) -> EpochsData:
    """Read, preprocess and epoch the configured recordings, using the cache when it is current."""
    if cfg.bandpass == "auto":
        raise ValueError("'data.bandpass' is auto: the band is chosen on the training trials when a run starts "
                         "(bmi train, cv, sweep); to read the recordings here give it: [low, high], mu_beta or slow.")
    config_dir = Path(config_dir or ".").resolve()
    recordings = list_recordings(cfg, config_dir)
    cut_trials = check_sources(recordings, cfg)  # before anything is written
    files = [r.path for r in recordings]
    key = cache.cache_key(cfg, files, [r.identity for r in recordings])
    root = Path(cfg.cache_dir) if Path(cfg.cache_dir).is_absolute() else config_dir / cfg.cache_dir
    entry = cache.entry_dir(root, key)
    if not cache.is_complete(entry):
        _build_entry(cfg, recordings, root, key, entry, cut_trials)
    return _load_entry(entry, key)


def _build_entry(cfg: DataConfig, recordings, root: Path, key: str, entry: Path, cut_trials: bool = False) -> None:
    staging = cache.new_staging_dir(root, key)
    try:
        parts, meta, ref, event_counts = [], None, None, Counter()
        for i, rec in enumerate(recordings):
            if cut_trials:  # datasets.epochs_files: per-trial groups and metadata come with them
                X, labels, released, trials, picks, types, spec, positions, counts, extra = process_epochs_file(rec, cfg, ref)
            else:
                X, labels, released, trials, picks, types, spec, positions, counts = _process_file(rec, cfg, ref)
                extra = {"groups": {"subject": [rec.subject] * len(X), "session": [rec.session] * len(X),
                                    "run": [rec.run] * len(X)}}
            event_counts.update(counts)
            ref = ref or (rec.path, picks)
            if meta is None:
                meta = {"ch_names": picks, "ch_types": types, "spec": spec.to_dict(), "ch_pos": positions}
            elif spec.sfreq_in != meta["spec"]["sfreq_in"]:
                raise ValueError(
                    f"Sampling rates differ between files: {recordings[0].path.name} has {meta['spec']['sfreq_in']} Hz, "
                    f"{rec.path.name} has {spec.sfreq_in} Hz."
                )
            part = staging / f"part{i}.npy"
            np.save(part, X)
            parts.append((part, labels, released, trials, rec, len(X), extra))
        total = sum(n for *_, n, _extra in parts)
        n_chans, n_times = np.load(parts[0][0], mmap_mode="r").shape[1:]
        trial_info = [dict(row, file=i) for i, p in enumerate(parts) for row in p[-1].get("trials", [])]
        source = parts[0][-1].get("source", {"kind": "recordings", "filter_start": "recording_start"})
        X_all = np.lib.format.open_memmap(staging / "X.npy", mode="w+", dtype=np.float32, shape=(total, n_chans, n_times))
        y, release, trial, subj, sess, run, file_idx, pos = [], [], [], [], [], [], [], 0
        for i, (part, labels, released, trials, rec, n, extra) in enumerate(parts):
            trial.append(trials + pos)
            X_all[pos : pos + n] = np.load(part, mmap_mode="r")
            pos += n
            part.unlink()
            y.append(labels)
            release.append(released)
            subj += list(extra["groups"]["subject"])
            sess += list(extra["groups"]["session"])
            run += list(extra["groups"]["run"])
            file_idx += [i] * n
        X_all.flush()
        del X_all
        np.save(staging / "y.npy", np.concatenate(y).astype(np.int64))
        np.save(staging / "trial.npy", np.concatenate(trial).astype(np.int64))
        np.save(staging / "release.npy", np.concatenate(release))
        np.save(staging / "file_index.npy", np.asarray(file_idx, dtype=np.int64))
        np.savez(staging / "groups.npz", subject=np.asarray(subj), session=np.asarray(sess), run=np.asarray(run))
        meta.update(
            classes=cfg.class_names, tmin=cfg.tmin, tmax=cfg.tmax, key=key, event_counts=dict(event_counts),
            files=[str(r.path) for r in recordings], mne_version=mne.__version__, source=source,
        )
        if cut_trials:
            atomic.write_json(staging / "trials.json", trial_info)
        atomic.write_json(staging / "meta.json", meta)  # written last: marks the entry complete
        cache.publish(staging, entry)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _load_entry(entry: Path, key: str) -> EpochsData:
    meta = json.loads((entry / "meta.json").read_text())
    groups = np.load(entry / "groups.npz")
    spec = PreprocessingSpec.from_dict(meta["spec"])
    return EpochsData(
        X=np.load(entry / "X.npy", mmap_mode="r"),
        y=np.load(entry / "y.npy"),
        classes=meta["classes"],
        groups={k: groups[k].astype(str) for k in ("subject", "session", "run")},
        trial=np.load(entry / "trial.npy"),
        ch_names=meta["ch_names"],
        ch_types=meta["ch_types"],
        sfreq=spec.sfreq_out,
        tmin=meta["tmin"],
        tmax=meta["tmax"],
        spec=spec,
        data_hash=key,
        files=meta["files"],
        file_index=np.load(entry / "file_index.npy"),
        cache_path=str(entry),
        ch_pos=meta.get("ch_pos"),
        event_counts=meta["event_counts"],
        release=np.load(entry / "release.npy"),
        source=meta.get("source", {}),
        trial_info=json.loads((entry / "trials.json").read_text()) if (entry / "trials.json").is_file() else None,
    )
