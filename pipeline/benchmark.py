"""``bmi benchmark``: MOABB's evaluation protocols on this project's decoders and the classical references.

The decoders go in as scikit-learn classifiers (:class:`pipeline.estimator.DecoderClassifier`) beside CSP+LDA and
tangent space + logistic regression, and MOABB's own ``WithinSessionEvaluation``, ``CrossSessionEvaluation`` and
``CrossSubjectEvaluation`` score them, so the rows are computed the way MOABB's published tables are. The folder
gets ``results.csv`` (MOABB's columns: score, time, samples, subject, session, channels, n_sessions, dataset,
pipeline, evaluation) and ``notes.json`` (what ran, with which versions, and how the data were filtered).

MOABB's paradigms filter and epoch the data themselves, with zero-phase (non-causal) filters: these scores compare
decoders with MOABB's tables, not with what the rig achieves online, where the project's causal preprocessing runs
(``bmi train`` on a config with ``data.moabb`` does that).
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

#: MOABB's evaluation classes by the name the command takes
EVALUATIONS = {"within-session": "WithinSessionEvaluation", "cross-session": "CrossSessionEvaluation",
               "cross-subject": "CrossSubjectEvaluation"}
#: the classical references, named as in MOABB's published tables
CLASSICAL = ("CSP+LDA", "TS+LR")
#: MOABB's results columns, then ours
COLUMNS = ["score", "time", "samples", "subject", "session", "channels", "n_sessions", "dataset", "pipeline",
           "evaluation"]


def classical_pipeline(name: str):
    """A classical reference as a scikit-learn pipeline on (trials, channels, times)."""
    from sklearn.pipeline import make_pipeline

    if name == "CSP+LDA":
        from mne.decoding import CSP
        from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

        return make_pipeline(CSP(n_components=8), LinearDiscriminantAnalysis())  # MOABB's CSP+LDA
    if name == "TS+LR":
        from pyriemann.estimation import Covariances
        from pyriemann.tangentspace import TangentSpace
        from sklearn.linear_model import LogisticRegression

        return make_pipeline(Covariances(estimator="oas"), TangentSpace(metric="riemann"),
                             LogisticRegression(C=1.0, max_iter=1000))
    raise ValueError(f"unknown classical pipeline {name!r}; known: {', '.join(CLASSICAL)}.")


def make_pipelines(names: list[str], sfreq: float | None, max_epochs: int, seed: int) -> dict[str, Any]:
    """Pipelines by name: the classical references (``CSP+LDA``, ``TS+LR``) or registered decoders."""
    from models.registry import available

    from .estimator import DecoderClassifier

    known = [*CLASSICAL, *available()]
    pipelines = {}
    for name in names:
        if name in CLASSICAL:
            pipelines[name] = classical_pipeline(name)
        elif name in available():
            pipelines[name] = DecoderClassifier(name, sfreq=sfreq, max_epochs=max_epochs, seed=seed)
        else:
            raise ValueError(f"'--pipelines' names {name!r}, which is neither a classical reference nor a decoder; "
                             f"known: {', '.join(known)}.")
    if not pipelines:
        raise ValueError(f"'--pipelines' is empty; known: {', '.join(known)}.")
    return pipelines


def make_paradigm(name: str, **kwargs: Any):
    """MOABB paradigm ``name`` (``MotorImagery``, ``LeftRightImagery``, ...) with the options given (None: MOABB's
    default)."""
    import moabb.paradigms as paradigms

    known = sorted(n for n in dir(paradigms) if not n.startswith("_") and isinstance(getattr(paradigms, n), type)
                   and hasattr(getattr(paradigms, n), "get_data") and not n.startswith("Base"))
    if name not in known:
        raise ValueError(f"'--paradigm' ({name!r}) is not a MOABB paradigm; known: {', '.join(known)}.")
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    try:
        return getattr(paradigms, name)(**kwargs)
    except (TypeError, ValueError) as err:
        raise ValueError(f"MOABB paradigm {name} refuses {kwargs}: {err}") from None


def run_benchmark(datasets: list, paradigm, evaluations: list[str], pipelines: dict[str, Any], out_dir: Path,
                  *, seed: int = 0, notes: dict[str, Any] | None = None):
    """Evaluate ``pipelines`` on ``datasets`` with MOABB's protocols; write ``results.csv`` and ``notes.json``.

    Parameters
    ----------
    datasets : list of moabb.datasets.base.BaseDataset
        The datasets (constructed, data on disk or generated).
    paradigm : moabb.paradigms.base.BaseParadigm
        How MOABB filters and epochs them.
    evaluations : list of str
        Among ``within-session``, ``cross-session``, ``cross-subject``.
    pipelines : dict
        Name -> scikit-learn classifier on (trials, channels, times).
    out_dir : Path
        Folder for the results (MOABB's HDF5 results go to ``out_dir/moabb``, never the home folder).
    seed : int
        MOABB's ``random_state`` (its folds).
    notes : dict, optional
        Extra facts for ``notes.json``.

    Returns
    -------
    pandas.DataFrame
        One row per subject and session (within- and cross-session) or per subject (cross-subject) and pipeline.
    """
    import moabb
    import moabb.evaluations as evaluations_module
    import pandas as pd

    from datasets.atomic import write_json, write_text

    unknown = [e for e in evaluations if e not in EVALUATIONS]
    if unknown or not evaluations:
        raise ValueError(f"'--evaluations' ({evaluations}) must name some of {', '.join(EVALUATIONS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames, skipped = [], {}
    for name in evaluations:
        cls = getattr(evaluations_module, EVALUATIONS[name])
        usable = [d for d in datasets if _fits(cls, d)]
        if not usable:
            skipped[name] = (f"no dataset fits {name} (needs two sessions per subject)" if name == "cross-session"
                             else f"no dataset fits {name} (needs two subjects)")
            continue
        evaluation = cls(paradigm=paradigm, datasets=usable, overwrite=True, hdf5_path=str(out_dir / "moabb"),
                         random_state=seed, n_jobs=1)
        frame = evaluation.process(pipelines)
        frame["evaluation"] = name
        frames.append(frame)
    if not frames:
        raise ValueError("no evaluation fits these datasets: " + "; ".join(skipped.values()) + ".")
    results = pd.concat(frames, ignore_index=True)
    results = results[[c for c in COLUMNS if c in results.columns] + [c for c in results.columns if c not in COLUMNS]]
    write_text(out_dir / "results.csv", results.to_csv(index=False))
    write_json(out_dir / "notes.json", {
        "moabb": moabb.__version__, "python": platform.python_version(),
        "datasets": [d.code for d in datasets], "paradigm": type(paradigm).__name__,
        "paradigm_filters": getattr(paradigm, "filters", None), "resample": getattr(paradigm, "resample", None),
        "evaluations": evaluations, "skipped": skipped, "pipelines": {k: repr(v) for k, v in pipelines.items()},
        "seed": seed, "written": time.strftime("%Y-%m-%d %H:%M:%S"),
        "preprocessing": "MOABB's paradigm filters and epochs the data (zero-phase, non-causal band-pass), as in "
                         "MOABB's published tables; not the project's causal preprocessing the rig runs.",
        **(notes or {}),
    })
    return results


def _fits(cls, dataset) -> bool:
    name = cls.__name__
    if name == "CrossSessionEvaluation":
        return dataset.n_sessions > 1
    if name == "CrossSubjectEvaluation":
        return len(dataset.subject_list) > 1
    return True


def _options(pairs: list[str]) -> dict[str, Any]:
    import yaml

    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ValueError(f"'--option' ({pair!r}) must be KEY=VALUE, e.g. n_subjects=3.")
        out[key] = yaml.safe_load(value)
    return out


def _int_list(text: str | None, what: str) -> list[int] | None:
    if text is None:
        return None
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"'{what}' ({text!r}) must be comma-separated integers, e.g. 1,2,3.") from None


def register(subparsers: argparse._SubParsersAction) -> None:
    from .quiet import add_verbose

    p = subparsers.add_parser(
        "benchmark", help="MOABB's evaluations (within-session, cross-session, cross-subject) of the decoders",
        description="Score this project's decoders and the classical references (CSP+LDA, TS+LR) on MOABB datasets "
                    "with MOABB's own evaluation protocols, and write results.csv with MOABB's columns (score, time, "
                    "samples, subject, session, channels, n_sessions, dataset, pipeline, evaluation) beside "
                    "notes.json. MOABB's paradigms filter the data with zero-phase (non-causal) filters.")
    p.add_argument("--dataset", action="append", required=True, metavar="NAME",
                   help="MOABB dataset class name, e.g. BNCI2014_001 (repeatable)")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                   help="keyword argument of the dataset's constructor (YAML value), e.g. n_subjects=3 (repeatable)")
    p.add_argument("--subjects", metavar="S1,S2,...", help="only these subjects")
    p.add_argument("--download", action="store_true", help="let MOABB download data that are not on disk")
    p.add_argument("--paradigm", default="MotorImagery", help="MOABB paradigm class (default MotorImagery)")
    p.add_argument("--events", metavar="E1,E2,...", help="the paradigm's events (MOABB's names, e.g. left_hand,right_hand)")
    p.add_argument("--fmin", type=float, help="paradigm band-pass low edge in Hz (MOABB's default when omitted)")
    p.add_argument("--fmax", type=float, help="paradigm band-pass high edge in Hz")
    p.add_argument("--tmin", type=float, help="window start in s after the dataset's interval start")
    p.add_argument("--tmax", type=float, help="window end in s")
    p.add_argument("--resample", default="128", metavar="HZ|none",
                   help="paradigm resampling rate, also the decoders' sfreq (default 128; 'none' keeps the dataset's)")
    p.add_argument("--evaluations", default="within-session", metavar="E1,E2",
                   help=f"comma-separated among {', '.join(EVALUATIONS)} (default within-session)")
    p.add_argument("--pipelines", default="CSP+LDA,TS+LR,logvar", metavar="P1,P2",
                   help="classical references (CSP+LDA, TS+LR) and registered decoders (default CSP+LDA,TS+LR,logvar)")
    p.add_argument("--max-epochs", type=int, default=50, help="training passes of each decoder per fold (default 50)")
    p.add_argument("--seed", type=int, default=0, help="seeds MOABB's folds and the decoders")
    p.add_argument("--out", default="benchmarks/moabb", help="output folder (default benchmarks/moabb)")
    add_verbose(p)
    p.set_defaults(func=_main)


def _main(args: argparse.Namespace) -> int:
    from datasets.moabb_source import check_downloaded, make_dataset

    resample = None if args.resample.lower() == "none" else float(args.resample)
    if resample is not None and resample <= 0:
        raise ValueError(f"'--resample' ({args.resample}) must be a positive rate in Hz or 'none'.")
    subjects = _int_list(args.subjects, "--subjects")
    options = _options(args.option)
    datasets = []
    for name in args.dataset:
        dataset = make_dataset(name, options)
        if subjects is not None:
            missing = [s for s in subjects if s not in dataset.subject_list]
            if missing:
                raise ValueError(f"'--subjects' has {missing}, which {name} does not have; it has "
                                 f"{dataset.subject_list[0]}..{dataset.subject_list[-1]}.")
            dataset.subject_list = subjects
        if not args.download:
            check_downloaded(dataset, name, list(dataset.subject_list))
        datasets.append(dataset)
    events = [e for e in args.events.split(",") if e] if args.events else None
    paradigm_kwargs = {"fmin": args.fmin, "fmax": args.fmax, "tmin": args.tmin, "tmax": args.tmax,
                       "resample": resample, "events": events}
    if events and args.paradigm == "MotorImagery":
        paradigm_kwargs["n_classes"] = len(events)
    paradigm = make_paradigm(args.paradigm, **paradigm_kwargs)
    pipelines = make_pipelines([p for p in args.pipelines.split(",") if p], resample, args.max_epochs, args.seed)
    evaluations = [e for e in args.evaluations.split(",") if e]
    results = run_benchmark(datasets, paradigm, evaluations, pipelines, Path(args.out), seed=args.seed,
                            notes={"command": "bmi benchmark", "max_epochs": args.max_epochs})
    summary = results.groupby(["dataset", "evaluation", "pipeline"])["score"].agg(["mean", "std", "count"])
    print(summary.to_string(float_format=lambda v: f"{v:.3f}"))
    print(f"results: {Path(args.out) / 'results.csv'} (MOABB's columns; notes.json says how it was run)")
    return 0
