"""Synthetic hand-movement recordings written as real files (FIF, EDF) for the demo and the tests, and the
definition of the simulated brain that the live simulated amplifier (:mod:`datasets.synthetic_stream`,
``bmi amp``) streams from too.

The simulation follows what motor decoders rely on:

* sensors at real positions: the 64-channel BioSemi EEG layout (``biosemi64``), or a 306-channel
  MEG-like array (102 sites x one magnetometer + two gradiometers, on a helmet-shaped sphere; MNE ships
  no Neuromag geometry offline, so positions are built from the Vectorview 2-D layout);
* background: 1/f ("pink") noise mixed across neighbouring sensors, plus 50 Hz line noise;
* a sensorimotor mu (~10 Hz) and beta (~20 Hz) rhythm over each hemisphere;
* cues: ``grasp`` desynchronises the rhythm over the LEFT sensorimotor cortex (a right-hand movement)
  and ``open`` over the RIGHT one, each with a slow movement-related potential over the same side;
  ``rest`` leaves the rhythms intact (:func:`cue_effect` is the one definition of what a cue does);
* variability: per subject (source position, rhythm frequency, gain), per session (gain, noise level and,
  with ``session_shift`` > 0, a displaced cap and per-channel contact gains: what changes between days).

``snr`` scales the depth of desynchronisation and the potential against the background, so the task is
decodable well above chance but not trivially at the default. Annotations carry the cue name.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import mne
import numpy as np
import yaml

from .atomic import atomic_path

CUE_SECONDS = 3.0  # how long a cue's pattern lasts
LINE_FREQ = 50.0
CLASSES = ("rest", "grasp", "open")
#: the hemisphere a cue engages (a right-hand movement -> the left cortex); a class not here changes nothing
MOTOR_SIDE = {"grasp": "left", "open": "right"}
SIDES = ("left", "right")
MU_AMPLITUDE, BETA_AMPLITUDE = 1.5, 0.8  # the rhythms, in units of the background's standard deviation
MRP_AMPLITUDE = 0.8  # the movement-related potential at snr 1
LINE_AMPLITUDE = 0.3
RHYTHM_WIDTH = 2.0  # Hz: the rhythms' spectral width (natural amplitude fluctuations)


def sensor_info(modality: str, sfreq: float) -> mne.Info:
    """The simulated sensors: 64 EEG channels (BioSemi positions) or 306 MEG-like channels."""
    if modality not in ("eeg", "meg"):
        raise ValueError(f"'modality' ({modality!r}) must be 'eeg' or 'meg'.")
    return _eeg_info(sfreq) if modality == "eeg" else _meg_info(sfreq)


def unit_scale(info: mne.Info) -> float:
    """Simulated units -> SI: 10 uV for EEG, 1 pT for MEG."""
    return 10e-6 if "eeg" in info.get_channel_types() else 1e-12


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


# -- the class patterns: what a cue does to the signals (files and the live amplifier alike) ---------------------


def erd_depth(snr: float) -> float:
    """How far a cue lowers the engaged hemisphere's rhythm (0.35 at snr 1)."""
    return float(np.clip(0.35 * snr, 0.0, 0.95))


def erd_shape(sfreq: float) -> np.ndarray:
    """0 -> 1 -> 0 over the cue with 0.3 s ramps: the desynchronisation's time course (times the depth)."""
    n, ramp = int(round(CUE_SECONDS * sfreq)), int(0.3 * sfreq)
    shape = np.ones(n)
    shape[:ramp] = np.linspace(0, 1, ramp)
    shape[-ramp:] = np.linspace(1, 0, ramp)
    return shape


def mrp_wave(sfreq: float) -> np.ndarray:
    """Slow negative movement-related potential building up over the first second of a cue (unit amplitude)."""
    t = np.arange(int(CUE_SECONDS * sfreq)) / sfreq
    return -np.sin(np.pi * np.clip(t / 1.5, 0, 1)) * np.exp(-t / 2.0)


@dataclass
class CueEffect:
    """What one cue does from its onset on: the rhythm of ``side`` is multiplied by ``1 - erd`` and ``mrp`` is
    added to it (both arrays start at the cue's onset)."""

    side: str
    erd: np.ndarray
    mrp: np.ndarray


def cue_effect(label: str, sfreq: float, snr: float) -> CueEffect | None:
    """The pattern of cue ``label``; None for a class that engages neither hemisphere (rest)."""
    side = MOTOR_SIDE.get(label)
    if side is None:
        return None
    return CueEffect(side, erd_depth(snr) * erd_shape(sfreq), (MRP_AMPLITUDE * snr) * mrp_wave(sfreq))


def rhythm_kernel(sfreq: float, freq: float, width: float = RHYTHM_WIDTH) -> np.ndarray:
    """FIR filter that turns white noise into the rhythm :func:`_narrowband` draws (a Gaussian band around
    ``freq``), with unit output standard deviation: the impulse response of that band, cut at 4 sigma."""
    sigma_t = 1.0 / (2 * np.pi * width)
    t = np.arange(-4 * sigma_t, 4 * sigma_t + 1 / sfreq, 1 / sfreq)
    h = np.exp(-0.5 * (t / sigma_t) ** 2) * np.cos(2 * np.pi * freq * t)
    return h / np.sqrt(np.sum(h**2))


# -- a subject in a session ---------------------------------------------------------------------------------------


@dataclass
class Head:
    """The fixed parts of one subject's session: sensor positions, where each hemisphere's motor rhythm
    projects, the background's mixing between sensors, the rhythms' frequencies and the gains."""

    positions: np.ndarray
    radius: float
    sources: dict[str, np.ndarray]  # side -> topography over the channels
    mixing: np.ndarray  # volume conduction of the background, rows sum to 1
    mu_freq: float
    beta_freq: float
    gain: float  # subject x session
    channel_gain: np.ndarray  # per-channel contact gain of the session (1 without a session shift)
    scale: float  # simulated units -> SI

    @classmethod
    def build(cls, info: mne.Info, subject_state: int, session_gain: float, session_shift: float = 0.0,
              shift_rng: np.random.Generator | None = None) -> "Head":
        """A simulated head for ``info``'s sensors: the subject's fixed traits from ``subject_state``, the session's
        gain, and with ``session_shift`` the cap moved and each contact's gain changed (drawn from ``shift_rng``)."""
        srng = np.random.default_rng(subject_state)  # the subject's fixed traits
        pos = _positions(info)
        centre = pos.mean(axis=0)
        radius = float(np.median(np.linalg.norm(pos - centre, axis=1)))
        shift_rng = shift_rng if shift_rng is not None else np.random.default_rng(0)
        cap = session_shift * shift_rng.normal(0, 0.12 * radius, 3)  # the cap sits a little elsewhere each day
        sources = {}
        for side, sign in (("left", -1), ("right", 1)):
            src = centre + radius * np.array([sign * 0.55, -0.05, 0.75]) + srng.normal(0, 0.06 * radius, 3) + cap
            dist = np.linalg.norm(pos - src, axis=1) / radius
            sources[side] = np.exp(-(dist**2) / (2 * 0.35**2))
        mu_freq = srng.uniform(9.0, 12.0)
        beta_freq = srng.uniform(18.0, 24.0)
        gain = srng.uniform(0.8, 1.25) * session_gain
        channel_gain = np.exp(session_shift * shift_rng.normal(0, 0.2, len(pos)))  # electrode contact
        dist = np.linalg.norm(pos[:, None] - pos[None], axis=2) / radius
        mixing = np.exp(-(dist**2) / (2 * 0.3**2))
        mixing /= mixing.sum(axis=1, keepdims=True)
        return cls(pos, radius, sources, mixing, mu_freq, beta_freq, gain, channel_gain, unit_scale(info))


def session_traits(seed: int, subject: int, session: int) -> tuple[float, float]:
    """(gain, noise level) of a session; ``subject`` and ``session`` count from 0."""
    ses_rng = np.random.default_rng([seed, subject, session, 7])
    return ses_rng.uniform(0.85, 1.15), ses_rng.uniform(0.9, 1.1)


def session_head(info: mne.Info, seed: int, subject: int, session: int, session_shift: float = 0.0) -> Head:
    """The head of subject ``subject`` in session ``session`` (both from 0) of the recordings seeded ``seed``."""
    session_gain, _ = session_traits(seed, subject, session)
    return Head.build(info, seed * 1000 + subject, session_gain, session_shift,
                      np.random.default_rng([seed, subject, session, 8]))


# -- recordings as files --------------------------------------------------------------------------------------------


def _pink(rng: np.random.Generator, n_chans: int, n_times: int) -> np.ndarray:
    spectrum = np.fft.rfft(rng.standard_normal((n_chans, n_times)), axis=1)
    freqs = np.arange(spectrum.shape[1], dtype=float)
    freqs[0] = 1.0
    x = np.fft.irfft(spectrum / np.sqrt(freqs), n=n_times, axis=1)
    return x / x.std(axis=1, keepdims=True)


def _narrowband(rng: np.random.Generator, n_times: int, sfreq: float, freq: float, width: float = RHYTHM_WIDTH) -> np.ndarray:
    """A rhythm with natural amplitude fluctuations: white noise band-limited around ``freq``."""
    spectrum = np.fft.rfft(rng.standard_normal(n_times))
    f = np.fft.rfftfreq(n_times, 1 / sfreq)
    spectrum *= np.exp(-0.5 * ((f - freq) / width) ** 2)
    x = np.fft.irfft(spectrum, n=n_times)
    return x / x.std()


def _place(n_times: int, sfreq: float, onsets, pattern: np.ndarray) -> np.ndarray:
    """``pattern`` added at every onset (s), cut at the end of the recording."""
    out = np.zeros(n_times)
    for onset in onsets:
        a = int(onset * sfreq)
        n = max(0, min(len(pattern), n_times - a))
        out[a : a + n] += pattern[:n]
    return out


def _simulate_run(info, rng, head: Head, classes, trials_per_class, snr, noise_level):
    sfreq = info["sfreq"]
    cue_list = [c for c in classes for _ in range(trials_per_class)]
    rng.shuffle(cue_list)
    gaps = rng.uniform(1.5, 2.5, len(cue_list))
    onsets = 2.0 + np.cumsum(np.concatenate([[0], (CUE_SECONDS + gaps)[:-1]]))
    duration = onsets[-1] + CUE_SECONDS + 2.0
    n_times = int(duration * sfreq)
    n_chans = len(head.positions)

    # background: 1/f noise mixed between neighbouring sensors (volume conduction)
    data = noise_level * (head.mixing @ _pink(rng, n_chans, n_times))
    data /= data.std()
    for side in SIDES:
        effects = [(o, e) for o, c in zip(onsets, cue_list) if (e := cue_effect(c, sfreq, snr)) is not None and e.side == side]
        env = 1.0 - sum((_place(n_times, sfreq, [o], e.erd) for o, e in effects), np.zeros(n_times))
        rhythm = MU_AMPLITUDE * _narrowband(rng, n_times, sfreq, head.mu_freq) + BETA_AMPLITUDE * _narrowband(rng, n_times, sfreq, head.beta_freq)
        slow = sum((_place(n_times, sfreq, [o], e.mrp) for o, e in effects), np.zeros(n_times))
        data += np.outer(head.sources[side], env * rhythm + slow)
    t = np.arange(n_times) / sfreq
    data += LINE_AMPLITUDE * np.sin(2 * np.pi * LINE_FREQ * t + rng.uniform(0, 2 * np.pi))
    data *= head.channel_gain[:, None]
    data *= head.gain * head.scale
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
    session_shift: float = 0.0,
) -> list[Path]:
    """Write ``n_subjects x n_sessions x n_runs`` recordings; returns their paths.

    Files are named ``sub-XX_ses-YY_run-ZZ_raw.fif`` (or ``.edf``) so the default group pattern finds
    subject, session and run. Unknown class names (other than rest/grasp/open) are refused.
    ``session_shift`` (0: off) moves the cap and changes each channel's contact gain from session to session
    (1: about a centimetre and 20 % per channel at EEG scale), what Euclidean re-alignment is for.
    """
    if modality not in ("eeg", "meg"):
        raise ValueError(f"'modality' ({modality!r}) must be 'eeg' or 'meg'.")
    if fmt not in ("fif", "edf"):
        raise ValueError(f"'fmt' ({fmt!r}) must be 'fif' or 'edf'.")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise ValueError(f"Synthetic classes must be among rest, grasp, open; got {unknown}.")
    for name, value in (("n_subjects", n_subjects), ("n_sessions", n_sessions), ("n_runs", n_runs), ("trials_per_class", trials_per_class)):
        if value < 1:
            raise ValueError(f"'{name}' ({value}) must be at least 1.")
    if session_shift < 0:
        raise ValueError(f"'session_shift' ({session_shift}) must be >= 0 (0: sessions differ only in gain and noise).")
    sfreq = sfreq or (250.0 if modality == "eeg" else 1000.0)
    info = _eeg_info(sfreq) if modality == "eeg" else _meg_info(sfreq)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for s in range(n_subjects):
        for ses in range(n_sessions):
            _, noise_level = session_traits(seed, s, ses)
            head = session_head(info, seed, s, ses, session_shift)
            for r in range(n_runs):
                rng = np.random.default_rng([seed, s, ses, r])
                data, annotations = _simulate_run(info, rng, head, classes, trials_per_class, snr, noise_level)
                raw = mne.io.RawArray(data, info.copy(), verbose="error")
                raw.set_annotations(annotations)
                raw.info["line_freq"] = LINE_FREQ
                stem = f"sub-{s + 1:02d}_ses-{ses + 1:02d}_run-{r + 1:02d}"
                path = out_dir / (f"{stem}_raw.fif" if fmt == "fif" else f"{stem}.edf")
                with atomic_path(path, suffix="_raw.fif" if fmt == "fif" else ".edf") as tmp:
                    if fmt == "fif":
                        raw.save(tmp, overwrite=True, verbose="error")
                    else:
                        mne.export.export_raw(tmp, raw, fmt="edf", overwrite=True, verbose="error")
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
