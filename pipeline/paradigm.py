"""The calibration paradigm: which cue when, and where the patient sees it.

A paradigm is ``runs`` blocks (one recording file each; the last one tests the decoder); each block starts with a
fixation lead-in, then shows ``trials`` cues per class in total (spread evenly over the blocks, balanced within
each block as far as the numbers allow, in a random order), each for ``cue_seconds`` followed by a fixation
cross for ``rest_seconds`` plus a uniform random jitter (so the patient cannot anticipate the next cue).

Cues are shown on the operator console's cue page (``POST /api/cue``; the console publishes each onset as an
LSL string marker) or, without a console, in the terminal, with the markers published here. Either way the
marker stream is what the recording and the simulated amplifier hear: the cue as shown, when it was shown.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datasets.typed import ConfigError, from_mapping, load_yaml


@dataclass
class ParadigmConfig:
    classes: list[str] = field(default_factory=lambda: ["grasp", "open", "rest"])
    trials: int = 20  # per class, over all runs
    runs: int = 3  # blocks, one recording file each; the last one is the test set
    cue_seconds: float = 4.0
    rest_seconds: float = 2.0
    jitter_seconds: float = 1.0
    lead_in_seconds: float = 3.0  # fixation before a run's first cue (the filters settle, the patient gets ready)
    break_seconds: float = 10.0  # between runs
    seed: int | None = None  # the order and the jitter; null draws one (written to calibration.json)

    def __post_init__(self) -> None:
        if not self.classes or len(set(self.classes)) != len(self.classes) or not all(self.classes):
            raise ConfigError(f"'paradigm.classes' ({self.classes}) must name at least one class, each once.")
        if self.runs < 2:
            raise ConfigError(f"'paradigm.runs' ({self.runs}) must be at least 2: the last run tests the decoder "
                              "that the others train.")
        if self.trials < self.runs:
            raise ConfigError(f"'paradigm.trials' ({self.trials}) must be at least 'paradigm.runs' ({self.runs}): "
                              "every run needs each class once, so the test run scores every class.")
        if self.cue_seconds <= 0:
            raise ConfigError(f"'paradigm.cue_seconds' ({self.cue_seconds}) must be positive.")
        for key in ("rest_seconds", "jitter_seconds", "lead_in_seconds", "break_seconds"):
            if getattr(self, key) < 0:
                raise ConfigError(f"'paradigm.{key}' ({getattr(self, key)}) must be >= 0.")

    def seconds(self) -> float:
        """Expected length of the whole paradigm (mean jitter)."""
        per_trial = self.cue_seconds + self.rest_seconds + self.jitter_seconds / 2
        return self.runs * self.lead_in_seconds + len(self.classes) * self.trials * per_trial \
            + (self.runs - 1) * self.break_seconds


@dataclass
class TrainingWindow:
    """How the recordings become training windows (the rest is the default recipe)."""

    tmin: float = 0.5  # window after each cue onset (s)
    tmax: float = 2.5
    bandpass: list[float] = field(default_factory=lambda: [8.0, 30.0])
    euclidean_alignment: bool = True  # lets the next session re-align (bmi serve --align-seconds)

    def __post_init__(self) -> None:
        if not 0 <= self.tmin < self.tmax:
            raise ConfigError(f"'training.tmax' ({self.tmax}) must be greater than 'training.tmin' ({self.tmin}), "
                              "and tmin >= 0.")


@dataclass
class CalibrationConfig:
    paradigm: ParadigmConfig = field(default_factory=ParadigmConfig)
    training: TrainingWindow = field(default_factory=TrainingWindow)

    def __post_init__(self) -> None:
        if self.training.tmax > self.paradigm.cue_seconds:
            raise ConfigError(f"'training.tmax' ({self.training.tmax}) must be within the cue "
                              f"('paradigm.cue_seconds' {self.paradigm.cue_seconds}).")


def load_calibration(path: str | Path | None, **paradigm_overrides: Any) -> CalibrationConfig:
    """The calibration config from a YAML file (or the defaults) with command-line values on top."""
    raw = load_yaml(path) if path is not None else {}
    paradigm = dict(raw.get("paradigm") or {})
    paradigm.update({k: v for k, v in paradigm_overrides.items() if v is not None})
    return from_mapping(CalibrationConfig, {**raw, "paradigm": paradigm}, "calibration")


def plan_runs(cfg: ParadigmConfig, seed: int) -> list[list[str]]:
    """The cue order per run: ``trials`` per class in total, spread evenly over the runs (a run that gets one
    more of a class is rotated per class, so the runs stay the same length), shuffled within each run."""
    rng = np.random.default_rng(seed)
    runs: list[list[str]] = [[] for _ in range(cfg.runs)]
    for k, label in enumerate(cfg.classes):
        base, extra = divmod(cfg.trials, cfg.runs)
        for r in range(cfg.runs):
            runs[r] += [label] * (base + (1 if (r - k) % cfg.runs < extra else 0))
    for run in runs:
        rng.shuffle(run)
    return runs


def rest_after(cfg: ParadigmConfig, rng: np.random.Generator) -> float:
    return cfg.rest_seconds + rng.uniform(0, cfg.jitter_seconds)


# -- where the patient sees the cues ----------------------------------------------------------------------------


class TerminalCues:
    """Cues in the terminal (the calibration's own display), their onsets published as LSL string markers."""

    where = "the terminal"

    def __init__(self, cue_outlet: str):
        from mne_lsl.lsl import StreamInfo, StreamOutlet, local_clock

        self.clock = local_clock
        self.outlet = StreamOutlet(StreamInfo(cue_outlet, "Markers", 1, 0.0, "string", f"bmi-calibrate-{cue_outlet}"))

    def show(self, label: str | None, seconds: float) -> None:
        if label is not None:
            self.outlet.push_sample([label], self.clock())

    def close(self) -> None:
        del self.outlet


class ConsoleCues:
    """Cues on the operator console's cue page: a console process started here (``--console HOST:PORT``) whose
    cue outlet publishes every onset as an LSL marker."""

    def __init__(self, listen: str, cue_outlet: str, secret: str, where: str, env: dict[str, str],
                 timeout: float = 20.0):
        """``secret``: the console's; ``where``: the cue page's address to show; ``env``: the console process's
        environment, which carries the secret (never its command line; see exports.runtime.console.secret)."""
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"'--console' ({listen!r}) must be HOST:PORT, e.g. 127.0.0.1:8080.")
        self.base, self.token, self.where = f"http://{host}:{port}", secret, where
        args = [sys.executable, "-m", "exports.runtime.console", "--listen", listen, "--cue-outlet", cue_outlet]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
                raise RuntimeError(f"The console on {listen} did not start (exit code {self.proc.returncode}): "
                                   f"{err[-1] if err else 'no message'}")
            try:
                self._post({"label": None, "seconds": 0})
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"The console on {listen} did not answer within {timeout:g} s.") from None
                time.sleep(0.2)

    def _post(self, body: dict[str, Any]) -> None:
        headers = {"Content-Type": "application/json", "X-BMI-Token": self.token, "Origin": self.base}
        request = urllib.request.Request(f"{self.base}/api/cue", json.dumps(body).encode(), headers, method="POST")
        with urllib.request.urlopen(request, timeout=2.0) as response:
            response.read()

    def show(self, label: str | None, seconds: float) -> None:
        self._post({"label": label, "seconds": round(seconds, 3)})

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
