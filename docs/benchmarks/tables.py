"""Benchmark tables generated from the results files, so no figure is typed twice.

Every file in ``docs/benchmarks/results/`` holds one benchmark: ``benchmark`` (its name), ``title``, ``date``,
``machine``, ``command`` (what produced it), ``columns``, ``rows`` (cells as strings, in the results' own
Markdown-like inline markup: ```code``` and ``**bold**``), ``notes`` (the measured prose that came with the
table: what was compared, readings and the figures that have no column) and ``source``.

In a page::

    .. results-table:: faults

renders the table, with the date, machine and command under it. The pages are in ``docs/benchmarks/``;
``conf.py`` loads this module as a Sphinx extension (``sys.path`` holding ``docs/benchmarks``,
``extensions`` holding ``"tables"``), or calls :func:`setup` itself.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
REQUIRED = ("benchmark", "title", "date", "machine", "command", "columns", "rows", "notes")


def load(name: str) -> dict:
    """Read and check one results file, by its name (``faults``) or its path."""
    path = Path(name) if name.endswith(".json") else RESULTS / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in RESULTS.glob("*.json"))
        raise FileNotFoundError(f"no results file {str(path)!r}; known benchmarks: {', '.join(known)}")
    data = json.loads(path.read_text())
    missing = [key for key in REQUIRED if key not in data]
    if missing:
        raise ValueError(f"results file {str(path)!r} lacks {missing}; a results file holds {list(REQUIRED)}")
    width = len(data["columns"])
    for number, row in enumerate(data["rows"], 1):
        if len(row) != width:
            raise ValueError(f"results file {str(path)!r}: row {number} has {len(row)} cells, the table "
                             f"has {width} columns")
    return data


def inline(text: str) -> str:
    """The results' inline markup as reStructuredText: single backticks become literals."""
    return re.sub(r"(?<!`)`([^`]+)`(?!`)", r"``\1``", text)


def rst_lines(data: dict) -> list[str]:
    """The table of one results file as reStructuredText lines, its provenance underneath."""
    lines = [f".. list-table:: {inline(data['title'])}", "   :header-rows: 1", "   :class: benchmark-table", ""]
    for row in [data["columns"], *data["rows"]]:
        for position, cell in enumerate(row):
            cell = inline(str(cell)).strip() or r"\ "
            lines.append(f"   {'*' if position == 0 else ' '} - {cell}")
    lines += ["", f"Measured {data['date']}, on {data['machine']}. Command: ``{data['command']}``. "
              f"Results file: ``docs/benchmarks/results/{data['benchmark']}.json``.", ""]
    return lines


def setup(app):
    """Register the ``results-table`` directive."""
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective

    class ResultsTable(SphinxDirective):
        required_arguments = 1

        def run(self):
            path = RESULTS / f"{self.arguments[0]}.json"
            self.env.note_dependency(str(path))
            lines = rst_lines(load(self.arguments[0]))
            container = nodes.container()
            self.state.nested_parse(StringList(lines, source=str(path)), self.content_offset, container)
            return container.children

    app.add_directive("results-table", ResultsTable)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}
