"""``EpochsDataModule``: cached epochs -> leakage-free splits -> normalised tensors -> fast batches.

File I/O happens in ``prepare_data`` (through the epochs cache), splits and normalisation in
``setup``. The normalised splits live in tensors and batches are taken by indexing them with whole
index vectors (no per-sample ``__getitem__``); Lightning moves each batch to the accelerator.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Sampler

from .config import DataConfig
from .data_info import DataInfo
from .epochs import EpochsData, load_epochs
from .events import missing_events_message
from .dsp import alignment_matrix
from .normalization import apply_by_subject, fit_normalization, take_calibration
from .splits import make_split, n_splits


def auto_batch_size(n_train: int) -> int:
    """About eight optimiser steps per epoch, between 8 and 64 windows a batch: a calibration session of a few
    dozen trials gets batches of 8 (not one step per epoch), a large data set batches of 64."""
    return int(min(64, max(8, n_train // 8)))


class BatchIndexSampler(Sampler[torch.Tensor]):
    """Yields index tensors of whole batches; shuffled per epoch with a seeded generator; shards under DDP."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, seed: int, pad: bool | None = None):
        self.n, self.batch_size, self.shuffle, self.seed = n, batch_size, shuffle, seed
        # training pads each rank's share (wrapping) so DDP ranks step together; evaluation never pads, so every
        # validation / test window is counted exactly once across the ranks
        self.pad = shuffle if pad is None else pad
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Lightning calls this each epoch: the order depends on (seed, epoch), so a resumed run and every
        DDP rank shuffle exactly as an uninterrupted run would."""
        self.epoch = epoch

    def _shard(self) -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __iter__(self) -> Iterator[torch.Tensor]:
        if self.shuffle:
            gen = torch.Generator().manual_seed(self.seed + self.epoch)
            order = torch.randperm(self.n, generator=gen)
            self.epoch += 1  # used when iterated outside Lightning; Lightning sets it with set_epoch
        else:
            order = torch.arange(self.n)
        rank, world = self._shard()
        if world > 1 and self.pad:  # equal share per rank (pad by wrapping) so DDP ranks step together
            per_rank = -(-self.n // world)
            order = torch.cat([order, order[: per_rank * world - self.n]])[rank::world]
        elif world > 1:
            order = order[rank::world]
        yield from torch.split(order, self.batch_size)

    def __len__(self) -> int:
        rank, world = self._shard()
        share = -(-self.n // world) if self.pad else len(range(rank, self.n, world))
        return -(-share // self.batch_size)


class TensorBatches(torch.utils.data.Dataset):
    """Indexed by a whole batch of indices at once; optional random crops (training augmentation).

    Indices wrap around (``i % len``), so a sampler over ``k x len`` indices visits every window ``k`` times.
    """

    def __init__(self, X: torch.Tensor, y: torch.Tensor, crop: int | None = None, seed: int = 0):
        self.X, self.y, self.crop = X, y, crop
        self._gen = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        idx = idx % len(self.y)
        x = self.X[idx]
        if self.crop is not None and self.crop < x.shape[-1]:
            offsets = torch.randint(0, x.shape[-1] - self.crop + 1, (len(idx),), generator=self._gen)
            window = offsets[:, None] + torch.arange(self.crop)[None, :]
            x = torch.gather(x, 2, window[:, None, :].expand(-1, x.shape[1], -1))
        return x, self.y[idx]


class EpochsDataModule(pl.LightningDataModule):
    """Lightning DataModule over cached, preprocessed epochs.

    Parameters
    ----------
    cfg : DataConfig
        The ``data:`` section.
    config_dir : path
        Folder that relative paths in ``cfg`` are relative to.
    seed : int
        Seeds shuffling, validation trial selection and crops.
    normalization : dict or None
        Use these statistics instead of fitting them (evaluating a trained run on other recordings).
    eval_only : bool
        Every epoch goes to the test split (with ``normalization`` from the trained run).
    train_on_val : bool
        The validation trials join the training split (and its normalisation statistics): the refit after a
        first fit (``trainer.refit``). The validation split stays the same trials, for the record only.
    """

    def __init__(
        self,
        cfg: DataConfig,
        config_dir: str | Path | None = None,
        *,
        seed: int = 0,
        normalization: dict[str, Any] | None = None,
        eval_only: bool = False,
        train_on_val: bool = False,
        num_workers: int = 0,
    ):
        super().__init__()
        self.cfg = cfg
        self.config_dir = Path(config_dir or ".").resolve()
        self.seed = seed
        self.normalization = normalization
        self.eval_only = eval_only
        self.train_on_val = train_on_val
        self.num_workers = num_workers
        self.epochs: EpochsData | None = None
        self._tensors: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.split_summary: dict[str, Any] = {}
        self.test_kept: np.ndarray | None = None  # with 'reject': the test epochs rejection would keep
        self.rejected: dict[str, int] | None = None  # with 'reject': epochs over the threshold per split

    # -- I/O --------------------------------------------------------------------------------------------
    @property
    def _load_cfg(self) -> DataConfig:
        # 'reject' acts here, not in the cache: every epoch is read, so the test split keeps its hard epochs
        return replace(self.cfg, reject=None)

    def prepare_data(self) -> None:
        load_epochs(self._load_cfg, self.config_dir)  # builds the cache once (rank 0 under DDP)

    def _ensure_epochs(self) -> EpochsData:
        if self.epochs is None:
            self.epochs = load_epochs(self._load_cfg, self.config_dir)
        return self.epochs

    def _apply_reject(self, ep: EpochsData, parts: dict[str, np.ndarray]) -> None:
        """Peak-to-peak rejection drops artefacts from training and validation only; the test split keeps every
        epoch (a live session cannot skip hard trials) and ``test_kept`` marks the ones rejection would keep, so
        a run reports its test score on both. Updates ``parts`` in place."""
        self.test_kept = None
        if self.cfg.reject is None:
            return
        counts = {}
        for name in ("train", "val", "test"):
            idx = parts[name]
            ptp = np.array([np.ptp(np.asarray(ep.X[i]), axis=1).max() for i in idx]) if len(idx) else np.zeros(0)
            keep = ptp <= self.cfg.reject
            counts[name] = int((~keep).sum())
            if name == "test":
                self.test_kept = keep
            else:
                parts[name] = idx[keep]
        if len(parts["train"]) == 0:
            raise ValueError(f"'reject' ({self.cfg.reject}) drops every training epoch; raise it or remove it.")
        self.rejected = counts

    # -- splits + normalisation -----------------------------------------------------------------------
    def setup(self, stage: str | None = None) -> None:
        if self._tensors:
            return
        ep = self._ensure_epochs()
        if ep.missing_events(self.cfg.events):  # a class (or an alias of one) with no trials: refuse, say why
            raise ValueError(missing_events_message(ep.event_counts, self.cfg.events, len(ep.files)))
        subjects = ep.groups["subject"]
        if self.eval_only:
            idx = np.arange(len(ep.y))
            parts = {"train": idx[:0], "val": idx[:0], "test": idx}
        else:
            split = make_split(self.cfg.split, ep.y, ep.groups, ep.trial, seed=self.seed)
            parts = {"train": split.train, "val": split.val, "test": split.test}
        release_in_test = self._leave_release_out_of_test(ep, parts)
        calibration = self._take_alignment_calibration(subjects, parts)
        self._apply_reject(ep, parts)
        if self.train_on_val:
            parts["train"] = np.sort(np.concatenate([parts["train"], parts["val"]]))
        self.split_summary = {k: self._describe(v) for k, v in parts.items() if not (self.eval_only and k != "test")}
        if self.rejected is not None:
            self.split_summary["rejected"] = {**self.rejected, "threshold": self.cfg.reject,
                                              "note": "train/val epochs over the threshold dropped; test keeps all"}
        if release_in_test:
            self.split_summary["test_release_left_out"] = release_in_test
        if calibration:
            self.split_summary["alignment_calibration"] = {s: int(len(i)) for s, i in calibration.items()}
        if not self.eval_only:
            self.split_summary["test_groups"] = split.test_groups
            self.split_summary["test_files"] = sorted({ep.files[i] for i in ep.file_index[parts["test"]]})
        if self.normalization is None:
            self.normalization = fit_normalization(
                ep.X, subjects, parts["train"], self.cfg.normalize, self.cfg.euclidean_alignment, calibration
            )
        elif calibration:  # new subjects (another day's recordings) aligned on their own calibration epochs
            alignment = dict(self.normalization["alignment"])
            alignment.update({s: alignment_matrix(ep.X[np.sort(i)]).tolist() for s, i in calibration.items()})
            self.normalization = {**self.normalization, "alignment": alignment}
        for name, idx in parts.items():
            X = apply_by_subject(np.asarray(ep.X[idx]), subjects[idx], self.normalization)
            self._tensors[name] = (torch.from_numpy(np.ascontiguousarray(X)), torch.from_numpy(ep.y[idx]))

    @staticmethod
    def _leave_release_out_of_test(ep: EpochsData, parts: dict[str, np.ndarray]) -> int:
        """The test split scores the cues' own windows only, so runs trained with and without ``data.release``
        are scored on the same windows (training and validation keep the windows of letting go). Returns how many
        were left out; updates ``parts`` in place."""
        if ep.release is None or not ep.release.any():
            return 0
        test = parts["test"]
        parts["test"] = test[~ep.release[test]]
        return int(len(test) - len(parts["test"]))

    def _take_alignment_calibration(self, subjects: np.ndarray, parts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """With Euclidean alignment, a subject with no training epochs (a held-out subject, another day's new
        subject) is aligned on its first ``alignment_calibration`` epochs, used unlabelled and taken out of
        validation and test, never on the epochs it is scored on. Updates ``parts`` in place."""
        if self.normalization is not None:
            alignment = self.normalization.get("alignment")
            if not alignment:
                return {}
            known = set(alignment)
        elif self.cfg.euclidean_alignment:
            known = {str(s) for s in np.unique(subjects[parts["train"]])}
        else:
            return {}
        held = {k: parts[k] for k in ("val", "test")}
        calibration, held = take_calibration(subjects, known, held, self.cfg.alignment_calibration)
        parts.update(held)
        return calibration

    def _describe(self, idx: np.ndarray) -> dict[str, Any]:
        ep = self.epochs
        return {
            "n_epochs": int(len(idx)),
            "per_class": {c: int((ep.y[idx] == i).sum()) for i, c in enumerate(ep.classes)},
            "groups": {k: sorted(set(v[idx].tolist())) for k, v in ep.groups.items()},
        }

    def n_splits(self) -> int:
        return n_splits(self.cfg.split, self._ensure_epochs().groups)

    @property
    def batch_size(self) -> int:
        """``data.batch_size``, or with ``auto`` one chosen from the training-set size (:func:`auto_batch_size`)."""
        if self.cfg.batch_size != "auto":
            return int(self.cfg.batch_size)
        self.setup()
        return auto_batch_size(len(self._tensors["train"][1]))

    # -- what the model and the exporter need --------------------------------------------------------
    @property
    def crop_samples(self) -> int | None:
        if self.cfg.crop is None:
            return None
        return int(round(self.cfg.crop.seconds * self._ensure_epochs().sfreq))

    @property
    def n_chans(self) -> int:
        return self._ensure_epochs().X.shape[1]

    @property
    def n_times(self) -> int:
        """The decoder's input length: the crop length with cropped training, else the epoch length."""
        return self.crop_samples or self._ensure_epochs().n_times

    @property
    def sfreq(self) -> float:
        return self._ensure_epochs().sfreq

    @property
    def classes(self) -> list[str]:
        return list(self._ensure_epochs().classes)

    @property
    def ch_names(self) -> list[str]:
        return list(self._ensure_epochs().ch_names)

    @property
    def ch_types(self) -> list[str]:
        return list(self._ensure_epochs().ch_types)

    @property
    def spec(self):
        return self._ensure_epochs().spec

    @property
    def data_hash(self) -> str:
        return self._ensure_epochs().data_hash

    @property
    def window_tmin(self) -> float:
        """Start of the decoder's window relative to the cue (the last crop with cropped training)."""
        return self.cfg.tmax - self.n_times / self.sfreq

    def data_info(self) -> dict[str, Any]:
        """What a run records about its data, for evaluation and export (:class:`datasets.data_info.DataInfo`,
        checked, in its JSON form)."""
        return DataInfo.from_dict({
            "classes": self.classes,
            "ch_names": self.ch_names,
            "ch_types": self.ch_types,
            "ch_pos": self._ensure_epochs().ch_pos,
            "sfreq": self.sfreq,
            "n_times": self.n_times,
            "tmin": self.window_tmin,
            "tmax": self.cfg.tmax,
            "preprocessing": self.spec.to_dict(),
            "normalization": self.normalization,
            "data_hash": self.data_hash,
            "split_summary": self.split_summary,
            "files": list(self._ensure_epochs().files),
            "source": self._ensure_epochs().source,  # recordings, or cut trials and where their filters started
        }, "data module").to_dict()

    def arrays(self, stage: str) -> tuple[np.ndarray, np.ndarray]:
        """Normalised windows and labels of a split as numpy (val/test: the window ending at ``tmax``)."""
        self.setup()
        X, y = self._tensors[stage]
        X = X.numpy()
        if self.crop_samples and stage != "train":
            X = X[..., -self.crop_samples :]
        return X, y.numpy()

    def model_windows(self, stage: str) -> torch.Tensor:
        """A split's normalised windows as the decoder takes them (with cropping: the crop ending at ``tmax``)."""
        self.setup()
        X = self._tensors[stage][0]
        return X[..., -self.crop_samples :] if self.crop_samples else X

    def model_labels(self, stage: str) -> torch.Tensor:
        """A split's class indices, in the order of :meth:`model_windows`."""
        self.setup()
        return self._tensors[stage][1]

    # -- loaders ----------------------------------------------------------------------------------------
    def _loader(self, stage: str, shuffle: bool) -> DataLoader:
        self.setup()
        X, y = self._tensors[stage]
        crop = self.crop_samples
        if crop and stage != "train":
            X = X[..., -crop:].contiguous()  # evaluation: the window ending at tmax, as online
        cropped = crop is not None and stage == "train"
        dataset = TensorBatches(X, y, crop=crop if cropped else None, seed=self.seed)
        repeats = self.cfg.crop.crops_per_epoch if cropped else 1
        sampler = BatchIndexSampler(len(y) * repeats, self.batch_size, shuffle, self.seed)
        return DataLoader(dataset, sampler=sampler, batch_size=None, num_workers=self.num_workers)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
