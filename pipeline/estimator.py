"""The project's decoders as scikit-learn classifiers, so MOABB (or any scikit-learn tool) can evaluate them.

:class:`DecoderClassifier` takes ``X`` of shape ``(n_trials, n_channels, n_times)`` as MOABB's paradigms give it,
standardises each channel with the training trials' mean and standard deviation (as the project's DataModule does),
builds the decoder by name from :mod:`models.registry` and trains it with a short plain loop (Adam, cross-entropy,
mini-batches; no validation split or early stopping, so that MOABB's own folds are the only split).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder


class DecoderClassifier(ClassifierMixin, BaseEstimator):
    """A registered decoder (``models.build(model, ...)``) trained as a scikit-learn classifier.

    Parameters
    ----------
    model : str
        Registered decoder name (``logvar``, ``eegnet``, ``shallow`` ...).
    sfreq : float or None
        Sampling rate of ``X`` in Hz (the decoders size their kernels in seconds); None: the decoder's reference rate.
    max_epochs : int
        Passes over the training trials.
    lr : float
        Adam learning rate.
    batch_size : int
        Trials per step.
    weight_decay : float
        Adam weight decay.
    model_params : dict or None
        Further hyperparameters of the decoder (checked by the registry).
    seed : int
        Seeds the weights and the batch order, so a fit is reproducible.
    """

    def __init__(self, model: str = "logvar", sfreq: float | None = None, max_epochs: int = 50, lr: float = 1e-3,
                 batch_size: int = 32, weight_decay: float = 0.0, model_params: dict[str, Any] | None = None,
                 seed: int = 0):
        self.model = model
        self.sfreq = sfreq
        self.max_epochs = max_epochs
        self.lr = lr
        self.batch_size = batch_size
        self.weight_decay = weight_decay
        self.model_params = model_params
        self.seed = seed

    def _check_X(self, X) -> np.ndarray:
        X = np.asarray(X, dtype=np.float32)
        if X.ndim != 3:
            raise ValueError(f"X has shape {X.shape}; a decoder needs (n_trials, n_channels, n_times).")
        return X

    def fit(self, X, y) -> "DecoderClassifier":
        """Standardise per channel and train the decoder on ``X`` (trials, channels, times) and labels ``y``."""
        import torch

        from models.registry import build

        X = self._check_X(X)
        if self.max_epochs < 1 or self.batch_size < 1:
            raise ValueError(f"'max_epochs' ({self.max_epochs}) and 'batch_size' ({self.batch_size}) must be >= 1.")
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        if len(self.classes_) < 2:
            raise ValueError(f"y holds one class ({self.classes_[0]!r}); a classifier needs at least two.")
        target = torch.as_tensor(self.encoder_.transform(y), dtype=torch.long)
        self.mean_ = X.mean(axis=(0, 2), keepdims=True)[0]
        self.std_ = X.std(axis=(0, 2), keepdims=True)[0] + 1e-12
        data = torch.as_tensor((X - self.mean_) / self.std_)
        torch.manual_seed(self.seed)
        self.module_ = build(self.model, n_chans=X.shape[1], n_times=X.shape[2], n_outputs=len(self.classes_),
                             sfreq=self.sfreq, **(self.model_params or {}))
        optim = torch.optim.Adam(self.module_.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        loss_fn = torch.nn.CrossEntropyLoss()
        generator = torch.Generator().manual_seed(self.seed)
        self.module_.train()
        for _ in range(self.max_epochs):
            order = torch.randperm(len(data), generator=generator)
            for start in range(0, len(data), self.batch_size):
                batch = order[start : start + self.batch_size]
                if len(batch) < 2 and len(data) > 1:
                    continue  # batch norm needs two trials; the next epoch's order sees this one again
                optim.zero_grad()
                loss = loss_fn(self.module_(data[batch]), target[batch])
                loss.backward()
                optim.step()
        self.module_.eval()
        return self

    def predict_proba(self, X) -> np.ndarray:
        """Class probabilities, columns in the order of ``classes_``."""
        import torch

        X = self._check_X(X)
        if X.shape[1:] != (len(self.mean_), self.n_times_):
            raise ValueError(f"X has trials of shape {X.shape[1:]}; this decoder was fitted on "
                             f"{(len(self.mean_), self.n_times_)}.")
        with torch.no_grad():
            logits = self.module_(torch.as_tensor((X - self.mean_) / self.std_))
        return torch.softmax(logits, dim=1).numpy()

    @property
    def n_times_(self) -> int:
        return int(self.module_.n_times)

    def predict(self, X) -> np.ndarray:
        """The most probable class of each trial (labels as ``y`` gave them)."""
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]
