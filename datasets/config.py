"""The typed ``data:`` section of an experiment config.

Paths in ``files`` are relative to the config file's folder (``config_dir``) unless absolute; globs
are allowed. Validation of single fields happens here; checks that need the recordings (channels,
events, window inside the recording) happen when they are read.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

from .typed import ConfigError, from_mapping, load_yaml

ROIS = ("left_sensorimotor", "right_sensorimotor", "sensorimotor")


@dataclass
class PicksConfig:
    """Which channels feed the decoder: by type, by name, and/or by region of interest.

    ``roi`` selects sensors from the montage's positions: ``left_sensorimotor`` /
    ``right_sensorimotor`` (one hemisphere, as the reference studies trained on) or ``sensorimotor``
    (both). Filters combine: type first, then names, then ROI.
    """

    types: list[str] | None = None
    names: list[str] | None = None
    roi: str | None = None
    exclude: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.roi is not None and self.roi not in ROIS:
            raise ConfigError(f"'picks.roi' ({self.roi!r}) must be one of {', '.join(ROIS)}.")


@dataclass
class BidsConfig:
    """A BIDS dataset read through mne-bids (optional extra ``bids``)."""

    root: str
    task: str | None = None
    subjects: list[str] | None = None
    sessions: list[str] | None = None
    runs: list[str] | None = None
    datatype: str = "eeg"


@dataclass
class XdfConfig:
    """Which streams of an LSL recording (``.xdf``) are read (:mod:`datasets.xdf`).

    ``stream``: the signal stream's name or type (default: the one EEG / MEG / ECoG / sEEG stream with a nominal
    rate); ``markers``: the marker stream's name or type (default: the one irregular stream, if any);
    ``durations``: seconds of each marker's annotation by label (LSL markers have none: 0 otherwise).
    """

    stream: str | None = None
    markers: str | None = None
    durations: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for key in ("stream", "markers"):
            if getattr(self, key) is not None and not str(getattr(self, key)).strip():
                raise ConfigError(f"'xdf.{key}' ({getattr(self, key)!r}) must be a stream's name or type, or null.")
        bad = {k: v for k, v in self.durations.items() if not v >= 0}
        if bad:
            raise ConfigError(f"'xdf.durations' ({bad}) must be seconds >= 0 per marker label.")


@dataclass
class MoabbConfig:
    """A MOABB dataset's continuous runs (:mod:`datasets.moabb_source`); subject / session / run are the groups.

    ``dataset`` is a class name in ``moabb.datasets`` (``BNCI2014_001``, ``PhysionetMI``, ``FakeDataset`` ...),
    ``options`` its constructor's keyword arguments. ``subjects`` / ``sessions`` / ``runs`` keep only those (all
    when null). ``download: false`` (the default) refuses a dataset that is not on disk instead of downloading it.
    ``module``: a Python module to import first, where a lab's own dataset class (a MOABB ``BaseDataset``
    subclass) is defined, so that ``dataset`` can name it.
    """

    dataset: str
    subjects: list[int] | None = None
    sessions: list[str] | None = None
    runs: list[str] | None = None
    options: dict[str, Any] = field(default_factory=dict)
    download: bool = False
    module: str | None = None


@dataclass
class SplitConfig:
    """How epochs are split, always by whole groups so nothing leaks. ``method`` is one of:

    * ``holdout``: ``test`` (and optional ``val``) name the held-out values of ``by`` (e.g. runs ``["11"]``); when
      ``test`` is empty the last group (sorted) is the test set. When ``val`` is empty, validation is
      ``val_fraction`` of the training *trials*, stratified by class (whole trials, never windows of one trial on
      both sides).
    * ``kfold``: grouped k-fold over ``by`` with ``n_folds``; ``fold`` picks the test fold.
    * ``loso``: leave-one-subject-out; ``fold`` indexes the sorted subjects.
    """

    method: Literal["holdout", "kfold", "loso"] = "holdout"
    by: Literal["run", "session", "subject"] = "run"
    test: list[str] = field(default_factory=list)
    val: list[str] = field(default_factory=list)
    val_fraction: float = 0.2
    n_folds: int = 5
    fold: int = 0
    min_per_class: int = 2

    def __post_init__(self) -> None:
        if not 0.0 < self.val_fraction < 1.0:
            raise ConfigError(f"'split.val_fraction' ({self.val_fraction}) must be between 0 and 1.")
        if self.n_folds < 2:
            raise ConfigError(f"'split.n_folds' ({self.n_folds}) must be at least 2.")
        if self.fold < 0:
            raise ConfigError(f"'split.fold' ({self.fold}) must be >= 0.")


@dataclass
class CropConfig:
    """Cropped training: random sub-windows of ``seconds`` from each training epoch (augmentation); every
    training window is seen ``crops_per_epoch`` times per epoch, each time at another random offset."""

    seconds: float
    crops_per_epoch: int = 4

    def __post_init__(self) -> None:
        if self.crops_per_epoch < 1:
            raise ConfigError(f"'crop.crops_per_epoch' ({self.crops_per_epoch}) must be at least 1.")


@dataclass
class ReleaseConfig:
    """Windows of letting go (``data.release``): after each movement cue (a cue of any class but ``label``), one
    more window, labelled ``label``, that ends ``after_s`` after the cue ends (its annotation's duration). Trained
    on the cues alone, a decoder has seen only windows wholly inside a movement or wholly at rest, so after a
    movement it goes on commanding it until nearly all of its window is rest; these windows teach it that a window
    whose newest ``after_s`` are rest is rest. Use more than half the window: less labels mostly-movement windows
    rest. A window that would reach the next movement cue's onset is dropped."""

    after_s: float
    label: str = "rest"

    def __post_init__(self) -> None:
        if self.after_s <= 0:
            raise ConfigError(f"'release.after_s' ({self.after_s}) must be positive: seconds after a movement cue ends.")


@dataclass
class AugmentConfig:
    """The ``augment:`` section (applied by :class:`datasets.augment.BatchAugment`). A null (or 0) value turns a transform off.

    ``probability`` is the share of windows each transform touches. ``time_shift`` is the largest shift in
    seconds (the window moves by up to that much, zero-filled); ``channel_dropout`` the probability that a
    channel is zeroed; ``noise`` the standard deviation of added Gaussian noise (the data are standardised, so
    in units of a channel's standard deviation); ``scale`` the largest relative amplitude change (0.2: x0.8 to
    x1.2 per window); ``frequency_shift`` the largest shift of every frequency in Hz; ``ft_surrogate`` the
    largest random phase (in units of pi, 1 = fully random phases); ``mixup`` the Beta(a, a) parameter.
    ``decoder_default``: when no transform is set, the decoder's own default augmentation applies (its class's
    ``default_augment``; the log-variance network's comes from the accuracy benchmark); false turns it off.
    """

    probability: float = 0.5
    decoder_default: bool = True
    time_shift: float | None = None
    channel_dropout: float | None = None
    noise: float | None = None
    scale: float | None = None
    frequency_shift: float | None = None
    ft_surrogate: float | None = None
    mixup: float | None = None

    def __post_init__(self) -> None:
        if not 0 < self.probability <= 1:
            raise ConfigError(f"'augment.probability' ({self.probability}) must be in (0, 1].")
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name not in ("probability", "decoder_default") and value is not None and value < 0:
                raise ConfigError(f"'augment.{f.name}' ({value}) must be >= 0 or null (off).")
        if self.channel_dropout is not None and self.channel_dropout >= 1:
            raise ConfigError(f"'augment.channel_dropout' ({self.channel_dropout}) must be below 1.")
        if self.scale is not None and self.scale >= 1:
            raise ConfigError(f"'augment.scale' ({self.scale}) must be below 1 (a relative amplitude change).")
        if self.ft_surrogate is not None and self.ft_surrogate > 1:
            raise ConfigError(f"'augment.ft_surrogate' ({self.ft_surrogate}) must be in [0, 1].")

    @property
    def enabled(self) -> list[str]:
        return [f.name for f in fields(self) if f.name not in ("probability", "decoder_default") and getattr(self, f.name)]


@dataclass
class DataConfig:
    """Everything from recording files to normalised training windows."""

    files: list[str] = field(default_factory=list)
    bids: BidsConfig | None = None
    moabb: MoabbConfig | None = None
    xdf: XdfConfig = field(default_factory=XdfConfig)  # which streams of .xdf files
    events: dict[str, str] = field(default_factory=dict)
    stim_channel: str | None = None
    tmin: float = 0.0
    tmax: float = 1.0
    picks: PicksConfig = field(default_factory=PicksConfig)
    montage: str | None = None
    rename: Literal["eegbci"] | None = None
    reference: Any = None
    notch: list[float] = field(default_factory=list)
    bandpass: list[float | None] | str | None = field(  # [low, high] Hz (a null edge: low- or high-pass),
        default_factory=lambda: [8.0, 30.0])  # a preset (mu_beta, slow), or auto (the training trials choose)
    filter_order: int = 4
    phase: Literal["causal", "zero"] = "causal"
    preprocessed: bool = False  # cut trials (-epo.fif, epoched .set) already filtered: skip the project's filters
    resample: float | Literal["auto"] | None = None
    reject: float | None = None
    group_pattern: str | None = None
    split: SplitConfig = field(default_factory=SplitConfig)
    normalize: Literal["standardize", "none"] = "standardize"
    euclidean_alignment: bool = False
    alignment_calibration: int = 10  # epochs (unlabelled) that align a subject with no training data
    crop: CropConfig | None = None
    release: ReleaseConfig | None = None
    batch_size: int | Literal["auto"] = "auto"
    cache_dir: str = ".bmi_cache"

    def __post_init__(self) -> None:
        if not self.files and self.bids is None and self.moabb is None:
            raise ConfigError("'data.files' is empty: give recording paths or globs (or a 'data.bids' or "
                              "'data.moabb' section).")
        if not self.events:
            raise ConfigError("'data.events' is empty: map event names or codes to class names, e.g. {T1: left, T2: right}.")
        if self.tmax <= self.tmin:
            raise ConfigError(f"'tmax' ({self.tmax}) must be greater than 'tmin' ({self.tmin}).")
        if isinstance(self.bandpass, str) and self.bandpass != "auto":  # a named band, resolved here
            from .dsp import BAND_PRESETS

            if self.bandpass not in BAND_PRESETS:
                raise ConfigError(f"'bandpass' ({self.bandpass!r}) must be [low, high] in Hz, a preset "
                                  f"({', '.join(BAND_PRESETS)}) or auto (the training trials choose).")
            if self.bandpass == "slow" and self.resample is None:
                self.resample = "auto"  # slow fields need few samples: decimate (datasets.dsp.auto_rate)
            self.bandpass = list(BAND_PRESETS[self.bandpass])
        if self.bandpass == "auto":  # chosen on the training trials by bmi train (pipeline.views)
            if self.preprocessed:
                raise ConfigError("'bandpass' auto chooses the project's filters, which 'preprocessed: true' skips: "
                                  "drop one of them.")
        elif self.bandpass is not None and len(self.bandpass) != 2:
            raise ConfigError(f"'bandpass' ({self.bandpass}) must be [low, high] in Hz (either may be null).")
        if self.bandpass not in (None, "auto"):  # the Nyquist limit needs the recording's rate: checked when read
            low, high = self.bandpass
            for edge, value in (("low", low), ("high", high)):
                if value is not None and value <= 0:
                    raise ConfigError(f"'bandpass' {edge} edge ({value} Hz) must be positive (or null).")
            if low is not None and high is not None and low >= high:
                raise ConfigError(f"'bandpass' low edge ({low} Hz) must be below the high edge ({high} Hz).")
        if any(f <= 0 for f in self.notch):
            raise ConfigError(f"'notch' ({self.notch}) must list positive frequencies in Hz.")
        if self.filter_order < 1:
            raise ConfigError(f"'filter_order' ({self.filter_order}) must be at least 1.")
        if self.resample == "auto" and (self.bandpass is None or self.bandpass != "auto" and self.bandpass[1] is None):
            raise ConfigError("'resample' (auto) needs a 'bandpass' high edge to choose a rate from.")
        if self.resample not in (None, "auto") and self.resample <= 0:
            raise ConfigError(f"'resample' ({self.resample}) must be a positive rate in Hz, 'auto' or null.")
        if self.batch_size != "auto" and self.batch_size < 1:
            raise ConfigError(f"'batch_size' ({self.batch_size}) must be >= 1 or 'auto'.")
        if self.reference not in (None, "average") and not isinstance(self.reference, list):
            raise ConfigError(f"'reference' ({self.reference!r}) must be null, 'average' or a list of channel names.")
        if self.alignment_calibration < 1:
            raise ConfigError(f"'alignment_calibration' ({self.alignment_calibration}) must be at least 1 epoch.")
        if self.reject is not None and self.reject <= 0:
            raise ConfigError(f"'reject' ({self.reject}) must be a positive peak-to-peak amplitude.")
        if self.crop is not None and not 0 < self.crop.seconds <= self.tmax - self.tmin:
            raise ConfigError(
                f"'crop.seconds' ({self.crop.seconds}) must be positive and at most the window ({self.tmax - self.tmin} s)."
            )

        if self.release is not None:
            if self.release.label not in self.class_names:
                raise ConfigError(f"'release.label' ({self.release.label!r}) must be one of the classes "
                                  f"{self.class_names}: the class of the windows after a movement (rest).")
            if self.stim_channel:
                raise ConfigError("'release' needs each cue's duration, which annotations give and a stim channel "
                                  f"({self.stim_channel!r}) does not: use annotations or drop 'release'.")

    @property
    def class_names(self) -> list[str]:
        """Class names in output order: first appearance in ``events``."""
        return list(dict.fromkeys(self.events.values()))


def load_data_config(path: str | Path) -> tuple[DataConfig, Path]:
    """Read the ``data:`` section of a YAML config; returns it with the folder paths are relative to."""
    path = Path(path)
    raw = load_yaml(path)
    section = raw.get("data", raw) if isinstance(raw, dict) else raw
    return from_mapping(DataConfig, section, "data"), path.parent.resolve()
