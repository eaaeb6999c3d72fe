"""Flat against gated decoders: does the hand rest when the patient rests?

For each data set and band, a flat decoder (one softmax over rest and the movements) and a gated decoder
(``models.gated``: a movement/rest gate, then the movement's type) are trained by ``bmi train``'s own loop on the
same windows and splits, exported to ONNX as ``bmi export`` does, and the held-out run is streamed through the
rig's decision chain (``exports.runtime.closed_loop``: the causal preprocessing, onnxruntime, the server's
smoothing with its defaults, and the gate for the gated decoder; one decision per 50 ms hop). Reported:

  balanced_accuracy      offline, over every class, on the held-out run's windows (test split)
  movement_accuracy      offline, the share of movement windows given their own class
  gate_accuracy          offline, balanced accuracy of rest vs any movement
  false_movements_per_min  online: onsets of a grasp/open command during rest cues, per minute of rest cue
  spontaneous_movements_per_min  the same without the late onsets (``late_onsets``): those repeating the movement
                         cue just before, less than half the decoder's window after it ended (the window still holds
                         mostly that movement: the right command, late)
  movement_time_during_rest  online: share of rest-cue decisions that commanded a movement
  movement_hit_rate      online: share of movement cues that got their own command within the cue
  time_to_correct_s      online: median time from a movement cue to its first correct command
  online_rest_auc        online: ROC AUC of the movement evidence (the gate for a gated decoder, 1 - P(rest) for
                         a flat one) between decisions 1 s to the end of rest cues and of movement cues: how well
                         the decoder itself tells rest from movement on the stream, before any smoothing rule

Cues that begin before the stream's first decision are not scored, as in ``bmi rehearse``.

Data sets: ``synthetic_eeg`` / ``synthetic_meg`` (``datasets.synthetic``: rest / grasp / open, lateralised
desynchronisation and slow movement-related potentials; runs 1-2 train, run 3 is streamed) and ``s001``
(PhysioNet EEG Motor Movement/Imagery S001, when present beside the project: T0 rest, T1 left fist, T2 right
fist, real movement runs 3 and 7 train, run 11 is streamed; left -> open, right -> grasp; ``s001_imagined``: the
same with imagined movement, runs 4 and 8 train, 12 is streamed; ``s001_fists_feet``: real movement of both fists
(T1 -> grasp) or both feet (T2 -> open), runs 5 and 9 train, 13 is streamed). Bands: ``mu_beta``
(causal 8-30 Hz), ``wide`` (causal low-pass 30 Hz: slow fields and rhythms in one input) and ``slow`` (the
slow-field preset: causal low-pass 5 Hz, decimated to >= 20 Hz; not in the default run). Beside ``flat`` and
``gated`` (log-variance stages), ``--models`` takes ``flat_csp`` and ``gated_csp`` (the same, started from CSP +
LDA), ``gated_free`` and ``gated_free_csp`` (a gate of one movement unit trained by rest / movement alone),
``two_branch``, ``amplitude``, ``gated_amplitude`` and ``slow_gate`` (slow-field amplitude stages,
``models/amplitude.py``), ``flat_seg4``, ``gated_seg4`` and ``gated_seg4_gate`` (log-variance stages over 4
segments of the window, ``n_segments: 4``; in the last only the gate's; see ``MODELS``). A decoder without a gate is streamed twice: as it is, and under a rest gate
(``KIND+rest_gate``: ``bmi serve --gate-rest-class rest``, the gate's rules on 1 - P(rest)), which gets the gate sweep as a gated decoder does.

    nice -n 10 .venv/bin/python scripts/bench_gate.py [--quick] [--datasets synthetic_eeg,s001]
        [--bands mu_beta,wide] [--models flat,gated] [--seeds 0] [--session-seed 7] [--window 2.0] [--ema-alpha 0.3]
        [--out bench_results/gate.json] [--docs-table NAME[,NAME]] [--docs-dir DIR]

``--docs-table NAME[,NAME...]`` also writes the named docs' results files (``docs/benchmarks/results/NAME.json``,
``scripts/results_file.py``) from this run's own measurements: one row per data set, band and decoder as measured
(rows the run did not measure are not in the file; a decoder without a gate brings its ``+ rest gate`` row), in
the table's columns. ``--docs-dir DIR`` writes them to DIR instead (tests, trial runs); it needs
``--docs-table``. The tables, and the arguments that made the committed ones (a table marked * was made by more
than one run: a run writes the rows it measured, and its file names its own command):

  gate_bands           ``--quick --bands mu_beta,wide,slow`` (the committed table, made with ``--quick``, has
                       slow-band rows, which the default bands leave out)
  gate_refit           ``--quick --bands mu_beta --models flat,gated,flat_csp,gated_csp``
  gate_csp_init        ``--quick --bands mu_beta --models flat_csp,gated_csp``
  gate_three_seeds *   ``--quick --bands mu_beta --models flat,gated --seeds 0,1,2``, and
                       ``--datasets synthetic_eeg --session-seed 11`` (rows "synthetic EEG, session 11")
  gate_tradeoff *      the same runs: the gate sweep's false movements per minute / hits, per threshold / dwell
  gate_s001_late_onsets  ``--quick --datasets s001 --bands mu_beta --models flat,gated,gated_free --seeds 0,1,2``
  gate_s001_tasks *    ``--quick --datasets s001,s001_imagined,s001_fists_feet --bands mu_beta
                       --models flat,flat_seg4,gated,gated_seg4 --seeds 0,1,2``, and ``--models gated_seg4_gate``
  gate_slow_fields *   ``--quick --bands slow --models amplitude,gated_amplitude``, and
                       ``--bands wide --models slow_gate``

e.g. ``--quick --bands mu_beta --models flat,gated --seeds 0,1,2 --docs-table gate_three_seeds,gate_tradeoff``.

``--ema-alpha A``: the server's smoothing weight on the newest window (``bmi serve --ema-alpha``; 0.3 by
default); a lower one averages over more windows, so a decoder whose output flickers commands fewer, later
movements.

``--window S``: the decoders' window, from 0.5 s after the cue (default 2 s): a shorter one answers sooner and
clears the previous movement sooner, from less signal.

``--release S``: every decoder also trains on a rest window ending S s after each movement cue (``data.release``,
windows of letting go); they train and validate, and the held-out run's offline scores leave them out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from exports.runtime.smoothing import SmoothingConfig  # noqa: E402  (light: numpy only)

if str(Path(__file__).resolve().parent) not in sys.path:  # imported as a module (tests), not run
    sys.path.append(str(Path(__file__).resolve().parent))
import results_file  # noqa: E402  (scripts/, beside this file)

EEGMMIDB = ROOT.parent / "shared" / "data" / "eegmmidb" / "S001"

BANDS = {"mu_beta": {"bandpass": [8.0, 30.0]}, "wide": {"bandpass": [None, 30.0]},
         "slow": {"bandpass": "slow", "resample": "auto"}}
#: the decoders compared: the flat one and the gated one built from the same architecture
MODELS = {
    "flat": {"name": "logvar", "params": {}},
    # the log-variance network with 32 filters (bench_accuracy's logvar32 recipe; not in the default run)
    "flat32": {"name": "logvar", "params": {"n_filters": 32}},
    # the window in 4 equal segments, each with its own log variances: the features follow the power's time
    # course, so the decoder can tell a movement that has ended (its power back in the newest segment) from one
    # that goes on (not in the default run)
    "flat_seg4": {"name": "logvar", "params": {"n_segments": 4}},
    "gated_seg4": {"name": "gated", "params": {"gate": {"name": "logvar", "n_segments": 4},
                                               "type": {"name": "logvar", "n_segments": 4}}},
    # only the gate follows the time course (rest / movement); the type decoder keeps the whole window's variances
    "gated_seg4_gate": {"name": "gated", "params": {"gate": {"name": "logvar", "n_segments": 4},
                                                    "type": {"name": "logvar"}}},
    "gated": {"name": "gated", "params": {"gate": {"name": "logvar"}, "type": {"name": "logvar"}}},
    # the two-branch model (not in the default run; meant for the wide band): the gate reads slow fields and
    # mu/beta stacked as channels, the type decoder mu/beta, both cut from the one broadband input (models/bands.py)
    "two_branch": {"name": "gated", "params": {"gate": {"name": "bands", "bands": [[None, 5.0], [8.0, 30.0]]},
                                               "type": {"name": "bands", "bands": [[8.0, 30.0]]}}},
    # log-variance stages started from CSP + LDA on the training windows (init: csp)
    "flat_csp": {"name": "logvar", "params": {"init": "csp"}},
    "gated_csp": {"name": "gated", "params": {"gate": {"name": "logvar", "init": "csp"},
                                              "type": {"name": "logvar", "init": "csp"}}},
    # a gate of its own: one movement unit trained by the rest / movement label alone (gate_units: 1), the type
    # decoder by the movement windows; _csp: both stages started from CSP + LDA on their own labels
    "gated_free": {"name": "gated", "params": {"gate": {"name": "logvar"}, "type": {"name": "logvar"}, "gate_units": 1}},
    "gated_free_csp": {"name": "gated", "params": {"gate": {"name": "logvar", "init": "csp"},
                                                   "type": {"name": "logvar", "init": "csp"}, "gate_units": 1}},
    # slow-field amplitude (models/amplitude.py), the reference system's features: flat and gated on the slow band
    "amplitude": {"name": "amplitude", "params": {}},
    "gated_amplitude": {"name": "gated", "params": {"gate": {"name": "amplitude"}, "type": {"name": "amplitude"}}},
    # for the wide band: the gate reads slow-field amplitude and mu/beta log variance, the type decoder mu/beta
    "slow_gate": {"name": "gated", "params": {
        "gate": {"name": "bands", "bands": [[None, 5.0], [8.0, 30.0]],
                 "decoder": {"name": "amplitude", "log_variance": True}},
        "type": {"name": "bands", "bands": [[8.0, 30.0]]}}},
}
#: the gate's trade-off, re-streamed: (threshold, dwell_s) with the default hysteresis
GATE_SWEEP = tuple((thr, dwell) for thr in (0.5, 0.6, 0.7, 0.75, 0.8) for dwell in (0.2, 0.5))
S001_EVENTS = {"T0": "rest", "T1": "left", "T2": "right"}
S001_ACTIONS = {"left": "open", "right": "grasp"}
#: S001's tasks with rest cues (T0): runs (the last is streamed), events, the hand action of each movement class
S001_TASKS = {
    "s001": ((3, 7, 11), S001_EVENTS, S001_ACTIONS),  # real left / right fist
    "s001_imagined": ((4, 8, 12), S001_EVENTS, S001_ACTIONS),  # imagined left / right fist
    "s001_fists_feet": ((5, 9, 13), {"T0": "rest", "T1": "fists", "T2": "feet"}, {"fists": "grasp", "feet": "open"}),
}


def synthetic(modality: str, folder: Path, quick: bool, seed: int = 7, window: float = 2.0) -> dict:
    from datasets.synthetic import write_synthetic

    files = write_synthetic(folder / modality, modality=modality, n_subjects=1, n_runs=3,
                            trials_per_class=12 if quick else 25, seed=seed,
                            sfreq=None if modality == "eeg" else 500.0)
    data = {"files": [str(f) for f in files], "events": {"rest": "rest", "grasp": "grasp", "open": "open"},
            "tmin": 0.5, "tmax": 0.5 + window, "picks": {"types": ["eeg" if modality == "eeg" else "grad"]},
            "resample": 125.0, "split": {"method": "holdout", "by": "run", "test": ["03"]}}
    return {"data": data, "stream": files[-1], "actions": {}}


def s001(folder: Path, quick: bool, window: float = 2.0, task: str = "s001") -> dict | None:
    runs, events, actions = S001_TASKS[task]
    if not all((EEGMMIDB / f"S001R{r:02d}.edf").is_file() for r in runs):
        return None
    files = [str(EEGMMIDB / f"S001R{r:02d}.edf") for r in runs]
    data = {"files": files, "events": events, "rename": "eegbci", "tmin": 0.5, "tmax": 0.5 + window,
            "picks": {"types": ["eeg"]}, "resample": 80.0,
            "split": {"method": "holdout", "by": "run", "test": [f"{runs[-1]:02d}"]}}
    return {"data": data, "stream": Path(files[-1]), "actions": actions}


def offline_scores(confusion: list[list[int]], classes: list[str], rest: str = "rest") -> dict:
    c = np.asarray(confusion, dtype=float)
    recall = np.diag(c) / np.maximum(c.sum(1), 1)
    r = classes.index(rest)
    moving = [i for i in range(len(classes)) if i != r]
    rest_ok = c[r, r] / max(c[r].sum(), 1)
    move_ok = c[np.ix_(moving, moving)].sum() / max(c[moving].sum(), 1)
    return {"balanced_accuracy": float(recall.mean()),
            "movement_accuracy": float(np.trace(c[np.ix_(moving, moving)]) / max(c[moving].sum(), 1)),
            "gate_accuracy": float((rest_ok + move_ok) / 2)}


def stream_scores(model_path: Path, recording: Path, data_cfg: dict, actions: dict, sweep: bool = False,
                  rest_gate: str | None = None, smoothing: SmoothingConfig | None = None) -> dict:
    from datasets.config import DataConfig
    from datasets.typed import from_mapping
    from exports.onnx import read_model_metadata
    from exports.runtime.closed_loop import decide, decode_windows, late_seconds, score_commands
    from pipeline.rehearse import read_cued

    meta = read_model_metadata(model_path)
    cfg = from_mapping(DataConfig, data_cfg, "data")
    _, data, cues, cue_s, _ = read_cued([Path(recording)], cfg, meta["preprocessing"]["ch_names"])[0]
    windows = decode_windows(model_path, data)  # once; each gate setting only re-runs the server's rules
    # as bmi rehearse: cues that begin before the first decision are not scored; a rest-cue onset repeating the
    # movement cue just before while the window still holds mostly that cue is counted late, not spontaneous
    scoring = {"from_s": windows.first_decoded_t, "late_s": late_seconds(meta)}
    decisions = decide(windows, smoothing=smoothing, actions=actions, rest_gate=rest_gate)
    scores = score_commands(decisions, cues, cue_s, **scoring) | {"online_rest_auc": online_rest_auc(decisions, cues, cue_s)}
    if sweep:  # the gate's trade-off on the same stream (not used to choose the defaults)
        scores["gate_sweep"] = {
            f"{thr:g}/{dwell:g}": score_commands(decide(windows, smoothing=smoothing, actions=actions,
                                                        rest_gate=rest_gate, gate={"threshold": thr, "dwell_s": dwell}),
                                                 cues, cue_s, **scoring)
            for thr, dwell in GATE_SWEEP}
    return scores


def online_rest_auc(decisions, cues, cue_s: float, rest: str = "rest", skip_s: float = 1.0) -> float:
    """ROC AUC of the per-window movement evidence (gate, or 1 - P(rest)) between decisions ``skip_s`` into
    rest cues and into movement cues (the first second's windows still hold the time before the cue)."""
    from sklearn.metrics import roc_auc_score

    t = decisions.t
    evidence = decisions.gate if np.isfinite(decisions.gate).all() and len(t) else \
        1 - decisions.probabilities[:, decisions.classes.index(rest)]
    label = np.full(len(t), -1)
    for onset, name in cues:
        label[(t >= onset + skip_s) & (t < onset + cue_s)] = int(name != rest)
    keep = label >= 0
    return float(roc_auc_score(label[keep], evidence[keep]))


def run(name: str, spec: dict, bands: list[str], kinds: list[str], seeds: list[int], tmp: Path, quick: bool,
        smoothing: SmoothingConfig | None = None) -> dict:
    from exports.onnx import export_run
    from pipeline.record.config import config_from_mapping
    from pipeline.train import run_training

    out = {}
    for band in bands:
        for kind in kinds:
            model = MODELS[kind]
            # a decoder without a gate is also streamed under a rest gate (bmi serve --gate-rest-class rest)
            variants = [kind] if model["name"] == "gated" else [kind, f"{kind}+rest_gate"]
            rows = {variant: [] for variant in variants}
            for seed in seeds:
                t0 = time.monotonic()
                raw = {"data": {**spec["data"], **BANDS[band], "cache_dir": str(tmp / "cache")}, "model": model,
                       "trainer": {"enable_progress_bar": False, **({"target_steps": 600} if quick else {})},
                       "tracking": {"mode": "disabled"}, "runs_dir": str(tmp / "runs"), "seed": seed}
                summary = run_training(config_from_mapping(raw, []), ROOT, progress=False)
                run_dir = Path(summary["run_dir"])
                exported = export_run(run_dir, out=run_dir / "model.onnx")
                offline = offline_scores(summary["test_confusion_matrix"], summary["classes"])
                for variant in variants:
                    rest_gate = "rest" if variant.endswith("+rest_gate") else None
                    row = offline | stream_scores(exported.path, spec["stream"], raw["data"], spec["actions"],
                                                  sweep=model["name"] == "gated" or rest_gate is not None,
                                                  rest_gate=rest_gate, smoothing=smoothing)
                    rows[variant].append(row)
                    _print_row(name, band, variant, seed, row, time.monotonic() - t0)
            for variant, variant_rows in rows.items():
                out[f"{band}/{variant}"] = _summarise(name, band, variant, seeds, variant_rows)
    return out


def _print_row(name: str, band: str, kind: str, seed: int, row: dict, seconds: float) -> None:
    print(f"{name:>14} {band:>8} {kind:>6} seed {seed}: bacc {row['balanced_accuracy']:.3f} "
          f"move {row['movement_accuracy']:.3f} gate {row['gate_accuracy']:.3f} | false/min "
          f"{row['false_movements_per_min']:.2f} (spontaneous {row['spontaneous_movements_per_min']:.2f}) rest-moving "
          f"{row['movement_time_during_rest']:.2f} hits {row['movement_hit_rate']:.2f} t {row['time_to_correct_s']} auc {row['online_rest_auc']:.3f} "
          f"({seconds:.0f} s)", flush=True)
    for key, sw in row.get("gate_sweep", {}).items():
        print(f"{'':>30} gate threshold/dwell {key}: false/min {sw['false_movements_per_min']:.2f} (spontaneous "
              f"{sw['spontaneous_movements_per_min']:.2f}) rest-moving "
              f"{sw['movement_time_during_rest']:.2f} hits {sw['movement_hit_rate']:.2f} t {sw['time_to_correct_s']}",
              flush=True)


def _summarise(name: str, band: str, kind: str, seeds: list[int], rows: list[dict]) -> dict:
    """Means over seeds (the per-seed rows kept), and the gate sweep's means."""
    out = {key: _mean([r[key] for r in rows]) for key in _scores(rows[0])} \
        | {k: rows[0][k] for k in rows[0] if k.startswith("n_")} | {"seeds": seeds, "per_seed": rows}
    if "gate_sweep" in rows[0]:
        out["gate_sweep"] = {key: {m: _mean([r["gate_sweep"][key][m] for r in rows]) for m in _scores(rows[0]["gate_sweep"][key])}
                             for key in rows[0]["gate_sweep"]}
    if len(seeds) > 1:
        print(f"{name:>14} {band:>8} {kind:>6} mean of {len(seeds)} seeds: false/min {out['false_movements_per_min']:.2f} "
              f"(spontaneous {out['spontaneous_movements_per_min']:.2f}) rest-moving {out['movement_time_during_rest']:.3f} hits {out['movement_hit_rate']:.3f} "
              f"t {out['time_to_correct_s']} auc {out['online_rest_auc']:.3f}", flush=True)
        for key, sw in out.get("gate_sweep", {}).items():
            print(f"{name:>14} {band:>8} {kind:>6} mean of {len(seeds)} seeds, gate threshold/dwell {key}: "
                  f"false/min {sw['false_movements_per_min']:.2f} (spontaneous {sw['spontaneous_movements_per_min']:.2f}) "
                  f"rest-moving {sw['movement_time_during_rest']:.3f} "
                  f"hits {sw['movement_hit_rate']:.3f} t {sw['time_to_correct_s']}", flush=True)
    return out


def _scores(row: dict) -> list[str]:
    """The keys averaged over seeds: the scores, not the n_ counts, the sweep or the pooled counts."""
    return [k for k, v in row.items() if not k.startswith("n_") and k not in ("gate_sweep", "counts")]


def _mean(values):
    values = [v for v in values if v is not None]
    return round(float(np.mean(values)), 4) if values else None


# -- the docs' results tables (--docs-table NAME; docs/benchmarks/results/NAME.json) -------------------------------

#: the synthetic recordings' session seed in the tables (another one is named in the data column)
DEFAULT_SESSION_SEED = 7
#: the data sets as the tables name them; TASK_LABELS: gate_s001_tasks, which names S001's three tasks alike
DATA_LABELS = {"synthetic_eeg": "synthetic EEG", "synthetic_meg": "synthetic MEG", "s001": "S001 (real EEG)",
               "s001_imagined": "S001 imagined left / right", "s001_fists_feet": "S001 real fists / feet"}
TASK_LABELS = {**DATA_LABELS, "s001": "S001 real left / right"}
SHORT_LABELS = {**DATA_LABELS, "s001": "S001", "s001_imagined": "S001 imagined", "s001_fists_feet": "S001 fists / feet"}
#: the decoders as the tables name them (a ``+rest_gate`` variant: the name, then " + rest gate")
DECODER_LABELS = {
    "flat": "flat", "flat32": "flat, 32 filters", "flat_seg4": "flat, 4 segments", "gated_seg4": "gated, 4 segments",
    "gated_seg4_gate": "gated, only the gate in 4 segments", "gated": "gated", "two_branch": "two_branch",
    "flat_csp": "flat, init csp", "gated_csp": "gated, init csp",
    "gated_free": "gated, one free gate unit (`gated_free`)",
    "gated_free_csp": "gated, one free gate unit, init csp (`gated_free_csp`)",
    "amplitude": "amplitude (flat)", "gated_amplitude": "gated amplitude", "slow_gate": "slow_gate",
}
#: gate_tradeoff's columns: (threshold, dwell_s) of the gate sweep, the gate's default in bold
TRADEOFF = ((0.5, 0.2), (0.6, 0.2), (0.6, 0.5), (0.7, 0.2), (0.7, 0.5), (0.75, 0.5), (0.8, 0.2), (0.8, 0.5))
GATE_DEFAULT = (0.7, 0.2)
_NUMBERS = ("no", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten")


class Measured(NamedTuple):
    """One row's measurements: a data set, band and decoder variant (``KIND`` or ``KIND+rest_gate``), with
    :func:`_summarise`'s means over seeds (``per_seed`` and ``gate_sweep`` inside)."""

    dataset: str
    band: str
    variant: str
    scores: dict
    session_seed: int = DEFAULT_SESSION_SEED

    def data(self, labels: dict = DATA_LABELS) -> str:
        label = labels.get(self.dataset, self.dataset)
        if self.dataset.startswith("synthetic") and self.session_seed != DEFAULT_SESSION_SEED:
            label += f", session {self.session_seed}"
        return label

    @property
    def decoder(self) -> str:
        kind, _, rest_gate = self.variant.partition("+")
        return DECODER_LABELS.get(kind, kind) + (" + rest gate" if rest_gate else "")


def _num(value, digits: int) -> str | None:
    """A measurement with ``digits`` decimals; None (the tables' dash) where there was none."""
    return None if value is None else f"{value:.{digits}f}"


def _seeds(n: int) -> str:
    return f"{_NUMBERS[n] if n < len(_NUMBERS) else n} seed{'' if n == 1 else 's'}"


def _score(header: str, key: str, digits: int):
    return header, lambda m: _num(m.scores.get(key), digits)


_DATA = ("data", lambda m: m.data())
_BAND = ("band", lambda m: m.band)
_DECODER = ("decoder", lambda m: m.decoder)
_OFFLINE = (_score("balanced acc.", "balanced_accuracy", 2), _score("movement acc.", "movement_accuracy", 2))
_GATE_ACC = _score("gate acc.", "gate_accuracy", 2)
_AUC = _score("online AUC rest vs movement", "online_rest_auc", 3)
_FALSE_1, _FALSE_2 = (_score("false movements / min at rest", "false_movements_per_min", d) for d in (1, 2))
_MOVING_2, _MOVING_3 = (_score("moving at rest", "movement_time_during_rest", d) for d in (2, 3))
_HITS = _score("hits", "movement_hit_rate", 2)
_TIME = _score("time to correct (s)", "time_to_correct_s", 2)
#: the tables with one row per data set, band and decoder: title (``{seeds}``: "one seed", "three seeds") and
#: columns (header, cell of a :class:`Measured`); gate_tradeoff and gate_s001_late_onsets are made apart
ROW_TABLES = {
    "gate_bands": ("Flat against gated decoders by band, {seeds}",
                   [_DATA, _BAND, _DECODER, *_OFFLINE, _GATE_ACC, _FALSE_1, _MOVING_2, _HITS, _TIME]),
    "gate_refit": ("Flat against gated decoders with the refit, {seeds}",
                   [_DATA, _DECODER, *_OFFLINE, _GATE_ACC, _FALSE_1, _MOVING_2, _HITS, _TIME]),
    "gate_csp_init": ("Log-variance stages started from CSP + LDA, {seeds}",
                      [_DATA, _DECODER, *_OFFLINE, _GATE_ACC, _FALSE_1, _MOVING_2, _HITS]),
    "gate_slow_fields": ("Slow-field amplitude decoders as gates, {seeds}",
                         [_DATA, _BAND, _DECODER, *_OFFLINE, _GATE_ACC, _FALSE_1, _MOVING_2, _HITS]),
    "gate_three_seeds": ("{Seeds}, and a rest gate on the flat decoder",
                         [_DATA, _DECODER, *_OFFLINE, _AUC, _FALSE_1, _MOVING_3, _HITS, _TIME]),
    "gate_s001_tasks": ("S001's three tasks, and decoders over 4 segments of the window",  # other data: TASKS_OTHER
                        [("data", lambda m: m.data(TASK_LABELS)), _DECODER, *_OFFLINE, _AUC, _FALSE_2,
                         _score("of them late (onsets per seed)", "late_onsets", 1), _MOVING_3, _HITS, _TIME]),
}
TASKS_OTHER = "By task and decoder, {seeds}"
DOCS_TABLES = (*ROW_TABLES, "gate_tradeoff", "gate_s001_late_onsets")


def measured(results: dict, session_seed: int = DEFAULT_SESSION_SEED) -> list[Measured]:
    """The rows of a run's results (``results["results"]``: data set -> ``BAND/VARIANT`` -> summary), in order."""
    return [Measured(dataset, *key.split("/", 1), scores, session_seed)
            for dataset, per in results.items() for key, scores in per.items()]


def docs_table(name: str, rows: list[Measured], n_seeds: int) -> dict:
    """One docs' results table (``title``, ``columns``, ``rows``) of a run's measurements."""
    seeds = _seeds(n_seeds)
    if name in ROW_TABLES:
        title, columns = ROW_TABLES[name]
        if name == "gate_s001_tasks" and {m.dataset for m in rows} != set(S001_TASKS):
            title = TASKS_OTHER
        return {"title": title.format(seeds=seeds, Seeds=seeds[:1].upper() + seeds[1:]),
                "columns": [header for header, _ in columns], "rows": [[cell(m) for _, cell in columns] for m in rows]}
    if name == "gate_tradeoff":  # the gate sweep of every variant under a gate: false movements per minute / hits
        def setting(thr, dwell):
            label = f"{thr:g} / {dwell:g} s"
            return f"**{label}**" if (thr, dwell) == GATE_DEFAULT else label

        return {"title": "The trade-off: false movements per minute / hits by gate threshold and dwell "
                         f"({'means of ' if n_seeds > 1 else ''}{seeds})",
                "columns": ["data", "decoder", *(setting(*s) for s in TRADEOFF)],
                "rows": [[m.data(), m.decoder, *(f"{_num(sw['false_movements_per_min'], 1)} / "
                                                 f"{_num(sw['movement_hit_rate'], 2)}"
                                                 for sw in (m.scores["gate_sweep"][f"{t:g}/{d:g}"]
                                                            for t, d in TRADEOFF))]
                         for m in rows if "gate_sweep" in m.scores]}
    if name == "gate_s001_late_onsets":  # the false onsets per seed, the late ones, and those from rest
        datasets, bands = {m.dataset for m in rows}, {m.band for m in rows}
        one = SHORT_LABELS.get(next(iter(datasets)), next(iter(datasets))) if len(datasets) == 1 else None
        table_rows = []
        for m in rows:
            counts = [r["counts"] for r in m.scores["per_seed"]]
            false, late = [c["false_onsets"] for c in counts], [c["late_onsets"] for c in counts]
            spontaneous = sum(false) - sum(late)
            label = (m.decoder if one else f"{m.data()}: {m.decoder}") + (f" ({m.band})" if len(bands) > 1 else "")
            per_min = _num(m.scores["false_movements_per_min"], 2)
            table_rows.append([label, f"{', '.join(map(str, false))} ({per_min} / min)", ", ".join(map(str, late)),
                               f"{_num(m.scores['spontaneous_movements_per_min'], 2)} "
                               f"({spontaneous} onset{'' if spontaneous == 1 else 's'} in all)",
                               _num(m.scores["movement_hit_rate"], 2)])
        whose = f"{one}'s" if one else "the"
        return {"title": f"Where {whose} false movements come from",
                "columns": [f"{one or 'decoder'}, {seeds}", "false onsets (per seed)", "of them late",
                            "from rest, per min", "hits"],
                "rows": table_rows}
    raise ValueError(f"unknown docs table {name!r}; known: {', '.join(DOCS_TABLES)}")


def _shown(path: Path) -> str:
    """A path as seen from the project root when it is inside it."""
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def _table_names(text: str) -> list[str]:
    names = [n for n in text.split(",") if n]
    unknown = [n for n in names if n not in DOCS_TABLES]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"unknown {unknown or text!r}; known: {', '.join(DOCS_TABLES)}")
    return names


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer trials and optimiser steps (minutes, not tens)")
    p.add_argument("--datasets", default="synthetic_eeg,synthetic_meg,s001",
                   help=f"comma-separated: synthetic_eeg, synthetic_meg, {', '.join(S001_TASKS)}")
    p.add_argument("--bands", default="mu_beta,wide", help=f"comma-separated: {', '.join(BANDS)}")
    p.add_argument("--models", default="flat,gated", help=f"comma-separated: {', '.join(MODELS)}")
    p.add_argument("--seeds", default="0", help="comma-separated training seeds")
    p.add_argument("--window", type=float, default=2.0, help="decoder window in seconds, from 0.5 s after the cue")
    p.add_argument("--session-seed", type=int, default=7,
                   help="seed of the synthetic recordings (7: the slow gate test's session)")
    p.add_argument("--ema-alpha", type=float, default=None,
                   help="the server's EMA weight on the newest window (bmi serve --ema-alpha; default: the server's)")
    p.add_argument("--release", type=float, metavar="SECONDS",
                   help="train every decoder with windows of letting go (data.release: a rest window ending SECONDS "
                        "after each movement cue; they train and validate, the offline test scores leave them out)")
    p.add_argument("--out", default=str(ROOT / "bench_results" / "gate.json"), help="results file (JSON)")
    p.add_argument("--keep", metavar="DIR", help="work in DIR and keep it (recordings, runs, exported models) "
                                                 "instead of a temporary folder, e.g. to bmi rehearse a model")
    # results_file.add_arguments's --docs-table is a flag; this script's names the table(s) its rows go to
    p.add_argument("--docs-table", type=_table_names, metavar="NAME[,NAME]",
                   help="also write these docs' results files (docs/benchmarks/results/NAME.json) from this run's "
                        f"rows: {', '.join(DOCS_TABLES)}")
    p.add_argument("--docs-dir", default=None, metavar="DIR",
                   help="write the docs' results file(s) here instead of docs/benchmarks/results/ "
                        "(with --docs-table; for tests and trial runs)")
    args = p.parse_args(argv)
    if args.docs_dir is not None and not args.docs_table:
        p.error("--docs-dir: name the table(s) with --docs-table NAME[,NAME] "
                f"({', '.join(DOCS_TABLES)})")
    if not 0.25 <= args.window <= 3.5:
        p.error(f"--window {args.window:g}: must be 0.25-3.5 s (from 0.5 s after the cue, within the 4.1 s cues of S001)")
    import torch

    torch.set_num_threads(1)
    bands = args.bands.split(",")
    unknown = [b for b in bands if b not in BANDS]
    if unknown:
        p.error(f"--bands: unknown {unknown}; known: {', '.join(BANDS)}")
    kinds = args.models.split(",")
    if [k for k in kinds if k not in MODELS]:
        p.error(f"--models: unknown {[k for k in kinds if k not in MODELS]}; known: {', '.join(MODELS)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    try:
        smoothing = SmoothingConfig() if args.ema_alpha is None else SmoothingConfig(alpha=args.ema_alpha)
    except ValueError as err:
        p.error(str(err))
    results = {"date": time.strftime("%Y-%m-%d"), "machine": platform.platform(), "quick": args.quick,
               "smoothing": vars(smoothing),
               "command": " ".join(["scripts/bench_gate.py", *(argv if argv is not None else sys.argv[1:])]),
               "models": MODELS, "bands": BANDS, "results": {}}
    with (contextlib.nullcontext(args.keep) if args.keep else tempfile.TemporaryDirectory()) as tmp:
        tmp = Path(tmp)
        tmp.mkdir(parents=True, exist_ok=True)
        for name in args.datasets.split(","):
            if name == "synthetic_eeg":
                spec = synthetic("eeg", tmp, args.quick, args.session_seed, args.window)
            elif name == "synthetic_meg":
                spec = synthetic("meg", tmp, args.quick, args.session_seed, args.window)
            elif name in S001_TASKS:
                spec = s001(tmp, args.quick, args.window, name)
                if spec is None:
                    print(f"{name}: skipped, no recordings at {EEGMMIDB}", flush=True)
                    continue
            else:
                p.error(f"--datasets: unknown {name!r}; known: synthetic_eeg, synthetic_meg, {', '.join(S001_TASKS)}")
            if args.release is not None:
                spec["data"]["release"] = {"after_s": args.release}
            results["results"][name] = run(name, spec, bands, kinds, seeds, tmp, args.quick, smoothing)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"wrote {out}")
    if (docs := results_file.docs_folder(args)) is not None:
        rows = measured(results["results"], args.session_seed)
        for name in args.docs_table:
            table = docs_table(name, rows, len(seeds))
            path = results_file.write_table(
                name, title=table["title"], columns=table["columns"], rows=table["rows"], folder=docs,
                argv=None if argv is None else ["scripts/bench_gate.py", *argv],  # None: sys.argv
                source=f"scripts/bench_gate.py (raw results: {_shown(out)})")
            print(f"docs results file: {path}")


if __name__ == "__main__":
    main()
