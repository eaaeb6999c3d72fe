"""The run record: what a run directory holds, and reading it back.

One module for the facts training writes and everything after it reads (evaluation, ensembles, fine-tuning,
export): the file names, the run's status, its resolved config and the folder its paths are relative to, its
summary and data description, and its decoder with a checkpoint's weights. Light on purpose: the standard
library, PyYAML and the typed config at import time; torch and the model registry only inside
:func:`load_network`. So ``exports`` reads runs through this module and never imports the training loop.

A run directory (``runs/<run_id>/``)::

    run.json         who wrote it and how it ended: run_id, config_dir, group, status, error, started, ended
    config.yaml      the resolved config (the ``auto`` choices as they ran)
    data_info.json   channels, rate, window, preprocessing, normalisation, split (``EpochsDataModule.data_info``)
    summary.json     the finished run's metrics and facts (written last: its presence means "finished")
    metrics.csv      one row per epoch
    checkpoints/     best.ckpt (the model the run keeps) and last.ckpt (for --resume)
    plots/           learning curves, confusion matrix
    ensemble.json    only in an ensemble run: its member run directories
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from datasets import atomic

from .config import ExperimentConfig, load_config

CONFIG = "config.yaml"
RUN_JSON = "run.json"
SUMMARY = "summary.json"
DATA_INFO = "data_info.json"
METRICS_CSV = "metrics.csv"
ENSEMBLE = "ensemble.json"
CHECKPOINTS = "checkpoints"
#: what ``run.json`` says about a run: running (or killed), finished, failed (an error), interrupted (Ctrl-C)
STATUSES = ("running", "finished", "failed", "interrupted")


class RunExistsError(FileExistsError):
    """A run directory already holds another run; one directory is written by one run only."""


def code_version() -> str:
    """Git commit of this code (with ``-dirty`` when it has local changes), or the package version."""
    root = Path(__file__).resolve().parents[1]
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True,
                             timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        from importlib.metadata import PackageNotFoundError, version

        try:
            return "bmi-decoder " + version("bmi-decoder")
        except PackageNotFoundError:
            return "unknown"


def new_run_id(model: str) -> str:
    """A sortable, unique id: ``YYYYmmdd-HHMMSS-<model>-<4 hex>``."""
    return f"{time.strftime('%Y%m%d-%H%M%S')}-{model}-{uuid.uuid4().hex[:4]}"


# -- writing --------------------------------------------------------------------------------------------------


def check_free(run_dir: Path) -> None:
    """Refuse a run directory that already holds anything (another run's files): one directory, one run."""
    run_dir = Path(run_dir)
    if run_dir.exists() and (not run_dir.is_dir() or any(run_dir.iterdir())):
        status = read_status(run_dir).get("status") or ("finished" if (run_dir / SUMMARY).is_file() else "unknown")
        raise RunExistsError(
            f"Run directory {run_dir} already holds a run (status: {status}); a run directory is written by one run "
            f"only. Choose another --name (or 'name'), or continue that run with `bmi train --resume {run_dir}`."
        )


def claim(run_dir: Path) -> Path:
    """Create ``run_dir`` for a new run (:func:`check_free` first: checked again here, just before writing)."""
    check_free(run_dir)
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return Path(run_dir)


def new_folder(root: Path, name: str) -> Path:
    """Create a new, empty folder ``root/name`` for a group of runs (a CV, a sweep's process); when that name
    is taken, ``name-2``, ``name-3``, ... (created atomically: two processes never get the same one)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    for i in range(1, 10_000):
        folder = root / (name if i == 1 else f"{name}-{i}")
        try:
            folder.mkdir()  # fails when it exists: the name is taken (even by an empty folder another process made)
            return folder
        except FileExistsError:
            continue
    raise RuntimeError(f"No free folder name for {name!r} under {root} (tried {name}-2 to {name}-9999).")


def write_status(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Update ``run.json`` (atomically) with ``fields``; returns the whole record."""
    if "status" in fields and fields["status"] not in STATUSES:
        raise ValueError(f"'status' ({fields['status']!r}) must be one of {', '.join(STATUSES)}.")
    record = {**read_status(run_dir), **fields}
    atomic.write_json(Path(run_dir) / RUN_JSON, record)
    return record


def mark_ended(run_dir: Path, error: BaseException | None) -> dict[str, Any]:
    """Record how a run ended: finished, failed (with the error) or interrupted (Ctrl-C)."""
    ended = time.strftime("%Y-%m-%dT%H:%M:%S")
    if error is None:
        return write_status(run_dir, status="finished", error=None, ended=ended)
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    text = f"{type(error).__name__}: {error}" if str(error) else type(error).__name__
    return write_status(run_dir, status=status, error=text, ended=ended)


# -- reading --------------------------------------------------------------------------------------------------


def _read_json(run_dir: Path, name: str, what: str) -> dict[str, Any]:
    path = Path(run_dir) / name
    if not path.is_file():
        raise FileNotFoundError(f"{run_dir} is not {what}: it has no {name}.")
    return json.loads(path.read_text())


def read_status(run_dir: Path) -> dict[str, Any]:
    """``run.json`` (empty when the folder has none)."""
    path = Path(run_dir) / RUN_JSON
    return json.loads(path.read_text()) if path.is_file() else {}


def is_failed(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` ended failed or interrupted (its status file says so)."""
    return read_status(run_dir).get("status") in ("failed", "interrupted")


def read_summary(run_dir: Path) -> dict[str, Any]:
    """The summary a finished run wrote (metrics, kept checkpoint, timings); FileNotFoundError if it has none."""
    return _read_json(run_dir, SUMMARY, "a finished run")


def read_data_info(run_dir: Path) -> dict[str, Any]:
    """``data_info.json``, checked against :class:`datasets.data_info.DataInfo` (a malformed file is a clear
    error naming the key, not a KeyError later)."""
    from datasets.data_info import DataInfo

    info = _read_json(run_dir, DATA_INFO, "a finished run")
    DataInfo.from_dict(info, str(Path(run_dir) / DATA_INFO))
    return info


def is_ensemble(run_dir: Path) -> bool:
    """Whether ``run_dir`` is an ensemble of runs (``bmi train --seeds``, ``bmi ensemble``)."""
    return (Path(run_dir) / ENSEMBLE).is_file()


def ensemble_members(run_dir: Path) -> list[Path]:
    """The member run directories of an ensemble run (absolute)."""
    run_dir = Path(run_dir)
    spec = _read_json(run_dir, ENSEMBLE, "an ensemble run")
    return [p if p.is_absolute() else (run_dir / p).resolve() for p in map(Path, spec["members"])]


def config_run(run_dir: Path) -> Path:
    """The run whose config describes ``run_dir``'s windows: the run itself, or an ensemble's first member."""
    return ensemble_members(run_dir)[0] if is_ensemble(run_dir) else Path(run_dir)


def read_config(run_dir: Path) -> tuple[ExperimentConfig, Path]:
    """The run's resolved config and the folder its data paths are relative to (the original config's)."""
    run_dir = Path(run_dir)
    if not (run_dir / CONFIG).is_file():
        raise FileNotFoundError(f"{run_dir} is not a run directory: it has no {CONFIG}.")
    cfg, _ = load_config(run_dir / CONFIG)
    return cfg, Path(read_status(run_dir).get("config_dir", run_dir))


def data_seed(cfg: ExperimentConfig) -> int:
    """The seed of the run's split (validation trials): ``data_seed``, or ``seed`` when that is null."""
    return cfg.seed if cfg.data_seed is None else cfg.data_seed


def last_checkpoint(run_dir: Path) -> Path:
    """The run's ``checkpoints/last.ckpt`` (what ``bmi train --resume`` continues from)."""
    last = Path(run_dir) / CHECKPOINTS / "last.ckpt"
    if not last.is_file():
        raise FileNotFoundError(f"{run_dir} has no {CHECKPOINTS}/last.ckpt (the run never finished an epoch).")
    return last


# -- the decoder ----------------------------------------------------------------------------------------------


def _checkpoint_path(run_dir: Path, summary: dict[str, Any], checkpoint: str | Path) -> Path:
    if checkpoint == "best" and summary.get("best_checkpoint"):
        path = run_dir / summary["best_checkpoint"]
    elif checkpoint in ("best", "last"):
        path = run_dir / CHECKPOINTS / "last.ckpt"
    else:
        path = Path(checkpoint)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint not found: {path} (run {run_dir.name} has: "
                                f"{sorted(p.name for p in (run_dir / CHECKPOINTS).glob('*.ckpt')) or 'none'}).")
    return path


def load_network(run_dir: Path, checkpoint: str | Path = "best"):
    """The run's plain decoder (eval mode) with a checkpoint's weights, loaded with ``weights_only``.

    ``checkpoint``: ``best`` (the model the run keeps), ``last``, or a path. Returns (network, summary,
    data_info, checkpoint path); an ensemble run gives one module averaging its members' probabilities.
    """
    import torch

    import models

    run_dir = Path(run_dir)
    summary = read_summary(run_dir)
    if summary.get("model") == "ensemble":
        return load_ensemble(run_dir)
    info = read_data_info(run_dir)
    path = _checkpoint_path(run_dir, summary, checkpoint)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling refused or corrupt file: name it
        raise ValueError(f"Cannot load checkpoint {path} safely (weights only): {type(err).__name__}: {err}") from None
    state = {k[len("net."):]: v for k, v in ckpt.get("state_dict", {}).items() if k.startswith("net.")}
    if not state:
        raise ValueError(f"Checkpoint {path} holds no decoder weights (no 'net.*' keys in its state_dict).")
    net = models.build(summary["model"], n_chans=len(info["ch_names"]), n_times=info["n_times"],
                       n_outputs=len(info["classes"]), sfreq=info["sfreq"], **summary.get("model_params", {}))
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = [f"{k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in set(own) & set(state)
                  if state[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        raise ValueError(
            f"Checkpoint {path} was trained for a different architecture or shape than {summary['model']!r} with "
            f"{len(info['ch_names'])} channels x {info['n_times']} samples: missing keys {missing[:5]}, "
            f"unexpected {unexpected[:5]}, shape mismatches {sorted(mismatched)[:5]}."
        )
    net.load_state_dict(state)
    return net.eval(), summary, info, path


def _norm_stats(norm: dict[str, Any], n_chans: int):
    import numpy as np

    if norm.get("kind") == "standardize":
        return np.asarray(norm["mean"], dtype=np.float64), np.asarray(norm["std"], dtype=np.float64)
    return np.zeros(n_chans), np.ones(n_chans)


def normalization_adapter(norm_in: dict[str, Any], norm_member: dict[str, Any], n_chans: int):
    """The channel-affine map from windows normalised with ``norm_in`` to ``norm_member``'s (None if equal)."""
    import numpy as np
    import torch

    from models.ensemble import ChannelAffine

    if (norm_in.get("alignment") or None) != (norm_member.get("alignment") or None):
        raise ValueError("Ensemble members use different Euclidean-alignment matrices (alignment fitted on different "
                         "training data); one ONNX model takes one normalisation. Ensemble runs trained on the same "
                         "split (bmi train --seeds), or train without 'data.euclidean_alignment'.")
    m0, s0 = _norm_stats(norm_in, n_chans)
    m1, s1 = _norm_stats(norm_member, n_chans)
    if np.array_equal(m0, m1) and np.array_equal(s0, s1):
        return None
    # x_member = (x_in * s0 + m0 - m1) / s1
    return ChannelAffine(torch.from_numpy(np.diag(s0 / s1)), torch.from_numpy((m0 - m1) / s1))


def load_ensemble(run_dir: Path):
    """An ensemble run's module (the members' mean probability), with :func:`load_network`'s return values.

    The ensemble takes windows normalised as its first member's; every other member whose training split gave
    it other standardisation statistics gets a fixed channel-affine adapter in front."""
    from models.ensemble import ProbabilityEnsemble

    run_dir = Path(run_dir)
    summary, info = read_summary(run_dir), read_data_info(run_dir)
    members, adapters = [], []
    for member in ensemble_members(run_dir):
        net, _, member_info, _ = load_network(member)
        members.append(net)
        adapters.append(normalization_adapter(info["normalization"], member_info["normalization"], len(info["ch_names"])))
    return ProbabilityEnsemble(members, adapters).eval(), summary, info, run_dir / ENSEMBLE


def relative_to_root(run_dir: Path, root: Path) -> str:
    """A run's name under a runs folder (``cv-x/fold0``), or its folder name when it lies elsewhere."""
    run_dir, root = Path(run_dir).resolve(), Path(root).resolve()
    return run_dir.relative_to(root).as_posix() if run_dir.is_relative_to(root) else run_dir.name


__all__ = ["CONFIG", "RUN_JSON", "SUMMARY", "DATA_INFO", "METRICS_CSV", "ENSEMBLE", "CHECKPOINTS", "RunExistsError",
           "check_free", "claim", "code_version", "new_folder", "config_run", "data_seed", "ensemble_members", "is_ensemble", "is_failed",
           "last_checkpoint", "load_ensemble", "load_network", "mark_ended", "new_run_id", "normalization_adapter",
           "read_config", "read_data_info", "read_status", "read_summary", "write_status"]
