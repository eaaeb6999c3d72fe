"""Which view of the signal separates the training trials: the sensorimotor rhythms' power (mu/beta) or the slow
movement-related fields (below 5 Hz).

Motor decoders read one or both. Trial sets cut around a cue (the BCI competitions' sets, many labs' earlier
studies) often carry a slow pre-movement potential rather than a band-power change: a decoder of mu/beta power is
then near chance on trials that are clearly separable. ``data.bandpass: auto`` lets the training trials choose
the band (and ``model.name: auto`` the decoder that reads it); cut trials trained on the default mu/beta
band are checked anyway, and the run warns when the slow fields separate them clearly better.

The check sees the training and validation trials only, never the test trials. Each view is read with the
project's causal preprocessing (the cache entry a run of that band uses), reduced to its classical feature
(log-variance per channel for the rhythms, mean amplitude in :data:`BIN_SECONDS` bins per channel for the slow
fields) and scored by shrinkage LDA, cross-validated over whole trials. The slow view is chosen when it beats the
rhythms by :data:`MARGIN` and lies above chance (:func:`chance_bound`); otherwise the rhythms stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

#: the views compared, by their ``data.bandpass`` preset (``model.name: auto`` then takes the decoder that reads
#: each: :func:`pipeline.recipe.choose_model`)
VIEWS = ("mu_beta", "slow")
#: how much better (cross-validated balanced accuracy) the slow fields must separate the trials to be chosen
MARGIN = 0.1
#: cross-validation folds (fewer when a class has fewer trials)
FOLDS = 5
#: width of the slow fields' time bins (their feature is the mean amplitude in each bin)
BIN_SECONDS = 0.2


@dataclass
class ViewCheck:
    """The cross-validated balanced accuracy of each view on the training trials, and the view the rule picks.

    Attributes
    ----------
    scores : dict
        View name (``mu_beta``, ``slow``) -> cross-validated balanced accuracy of its classical feature.
    n_trials : int
        Training and validation trials the check saw.
    chance : float
        Balanced accuracy that guessing reaches with 5 % probability on this many trials.
    choice : str
        The view the rule picks: ``slow`` when it beats ``mu_beta`` by :data:`MARGIN` and ``chance``.
    unavailable : dict
        View -> why it could not be read (e.g. the window starts inside its filter transient); not scored.
    """

    scores: dict[str, float]
    n_trials: int
    chance: float
    choice: str
    unavailable: dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        """The scores in words, for the run's notes and warnings."""
        if self.unavailable:
            return "; ".join(f"the {view} view cannot be read: {why}" for view, why in self.unavailable.items())
        return (f"cross-validated on {self.n_trials} training trials: slow fields {self.scores['slow']:.2f}, "
                f"mu/beta power {self.scores['mu_beta']:.2f} (chance up to {self.chance:.2f})")

    def to_dict(self) -> dict[str, Any]:
        """The check as plain JSON values (the run summary's ``view_check``)."""
        return {"scores": {k: round(v, 4) for k, v in self.scores.items()}, "n_trials": self.n_trials,
                "chance": round(self.chance, 4), "choice": self.choice, "margin": MARGIN,
                "unavailable": self.unavailable}


def chance_bound(n_trials: int, n_classes: int, alpha: float = 0.05) -> float:
    """The accuracy that guessing among ``n_classes`` reaches with probability ``alpha`` on ``n_trials`` trials
    (the binomial quantile; Combrisson & Jerbi 2015)."""
    from scipy.stats import binom

    return float(binom.ppf(1 - alpha, n_trials, 1 / n_classes) / max(1, n_trials))


def features(X: np.ndarray, view: str, sfreq: float) -> np.ndarray:
    """The classical feature of ``view`` for windows ``[n, chans, times]``: log-variance per channel (mu/beta)
    or the mean amplitude in :data:`BIN_SECONDS` bins per channel (slow fields), flattened per window."""
    X = np.asarray(X, dtype=np.float64)
    if view == "mu_beta":
        return np.log(X.var(axis=2) + 1e-30)
    if view == "slow":
        n_bins = max(1, min(X.shape[2], int(round(X.shape[2] / sfreq / BIN_SECONDS))))
        bins = np.array_split(np.arange(X.shape[2]), n_bins)
        return np.concatenate([X[:, :, b].mean(axis=2) for b in bins], axis=1)
    raise ValueError(f"unknown view {view!r}; views: {', '.join(VIEWS)}")


def cross_validated(F: np.ndarray, y: np.ndarray, trial: np.ndarray, seed: int) -> float | None:
    """Balanced accuracy of standardised features + shrinkage LDA over folds of whole trials; None when a class
    has fewer than 2 trials."""
    from sklearn.discriminant_analysis import LinearDiscriminantAnalysis
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.model_selection import StratifiedGroupKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    per_class = [len(np.unique(trial[y == c])) for c in np.unique(y)]
    if len(per_class) < 2 or min(per_class) < 2:
        return None
    folds = StratifiedGroupKFold(n_splits=min(FOLDS, min(per_class)), shuffle=True, random_state=seed)
    predicted = np.empty_like(y)
    for train, test in folds.split(F, y, trial):
        model = make_pipeline(StandardScaler(), LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto"))
        predicted[test] = model.fit(F[train], y[train]).predict(F[test])
    return float(balanced_accuracy_score(y, predicted))


def view_data(data, view: str):
    """The data config that reads ``view``'s band (its preset; the slow band decimated unless a rate is set)."""
    return replace(data, bandpass=view)


def check_views(data, config_dir: Path, seed: int, loaded: dict[str, Any] | None = None) -> ViewCheck | None:
    """Score every view on the training and validation trials of ``data``'s split (None when too few trials).

    ``loaded``: view -> its :class:`datasets.epochs.EpochsData` when the caller has read it already."""
    from datasets.epochs import load_epochs
    from datasets.splits import make_split

    scores, n_trials, n_classes = {}, 0, 2
    for view in VIEWS:
        try:
            ep = (loaded or {}).get(view) or load_epochs(replace(view_data(data, view), reject=None), config_dir)
        except ValueError as err:  # e.g. the window starts inside this band's filter transient on cut trials
            if view == "mu_beta":
                raise
            return ViewCheck(scores=scores, n_trials=n_trials, chance=chance_bound(n_trials, n_classes),
                             choice="mu_beta", unavailable={view: str(err)})
        split = make_split(data.split, ep.y, ep.groups, ep.trial, seed=seed)
        idx = np.sort(np.concatenate([split.train, split.val]))
        score = cross_validated(features(ep.X[idx], view, ep.sfreq), ep.y[idx], ep.trial[idx], seed)
        if score is None:
            return None
        scores[view] = score
        n_trials, n_classes = len(np.unique(ep.trial[idx])), len(ep.classes)
    chance = chance_bound(n_trials, n_classes)
    slow = scores["slow"] >= scores["mu_beta"] + MARGIN and scores["slow"] > chance
    return ViewCheck(scores=scores, n_trials=n_trials, chance=chance, choice="slow" if slow else "mu_beta")


def resolve(cfg, config_dir: Path, seed: int) -> tuple[Any, list[str], list[str], ViewCheck | None]:
    """``cfg`` with ``data.bandpass: auto`` replaced by the view the training trials choose, the notes that say so,
    warnings, and the check (None when none ran).

    Cut trials on the default mu/beta band are checked too; the band is kept, with a warning when the slow
    fields separate the training trials clearly better."""
    from datasets.dsp import BAND_PRESETS
    from datasets.epochs import load_epochs
    from datasets.epochs_files import check_sources
    from datasets.reading import list_recordings

    data = cfg.data
    if data.bandpass == "auto":
        check = check_views(data, config_dir, seed)
        view = "mu_beta" if check is None else check.choice
        why = "too few training trials per class to compare views" if check is None else check.describe()
        notes = [f"data.bandpass auto -> {view} {list(BAND_PRESETS[view])}: {why}"]
        return replace(cfg, data=view_data(data, view)), notes, [], check
    if data.preprocessed or data.bandpass is None or tuple(data.bandpass) != BAND_PRESETS["mu_beta"]:
        return cfg, [], [], None
    if data.moabb is not None:  # continuous runs, and listing them reads the whole dataset
        return cfg, [], [], None
    if not check_sources(list_recordings(data, config_dir), data):  # reads no signal
        return cfg, [], [], None  # continuous recordings are checked only when asked (bandpass: auto)
    own = load_epochs(replace(data, reject=None), config_dir)  # the run's band is the mu/beta view: a cache hit later
    check = check_views(data, config_dir, seed, loaded={"mu_beta": own})
    if check is None or check.choice == "mu_beta":
        return cfg, [], [], check
    return cfg, [], [f"these cut trials separate clearly better as slow movement-related fields than as mu/beta "
                     f"power ({check.describe()}): set 'data.bandpass: auto' (or 'slow') to decode the slow fields"], check

