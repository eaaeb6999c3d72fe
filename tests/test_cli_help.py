"""Every command and option of ``bmi`` says what it does, in plain text (no reStructuredText markup)."""

from __future__ import annotations

import argparse
import re

import pytest

from pipeline.cli import build_parser

MARKUP = re.compile(r"``|:(class|func|mod|meth|attr):`")


def _commands(parser: argparse.ArgumentParser, prefix: str = "bmi") -> dict[str, argparse.ArgumentParser]:
    out = {prefix: parser}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                out.update(_commands(sub, f"{prefix} {name}"))
    return out


COMMANDS = _commands(build_parser())


def _command_help(parser: argparse.ArgumentParser) -> dict[str, str]:
    """Each subcommand's one-line help as its parent lists it."""
    return {a.dest: a.help or "" for action in parser._actions if isinstance(action, argparse._SubParsersAction)
            for a in action._choices_actions}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_has_plain_help(command):
    parser = COMMANDS[command]
    missing = [a.option_strings[0] if a.option_strings else a.dest for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction)) and not (a.help or "").strip()]
    assert not missing, f"{command}: no help for {missing}"
    listed = _command_help(parser)
    assert all(listed.values()), f"{command}: subcommands without help: {[k for k, v in listed.items() if not v]}"
    text = parser.format_help()
    assert not MARKUP.search(text), f"{command} --help shows markup: {MARKUP.search(text).group(0)!r}"


def test_the_check_fails_on_a_bare_option():
    parser = argparse.ArgumentParser(prog="x")
    parser.add_argument("--bare")
    global COMMANDS
    saved, COMMANDS = COMMANDS, {"x": parser}
    try:
        with pytest.raises(AssertionError, match=r"no help for \['--bare'\]"):
            test_every_option_has_plain_help("x")
    finally:
        COMMANDS = saved
