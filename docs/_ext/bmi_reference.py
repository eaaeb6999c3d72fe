"""Reference pages generated from the code at every build, so they cannot drift from it.

A Sphinx extension (``docs/conf.py`` loads it): when the build starts it writes ``docs/reference/*.rst``
(all but ``index.rst``, which is written by hand; the generated ones are git-ignored) from

- the typed config dataclasses (``pipeline.record.config.ExperimentConfig``, with ``datasets.config.DataConfig``
  inside it): every key with its type, its default and its documentation (the class docstring and the comment
  on the field's line);
- the ``bmi`` command's argparse parsers (``pipeline.cli.build_parser``): every command and option;
- the ONNX metadata schema (``exports.metadata``: its docstring and the typed sections);
- the controller messages (``exports.runtime.outputs``) and their fields, checked against the fields the server
  writes (``exports.runtime.server.LOG_FIELDS``), the TCP input (``exports.runtime.inputs`` and
  ``exports.runtime.protocol``) and the session log's columns.

Where the code has a field that this module has no description for (a new message field, a new log column), the
build fails with the name: a description is written once, here, and the code's list decides what is shown.
The pages are written only when their text changes, so an unchanged build stays incremental.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import importlib
import inspect
import io
import textwrap
import tokenize
import typing
from pathlib import Path
from typing import Any

from sphinx.errors import ExtensionError

HERE = Path(__file__).resolve().parent
REFERENCE = HERE.parent / "reference"

# --------------------------------------------------------------------------------------------------------------
# small RST helpers


def title(text: str, char: str = "=", over: bool = False) -> str:
    line = char * max(len(text), 3)
    return f"{line}\n{text}\n{line}\n\n" if over else f"{text}\n{line}\n\n"


def literal(text: str) -> str:
    """Inline literal that survives backquotes and empty strings."""
    text = str(text).replace("\n", " ")
    if not text:
        return "``''``"
    if "``" in text or text.startswith("`") or text.endswith("`"):
        return ":code:`" + text.replace("`", "\\`") + "`"
    return f"``{text}``"


def cell(text: str) -> str:
    """One list-table cell: continuation lines indented under the ``- `` marker."""
    lines = str(text).strip().splitlines() or [""]
    return "\n".join([lines[0]] + ["        " + ln if ln.strip() else "" for ln in lines[1:]])


def list_table(header: list[str], rows: list[list[str]], widths: list[int], cls: str = "") -> str:
    out = [".. list-table::", "   :header-rows: 1", f"   :widths: {' '.join(map(str, widths))}"]
    if cls:
        out.append(f"   :class: {cls}")
    out.append("")
    for row in [header, *rows]:
        for i, value in enumerate(row):
            out.append(("   * - " if i == 0 else "     - ") + cell(value).replace("\n        ", "\n       "))
    return "\n".join(out) + "\n\n"


def docstring(obj: Any) -> str:
    """``obj``'s docstring as RST; one that is not valid RST is shown as it is written, in a literal block."""
    text = inspect.cleandoc(obj.__doc__ or "")
    return text if valid_rst(text) else "::\n\n" + textwrap.indent(text, "   ")


def valid_rst(text: str) -> bool:
    """Whether docutils parses ``text`` without a warning (roles and directives of Sphinx aside)."""
    from docutils.core import publish_doctree
    from docutils.utils import Reporter

    messages = []
    settings = {"report_level": Reporter.SEVERE_LEVEL + 1, "halt_level": Reporter.SEVERE_LEVEL + 1,
                "warning_stream": io.StringIO()}
    doctree = publish_doctree(text, settings_overrides=settings)
    for node in doctree.traverse():
        if node.tagname == "system_message" and node["level"] >= Reporter.WARNING_LEVEL:
            body = node.astext()
            if "Unknown interpreted text role" not in body and "Unknown directive type" not in body:
                messages.append(body)
    return not messages


# --------------------------------------------------------------------------------------------------------------
# typed dataclasses -> key tables


def field_comments(cls: type) -> dict[str, str]:
    """The comment on each field's line in the class source (``x: int = 3  # what x is``)."""
    try:
        source = textwrap.dedent(inspect.getsource(cls))
    except (OSError, TypeError):
        return {}
    comments: dict[int, str] = {}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type == tokenize.COMMENT:
            comments[tok.start[0]] = tok.string.lstrip("#").strip()
    out = {}
    for node in ast.parse(source).body[0].body:
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            text = " ".join(comments[n] for n in range(node.lineno, node.end_lineno + 1) if n in comments)
            if text:
                out[node.target.id] = text
    return out


def default_text(f: dataclasses.Field) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        if dataclasses.is_dataclass(value):
            return "(section)"
    else:
        return "**required**"
    if value is None:
        return literal("null")
    if isinstance(value, bool):
        return literal(str(value).lower())
    return literal(repr(value) if isinstance(value, str) else value)


def nested_dataclass(tp: Any) -> type | None:
    """The dataclass inside ``tp`` (``X``, ``X | None``), if any."""
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return tp
    for arg in typing.get_args(tp):
        found = nested_dataclass(arg)
        if found is not None:
            return found
    return None


def dataclass_sections(cls: type, prefix: str, level_chars: str = "-^~") -> list[tuple[str, type]]:
    """``(dotted prefix, dataclass)`` for ``cls`` and every dataclass reachable through its fields."""
    out = [(prefix, cls)]
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        inner = nested_dataclass(hints[f.name])
        if inner is not None:
            out += dataclass_sections(inner, f"{prefix}.{f.name}" if prefix else f.name)
    return out


def key_table(cls: type, prefix: str, link_sections: bool = True) -> str:
    comments = field_comments(cls)
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        key = f"{prefix}.{f.name}" if prefix else f.name
        doc = comments.get(f.name, "")
        if nested_dataclass(hints[f.name]) is not None and link_sections:
            doc = (doc + " " if doc else "") + f"See :ref:`{anchor(key)}`."
        rows.append([f"``{key}``", literal(f.type if isinstance(f.type, str) else getattr(f.type, "__name__", f.type)),
                     default_text(f), doc])
    return list_table(["key", "type", "default", "description"], rows, [22, 22, 14, 42])


def anchor(key: str) -> str:
    return "cfg-" + (key.replace(".", "-").replace("_", "-") or "top")


def config_page() -> str:
    from pipeline.record.config import ExperimentConfig

    out = [title("Configuration keys", "#", over=True)]
    out.append(
        "Every key of an experiment config (``bmi train CONFIG.yaml``), generated at each build from the typed "
        "dataclasses that load it (:class:`pipeline.record.config.ExperimentConfig`, its ``data:`` section "
        ":class:`datasets.config.DataConfig`), with its type, default and documentation. Unknown keys are refused "
        "with the valid ones and the closest match; any key can be overridden on the command line with "
        "``--set section.key=value`` (the value is read as YAML).\n\n"
        ".. code-block:: yaml\n\n"
        "   data:\n     files: [recordings/*.edf]\n     events: {T1: left, T2: right}\n     tmin: 0.5\n     tmax: 2.5\n"
        "   model:\n     name: eegnet\n   trainer:\n     max_epochs: 60\n\n"
    )
    for key, cls in dataclass_sections(ExperimentConfig, ""):
        out.append(f".. _{anchor(key)}:\n\n")
        heading = f"{key}" if key else "Top level"
        out.append(title(heading, "="))
        out.append(f"Typed by :class:`{cls.__module__}.{cls.__qualname__}`.\n\n")
        doc = docstring(cls)
        if doc:
            out.append(doc + "\n\n")
        out.append(key_table(cls, key))
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------
# argparse -> command pages


def subcommands(parser: argparse.ArgumentParser, prog: str) -> list[tuple[str, argparse.ArgumentParser, str]]:
    """``(full command, parser, one-line help)`` for every leaf and group under ``parser``, depth first."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
            for name, sub in action.choices.items():
                full = f"{prog} {name}"
                out.append((full, sub, helps.get(name, "")))
                out += subcommands(sub, full)
    return out


def option_rows(parser: argparse.ArgumentParser) -> list[list[str]]:
    formatter = parser._get_formatter()
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) or action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = "" if action.nargs == 0 else " " + formatter._format_args(action, action.dest.upper())
            name = ", ".join(f"{s}{metavar}" for s in action.option_strings)
        else:
            name = formatter._metavar_formatter(action, action.dest)(1)[0]
        help_text = formatter._expand_help(action) if action.help else ""
        default = action.default
        if default in (None, False, argparse.SUPPRESS) or action.nargs == 0 or default == []:
            shown = ""
        else:
            shown = literal(default)
        extra = []
        if action.choices is not None and not isinstance(action.choices, dict):
            extra.append("one of " + ", ".join(literal(c) for c in action.choices))
        if action.required and action.option_strings:
            extra.append("**required**")
        if extra:
            help_text = (help_text + " (" + "; ".join(extra) + ")").strip()
        rows.append([literal(name), shown, escape(help_text)])
    return rows


def escape(text: str) -> str:
    """Plain help text as RST: no stray markup from ``*``, ``|``, backquotes or a trailing underscore."""
    for ch in ("\\", "*", "`", "|", "_"):
        text = text.replace(ch, "\\" + ch)
    return text


def cli_page() -> str:
    from pipeline.cli import build_parser

    parser = build_parser()
    out = [title("Command line: ``bmi``", "#", over=True)]
    out.append(
        "Every command of ``bmi``, generated at each build from its argparse parsers "
        "(:func:`pipeline.cli.build_parser`, which asks each subsystem to register its commands). "
        "``bmi COMMAND --help`` prints the same text.\n\n"
        ".. code-block:: text\n\n" + textwrap.indent(parser.format_usage().strip(), "   ") + "\n\n"
    )
    commands = subcommands(parser, "bmi")
    summary = [[f":ref:`{full} <{cli_anchor(full)}>`", escape(help_)] for full, _, help_ in commands]
    out.append(list_table(["command", "what it does"], summary, [25, 75]))
    for full, sub, help_ in commands:
        out.append(f".. _{cli_anchor(full)}:\n\n")
        out.append(title(full, "="))
        description = sub.description or help_
        if description:
            out.append(escape(inspect.cleandoc(description)) + "\n\n")
        usage = sub.format_usage().strip().removeprefix("usage: ")
        out.append(".. code-block:: text\n\n" + textwrap.indent(usage, "   ") + "\n\n")
        rows = option_rows(sub)
        if rows:
            out.append(list_table(["argument", "default", "meaning"], rows, [28, 14, 58]))
    return "".join(out)


def cli_anchor(full: str) -> str:
    return "cli-" + full.replace(" ", "-").replace("_", "-")


# --------------------------------------------------------------------------------------------------------------
# the ONNX metadata schema


def metadata_page() -> str:
    from exports import metadata

    out = [title("ONNX metadata schema", "#", over=True)]
    out.append(
        f"Every model ``bmi export`` writes carries one JSON document in its ONNX ``metadata_props`` under the key "
        f"{literal(metadata.METADATA_KEY)} (schema {literal(metadata.SCHEMA)}, version "
        f"{metadata.SCHEMA_VERSION}). The runtime reads nothing else: channels, rate, window, preprocessing and "
        "normalisation come from it. ``bmi inspect MODEL.onnx`` prints it. Generated from "
        ":mod:`exports.metadata`.\n\n"
    )
    out.append(title("The document", "="))
    out.append(docstring(metadata) + "\n\n")
    out.append(title("Typed sections", "="))
    out.append("Checked by :func:`exports.metadata.parse_metadata` when a model is written and when it is read; "
               "keys a newer exporter adds are ignored.\n\n")
    for key, cls in dataclass_sections(metadata.DecoderMetadata, ""):
        out.append(f".. _{anchor('meta-' + key)}:\n\n")
        out.append(title(key or "top level", "-"))
        doc = docstring(cls)
        if doc and not doc.startswith(cls.__name__ + "("):  # not the dataclass's generated signature
            out.append(doc + "\n\n")
        table = key_table(cls, key, link_sections=False)
        out.append(table)
    return "".join(out)


# --------------------------------------------------------------------------------------------------------------
# messages, the TCP input and the session log

#: every field of a message the server sends (and of a session log row), described once
MESSAGE_FIELDS = {
    "type": "``decision`` (a decoded window), ``safe`` (entering the safe state; ``reason`` says why), "
            "``heartbeat`` (every hop while safe) or ``stop`` (the server's last message)",
    "seq": "message number, growing within a session (it may skip numbers); a controller drops one not newer "
           "than the newest it has seen in that session",
    "t_wall": "the server computer's wall clock (Unix seconds) when the message was made",
    "t_window_end": "when the window's last sample was acquired, on the server computer's clock (seconds); "
                    "null on safe messages",
    "sample_index": "samples received since the stream started",
    "command": "the decoded class (after smoothing and the gate)",
    "action": "what the hand does: ``grasp``, ``open`` or ``hold`` (safe messages always ``hold``)",
    "confidence": "the smoothed probability of ``command``",
    "level": "proportional control level in [-1, 1]: P(class mapped to grasp) - P(class mapped to open)",
    "probabilities": "every class's probability from the decoder (an object keyed by class)",
    "latency_ms": "chunk received -> command sent (ms)",
    "age_ms": "the window's last sample acquired -> command sent (ms); a window older than ``--max-age-ms`` is "
              "never sent as a command",
    "safe": "true on safe messages: the hand holds",
    "reason": "why the server is in the safe state (stale stream, artifact, settling, operator stop ...), empty "
              "on decisions",
    "sham": "true when the session decodes with a sham (random) decoder, blinded (session log only)",
    "condition_code": "the blinded session's condition code from the session plan (session log only)",
    "gate": "a gated decoder's gate output (probability of movement), NaN without a gate",
}
#: fields on the wire that the session log does not hold
WIRE_ONLY = {
    "session": "16 random hex digits, new for every run of ``bmi serve``: a new session starts ``seq`` afresh",
    "timeout_ms": "the silence after which the controller must hold (``--stale-ms`` + 2 hops + 100 ms: 450 by "
                  "default)",
    "token": "present when the output spec carries ``?token=...`` (a rig listening beyond loopback needs one)",
}
#: columns of the rig simulator's log (``bmi rig --log``)
RIG_COLUMNS = {
    "t_arrival": "when the message arrived at the rig (its clock, seconds)",
    "seq": "the message's ``seq``",
    "type": "the message's ``type``, or ``timeout`` when the rig held after silence",
    "command": "the message's ``command``",
    "action": "the action the hand took",
    "level": "the message's ``level``",
    "safe": "the message's ``safe``",
    "aperture": "the simulated hand's aperture after the message (0 closed, 1 open)",
    "latency_ms": "the message's ``latency_ms``",
    "t_window_end": "the message's ``t_window_end``",
    "session": "the message's ``session``",
}


def check_described(names: list[str], described: dict[str, str], where: str) -> None:
    missing = [n for n in names if n not in described]
    stale = [n for n in described if n not in names]
    if missing or stale:
        raise ExtensionError(
            f"docs/_ext/bmi_reference.py: the descriptions of {where} disagree with the code: "
            f"undocumented {missing}, documented but gone {stale}. Describe each field once, in this module."
        )


def messages_page() -> str:
    from exports.runtime import outputs
    from exports.runtime.server import LOG_FIELDS

    fields = [f for f in LOG_FIELDS if f not in ("sham", "condition_code")]
    check_described(LOG_FIELDS, MESSAGE_FIELDS, "exports.runtime.server.LOG_FIELDS")
    out = [title("Controller messages", "#", over=True)]
    out.append(
        "What ``bmi serve`` sends to the hand controller (``--output``, repeatable), and what every controller must "
        "do with it. Generated from :mod:`exports.runtime.outputs` and the fields the server writes "
        "(``exports.runtime.server.LOG_FIELDS``).\n\n"
    )
    out.append(title("One JSON object per line", "="))
    out.append(
        "UDP, TCP and LSL outputs carry one JSON object per line, for example\n\n"
        ".. code-block:: json\n\n"
        '   {"type": "decision", "seq": 812, "t_wall": 1795535689.17, "t_window_end": 43211.532,\n'
        '    "sample_index": 20400, "command": "grasp", "action": "grasp", "confidence": 0.81, "level": 0.66,\n'
        '    "probabilities": {"rest": 0.09, "grasp": 0.81, "open": 0.10}, "latency_ms": 0.8, "age_ms": 21.2,\n'
        '    "safe": false, "reason": "", "gate": 0.93, "session": "5f0c3a9e1d2b4c68", "timeout_ms": 450}\n\n'
    )
    rows = [[literal(f), MESSAGE_FIELDS[f]] for f in fields] + [[literal(f), d] for f, d in WIRE_ONLY.items()]
    out.append(list_table(["field", "meaning"], rows, [20, 80]))
    out.append(title("Outputs and the controller contract", "="))
    out.append(docstring(outputs).replace("(its fields: docs/reference/messages.rst)", "(the fields above)") + "\n\n")
    out.append(f"The default controller timeout, :data:`exports.runtime.outputs.DEFAULT_TIMEOUT_MS`, is "
               f"{outputs.DEFAULT_TIMEOUT_MS} ms.\n\n")
    return "".join(out)


def inputs_page() -> str:
    from exports.runtime import inputs, protocol

    out = [title("Stream input and the TCP protocol", "#", over=True)]
    out.append("How ``bmi serve`` receives the amplifier's samples (``--input``). Generated from "
               ":mod:`exports.runtime.inputs` and :mod:`exports.runtime.protocol`.\n\n")
    out.append(title("Sources", "="))
    out.append(docstring(inputs) + "\n\n")
    out.append(title("The TCP framed protocol", "="))
    out.append(docstring(protocol) + "\n\n")
    header = protocol.HEADER
    out.append(
        f"In :mod:`struct` terms the header is {literal(header.format)} ({header.size} bytes), the magic "
        f"{literal(protocol.MAGIC)}, and the largest payload by default {protocol.DEFAULT_MAX_PAYLOAD} bytes. "
        ":func:`exports.runtime.protocol.encode_hello` and :func:`exports.runtime.protocol.encode_data` write "
        "frames; a client in Python:\n\n"
        ".. code-block:: python\n\n"
        "   import socket, time\n"
        "   import numpy as np\n"
        "   from exports.runtime.protocol import encode_data, encode_hello\n\n"
        "   sock = socket.create_connection((\"127.0.0.1\", 7000))\n"
        "   sock.sendall(encode_hello([\"C3\", \"Cz\", \"C4\"], 250.0, units=\"uV\"))\n"
        "   chunk = np.zeros((3, 10), dtype=np.float32)  # [n_chans, n_samples]\n"
        "   sock.sendall(encode_data(chunk, time.monotonic()))\n\n"
    )
    return "".join(out)


def session_log_page() -> str:
    from exports.runtime import session_log
    from exports.runtime.rig import RIG_FIELDS
    from exports.runtime.server import LOG_FIELDS

    check_described(RIG_FIELDS, RIG_COLUMNS, "exports.runtime.rig.RIG_FIELDS")
    out = [title("Session log columns", "#", over=True)]
    out.append(docstring(session_log) + "\n\n")
    out.append(title("``bmi serve --log``", "="))
    out.append("One row per message the server sent, in this column order (``exports.runtime.server.LOG_FIELDS``); "
               "see :doc:`messages` for the messages themselves. ``probabilities`` is the JSON object as sent.\n\n")
    out.append(list_table(["column", "meaning"], [[literal(f), MESSAGE_FIELDS[f]] for f in LOG_FIELDS], [20, 80]))
    out.append(title("``bmi rig --log``", "="))
    out.append("The rig simulator's log: one row per message it received and per timeout "
               "(``exports.runtime.rig.RIG_FIELDS``).\n\n")
    out.append(list_table(["column", "meaning"], [[literal(f), RIG_COLUMNS[f]] for f in RIG_FIELDS], [20, 80]))
    return "".join(out)


PAGES = {
    "config": config_page,
    "cli": cli_page,
    "metadata": metadata_page,
    "messages": messages_page,
    "inputs": inputs_page,
    "session_log": session_log_page,
}


def write_pages(out_dir: Path = REFERENCE) -> list[Path]:
    """Write every generated page (only where its text changed); returns the paths."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, make in PAGES.items():
        path = out_dir / f"{name}.rst"
        text = ".. This page is generated by docs/_ext/bmi_reference.py at every build: edit the code, not it.\n\n" + make()
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        written.append(path)
    return written


def _builder_inited(app) -> None:
    write_pages()


def setup(app):
    app.connect("builder-inited", _builder_inited)
    return {"version": "1", "parallel_read_safe": True, "parallel_write_safe": True}


if __name__ == "__main__":  # python docs/_ext/bmi_reference.py: write the pages without building
    for p in write_pages():
        print(p)
