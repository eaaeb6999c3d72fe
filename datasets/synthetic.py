"""Synthetic hand-movement recordings written as real files (FIF, EDF) for the demo and the tests.

The simulation follows what motor decoders rely on:

* sensors at real positions: the 64-channel BioSemi EEG layout (``biosemi64``), or a 306-channel
  MEG-like array (102 sites x one magnetometer + two gradiometers, on a helmet-shaped sphere; MNE ships
  no Neuromag geometry offline, so positions are built from the Vectorview 2-D layout);
* background: 1/f ("pink") noise mixed across neighbouring sensors, plus 50 Hz line noise;
* a sensorimotor mu (~10 Hz) and beta (~20 Hz) rhythm over each hemisphere;
* cues: ``grasp`` desynchronises the rhythm over the LEFT sensorimotor cortex (a right-hand movement)
  and ``open`` over the RIGHT one, each with a slow movement-related potential over the same side;
  ``rest`` leaves the rhythms intact;
* variability: per subject (source position, rhythm frequency, gain), per session (gain, noise level).

``snr`` scales the depth of desynchronisation and the potential against the background, so the task is
decodable well above chance but not trivially at the default. Annotations carry the cue name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import mne
import numpy as np
import yaml

CUE_SECONDS = 3.0
LINE_FREQ = 50.0


def _eeg_info(sfreq: float) -> mne.Info:
    montage = mne.channels.make_standard_montage("biosemi64")
    info = mne.create_info(montage.ch_names, sfreq, "eeg")
    info.set_montage(montage)
    return info


def _meg_info(sfreq: float) -> mne.Info:
    """306 MEG-like channels: 102 sites on a sphere of radius 0.12 m, each a mag and two grads."""
    layout = mne.channels.read_layout("Vectorview-mag")
    xy = layout.pos[:, :2] + layout.pos[:, 2:] / 2
    xy = (xy - xy.mean(axis=0)) / np.abs(xy - xy.mean(axis=0)).max()  # -1..1
    theta = np.hypot(*xy.T) * (np.pi / 2) * 0.95  # angle from the vertex
    phi = np.arctan2(xy[:, 1], xy[:, 0])
    sites = 0.12 * np.column_stack([np.sin(theta) * np.cos(phi), np.sin(theta) * np.sin(phi), np.cos(theta)])
    names, types, locs = [], [], []
    for i, site in enumerate(sites):
        for suffix, kind in (("1", "mag"), ("2", "grad"), ("3", "grad")):
            names.append(f"MEG{i + 1:03d}{suffix}")
            types.append(kind)
            locs.append(site)
    info = mne.create_info(names, sfreq, types)
    with info._unlock():
        for ch, loc in zip(info["chs"], locs):
            ch["loc"][:3] = loc
            ch["coord_frame"] = mne.io.constants.FIFF.FIFFV_COORD_HEAD
    return info


def _positions(info: mne.Info) -> np.ndarray:
    return np.array([ch["loc"][:3] for ch in info["chs"]])


def _pink(rng: np.random.Generator, n_chans: int, n_times: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal((n_chans, n_times)), axis=1)
    freqs = np.arange(spectrum.shape[1], dtype=float)
    freqs[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(freqs), n=n_times, axis=1)
    return x / x.std(axis=1, keepdims=True)


def _narrowband(rng: np.random.Generator, n_times: int, sfreq: float, freq: float, width: float = 2.0) -> np.ndarray:
    """A rhythm with natural amplitude fluctuations: white noise band-limited around ``freq``."""
    spectrum = np.fft.rfft(rng.standard_normal(n_times))
    f = np.fft.rfftfreq(n_times, 1 / sfreq)
    spectrum *= np.exp(-0.5 * ((f - freq) / width) ** 2)
    x = np.fft.irfft(spectrum, n=n_times)
    return x / x.std()


def _envelope(n_times: int, sfreq: float, onsets: np.ndarray, depth: float) -> np.ndarray:
    """1 at rest, ``1 - depth`` during the cue, with 0.3 s ramps (the ERD's time course)."""
    env = np.ones(n_times)
    ramp = int(0.3 * sfreq)
    for onset in onsets:
        a, b = int(onset * sfreq), int((onset + CUE_SECONDS) * sfreq)
        shape = np.ones(b - a)
        shape[:ramp] = np.linspace(0, 1, ramp)
        shape[-ramp:] = np.linspace(1, 0, ramp)
        env[a:b] -= depth * shape[: max(0, min(b, n_times) - a)][: b - a]
    return env


def _mrp(n_times: int, sfreq: float, onsets: np.ndarray) -> np.ndarray:
    """Slow negative movement-related potential building up over the first second of each cue."""
    out = np.zeros(n_times)
    t = np.arange(int(CUE_SECONDS * sfreq)) / sfreq
    wave = -np.sin(np.pi * np.clip(t / 1.5, 0, 1)) * np.exp(-t / 2.0)
    for onset in onsets:
        a = int(onset * sfreq)
        n = min(len(wave), n_times - a)
        out[a : a + n] += wave[:n]
    return out


def _simulate_run(info, rng, subject_rng_state, classes, trials_per_class, snr, session_gain, noise_level):
    sfreq = info["sfreq"]
    srng = np.random.default_rng(subject_rng_state)  # the subject's fixed traits
    pos = _positions(info)
    centre = pos.mean(axis=0)
    radius = np.median(np.linalg.norm(pos - centre, axis=1))
    sources = {}
    for side, sign in (("left", -1), ("right", 1)):
        src = centre + radius * np.array([sign * 0.55, -0.05, 0.75]) + srng.normal(0, 0.06 * radius, 3)
        dist = np.linalg.norm(pos - src, axis=1) / radius
        sources[side] = np.exp(-(dist**2) / (2 * 0.35**2))
    mu_freq = srng.uniform(9.0, 12.0)
    beta_freq = srng.uniform(18.0, 24.0)
    gain = srng.uniform(0.8, 1.25) * session_gain

    cue_list = [c for c in classes for _ in range(trials_per_class)]
    rng.shuffle(cue_list)
    gaps = rng.uniform(1.5, 2.5, len(cue_list))
    onsets = 2.0 + np.cumsum(np.concatenate([[0], (CUE_SECONDS + gaps)[:-1]]))
    duration = onsets[-1] + CUE_SECONDS + 2.0
    n_times = int(duration * sfreq)
    n_chans = len(pos)

    # background: 1/f noise mixed between neighbouring sensors (volume conduction)
    dist = np.linalg.norm(pos[:, None] - pos[None], axis=2) / radius
    mixing = np.exp(-(dist**2) / (2 * 0.3**2))
    mixing /= mixing.sum(axis=1, keepdims=True)
    data = noise_level * (mixing @ _pink(rng, n_chans, n_times))
    data /= data.std()
    depth = float(np.clip(0.35 * snr, 0.0, 0.95))
    motor_side = {"grasp": "left", "open": "right"}
    for side in ("left", "right"):
        cues = np.array([o for o, c in zip(onsets, cue_list) if motor_side.get(c) == side])
        env = _envelope(n_times, sfreq, cues, depth)
        rhythm = 1.5 * _narrowband(rng, n_times, sfreq, mu_freq) + 0.8 * _narrowband(rng, n_times, sfreq, beta_freq)
        slow = 0.8 * snr * _mrp(n_times, sfreq, cues)
        data += np.outer(sources[side], env * rhythm + slow)
    t = np.arange(n_times) / sfreq
    data += 0.3 * np.sin(2 * np.pi * LINE_FREQ * t + rng.uniform(0, 2 * np.pi))
    scale = 10e-6 if "eeg" in info.get_channel_types() else 1e-12
    data *= gain * scale
    annotations = mne.Annotations(onsets, [CUE_SECONDS] * len(onsets), cue_list)
    return data, annotations


def write_synthetic(
    out_dir: str | Path,
    *,
    modality: str = "eeg",
    n_subjects: int = 2,
    n_sessions: int = 1,
    n_runs: int = 3,
    trials_per_class: int = 10,
    classes: Sequence[str] = ("rest", "grasp", "open"),
    sfreq: float | None = None,
    snr: float = 1.0,
    fmt: str = "fif",
    seed: int = 0,
) -> list[Path]:
    """Write ``n_subjects x n_sessions x n_runs`` recordings; returns their paths.

    Files are named ``sub-XX_ses-YY_run-ZZ_raw.fif`` (or ``.edf``) so the default group pattern finds
    subject, session and run. Unknown class names (other than rest/grasp/open) are refused.
    """
    if modality not in ("eeg", "meg"):
        raise ValueError(f"'modality' ({modality!r}) must be 'eeg' or 'meg'.")
    if fmt not in ("fif", "edf"):
        raise ValueError(f"'fmt' ({fmt!r}) must be 'fif' or 'edf'.")
    unknown = [c for c in classes if c not in ("rest", "grasp", "open")]
    if unknown:
        raise ValueError(f"Synthetic classes must be among rest, grasp, open; got {unknown}.")
    for name, value in (("n_subjects", n_subjects), ("n_sessions", n_sessions), ("n_runs", n_runs), ("trials_per_class", trials_per_class)):
        if value < 1:
            raise ValueError(f"'{name}' ({value}) must be at least 1.")
    sfreq = sfreq or (250.0 if modality == "eeg" else 1000.0)
    info = _eeg_info(sfreq) if modality == "eeg" else _meg_info(sfreq)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n_subjects):
        subject_state = seed * 1000 + s
        for ses in range(n_sessions):
            ses_rng = np.random.default_rng([seed, s, ses, 7])
            session_gain, noise_level = ses_rng.uniform(0.85, 1.15), ses_rng.uniform(0.9, 1.1)
            for r in range(n_runs):
                rng = np.random.default_rng([seed, s, ses, r])
                data, annotations = _simulate_run(
                    info, rng, subject_state, classes, trials_per_class, snr, session_gain, noise_level
                )
                raw = mne.io.RawArray(data, info.copy(), verbose="error")
                raw.set_annotations(annotations)
                raw.info["line_freq"] = LINE_FREQ
                stem = f"sub-{s + 1:02d}_ses-{ses + 1:02d}_run-{r + 1:02d}"
                path = out_dir / (f"{stem}_raw.fif" if fmt == "fif" else f"{stem}.edf")
                tmp = path.with_name(".tmp-" + path.name)
                if fmt == "fif":
                    raw.save(tmp, overwrite=True, verbose="error")
                else:
                    mne.export.export_raw(tmp, raw, fmt="edf", overwrite=True, verbose="error")
                tmp.replace(path)
                paths.append(path)
    return paths


def write_example_config(out_dir: str | Path, files: Sequence[str | Path], modality: str = "eeg",
                         test_runs: Sequence[str] | None = None) -> Path:
    """A YAML config whose ``data:`` section reads ``files`` (stored relative to ``out_dir``); ``test_runs``
    (e.g. ``["03"]``) are held out as the test split."""
    out_dir = Path(out_dir).resolve()
    rel = [str(Path(f).resolve().relative_to(out_dir)) if Path(f).resolve().is_relative_to(out_dir) else str(f) for f in files]
    data = {
        "files": rel,
        "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
        "tmin": 0.5,
        "tmax": 2.5,
        "picks": {"types": ["eeg"] if modality == "eeg" else ["meg"]},
        "bandpass": [8.0, 30.0],
        "notch": [],
        "resample": 125.0 if modality == "eeg" else 250.0,
        "split": {"method": "holdout", "by": "run", **({"test": list(test_runs)} if test_runs else {})},
        "cache_dir": ".bmi_cache",
    }
    path = out_dir / "config.yaml"
    header = f"# Synthetic {modality.upper()} hand-movement recordings written by `bmi data synth`.\n"
    path.write_text(header + yaml.safe_dump({"data": data}, sort_keys=False))
    return path
