"""The docs' results files, written by the benchmark scripts: one shared writer (``--docs-table``).

A results file (``docs/benchmarks/results/NAME.json``, read by ``.. results-table:: NAME``; the format is
``docs/benchmarks/tables.py``'s) holds ``benchmark``, ``title``, ``date``, ``machine``, ``command``, ``columns``,
``rows``, ``notes`` and ``source``. :func:`write_table` fills the date, the machine and the exact command line
itself, keeps the notes of the file it replaces unless the script states new ones (they are measured prose that
no rerun produces), checks the table with ``tables.load``'s own rules and writes it atomically
(``datasets.atomic``): a check that fails leaves the old file in place.

A script's ``--docs-dir`` writes elsewhere (tests and trial runs), never over the committed files; the notes are
still taken from the committed file of that name.
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import sys
from datetime import date
from pathlib import Path
from typing import Any, Sequence

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # datasets.atomic, as the scripts import the project
    sys.path.insert(0, str(ROOT))
DOCS_RESULTS = ROOT / "docs" / "benchmarks" / "results"
MISSING = "—"  # an empty measurement (the tables' own mark)


def _tables():
    """``docs/benchmarks/tables.py``, the format's one definition."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bmi_docs_tables", ROOT / "docs" / "benchmarks" / "tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def machine() -> str:
    """Where this runs: platform, Python, torch (and its build), onnxruntime, the CPUs this process may use, the
    GPU if any. A library that is not installed is said so (the rig's runtime has no torch)."""
    parts = [platform.platform(), f"Python {platform.python_version()}"]
    gpu = "no GPU"
    try:
        import torch

        build = f"CUDA {torch.version.cuda}" if torch.version.cuda else "CPU"
        parts.append(f"torch {torch.__version__.split('+')[0]} ({build})")
        if torch.cuda.is_available():
            names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            gpu = f"{len(names)} GPU{'s' if len(names) > 1 else ''}: {', '.join(sorted(set(names)))}"
    except ImportError:
        parts.append("no torch")
    try:
        import onnxruntime

        parts.append(f"onnxruntime {onnxruntime.__version__}")
    except ImportError:
        parts.append("no onnxruntime")
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    parts += [f"{cpus} CPU cores", gpu]
    return ", ".join(parts)


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran, as typed from the project root: the interpreter and the script relative to it when
    they are inside it, then the arguments exactly."""
    def shown(path: str) -> str:
        p = Path(path)
        if not p.is_absolute():  # as typed
            return path
        try:  # not resolved: .venv/bin/python is a link to the interpreter it was made from
            return str(p.relative_to(ROOT))
        except ValueError:
            return path

    argv = list(sys.argv if argv is None else argv)
    return shlex.join([shown(sys.executable), shown(argv[0]), *argv[1:]])


def existing_notes(name: str, folder: Path) -> list[str] | str:
    """The notes of the file being replaced: ``folder``'s, else the committed one's, else none."""
    for path in (folder / f"{name}.json", DOCS_RESULTS / f"{name}.json"):
        if path.is_file():
            try:
                return json.loads(path.read_text()).get("notes", [])
            except (OSError, ValueError):
                continue
    return []


def write_table(name: str, *, title: str, columns: Sequence[str], rows: Sequence[Sequence[Any]],
                source: str, folder: str | Path | None = None, notes: list[str] | str | None = None,
                argv: Sequence[str] | None = None) -> Path:
    """Write ``folder/NAME.json`` (``folder``: the docs' results folder by default) in the docs' format.

    Parameters
    ----------
    name : str
        The benchmark's name: the file's stem and what ``.. results-table::`` names.
    title, columns, rows
        The table; cells are turned into strings (``None`` into an em dash).
    source : str
        Where the numbers come from (the script, and its raw results file).
    folder : str or Path, optional
        Where to write; the docs' own results folder when None.
    notes : list of str or str, optional
        New notes; None keeps those of the file being replaced (:func:`existing_notes`).
    argv : sequence of str, optional
        The command line to record (``sys.argv`` by default).

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        The table breaks ``tables.load``'s rules (a missing key, a row whose width is not the columns'); nothing
        is written then.
    """
    from datasets import atomic

    folder = Path(folder) if folder is not None else DOCS_RESULTS
    data = {
        "benchmark": name,
        "title": title,
        "date": date.today().isoformat(),
        "machine": machine(),
        "command": command_line(argv),
        "columns": [str(c) for c in columns],
        "rows": [[MISSING if cell is None else str(cell) for cell in row] for row in rows],
        "notes": existing_notes(name, folder) if notes is None else notes,
        "source": source,
    }
    if not data["rows"]:
        raise ValueError(f"results table {name!r} has no rows: nothing was measured")
    path = folder / f"{name}.json"
    with atomic.atomic_path(path, ".json") as tmp:  # checked as written, then renamed over the old file
        tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
        checked = _tables().load(str(tmp))
        if checked["benchmark"] != name:
            raise ValueError(f"results file {path}: 'benchmark' ({checked['benchmark']!r}) is not its name")
    return path


def add_arguments(parser) -> None:
    """``--docs-table`` and ``--docs-dir``, the same in every script that writes a results file."""
    parser.add_argument("--docs-table", action="store_true",
                        help="also write the docs' results file(s) (docs/benchmarks/results/NAME.json) from this run")
    parser.add_argument("--docs-dir", default=None, metavar="DIR",  # a str: scripts dump vars(args) as JSON
                        help="write the docs' results file(s) here instead of docs/benchmarks/results/ "
                             "(implies --docs-table; for tests and trial runs)")


def docs_folder(args) -> Path | None:
    """Where ``--docs-table`` / ``--docs-dir`` asked for the results files, or None when they did not."""
    if args.docs_dir is not None:
        return Path(args.docs_dir)
    return DOCS_RESULTS if args.docs_table else None
