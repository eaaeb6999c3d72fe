"""Typed configuration from plain mappings (YAML), with errors that name the key and what is allowed.

Every config section in the project is a dataclass. :func:`from_mapping` builds one from a dict,
recursing into nested dataclasses, and refuses unknown keys with the list of valid ones and the
closest match. :func:`apply_overrides` applies dotted ``key=value`` overrides (values parsed as YAML)
to a plain mapping before it is typed. Light: standard library and PyYAML only.
"""

from __future__ import annotations

import re

import dataclasses
import difflib
import types
import typing
from pathlib import Path
from typing import Any, Mapping, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A configuration value or key is invalid; the message names it and what is allowed."""


def _suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def unknown_key_error(key: str, valid: list[str], where: str) -> ConfigError:
    """The error for an unknown config key: it names the key, where it was, the valid keys and the closest one.

    Parameters
    ----------
    key : str
        The key that is not known.
    valid : list of str
        The keys allowed there.
    where : str
        The section, e.g. ``config.trainer``.

    Returns
    -------
    ConfigError
        The error to raise.
    """
    return ConfigError(
        f"Unknown key {key!r} in {where}. Valid keys: {', '.join(sorted(valid))}.{_suggest(key, valid)}"
    )


def _is_dataclass_type(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to annotation ``tp`` where that is unambiguous; otherwise check it."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any or tp is object:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(f"{where}: {value!r} does not fit {tp}: " + "; ".join(errors))
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where} ({value!r}) must be one of {', '.join(map(repr, args))}.")
        return value
    if _is_dataclass_type(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping of {tp.__name__} fields, got {value!r}.")
        return from_mapping(tp, value, where)
    if origin in (list, tuple, typing.Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {value!r}.")
        item_tp = args[0] if args else Any
        items = [_coerce(v, item_tp, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if (origin is tuple or tp is tuple) else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where} must be a mapping, got {value!r}.")
        k_tp, v_tp = args if args else (Any, Any)
        return {_coerce(k, k_tp, f"{where} key"): _coerce(v, v_tp, f"{where}[{k!r}]") for k, v in value.items()}
    if tp is float:
        # PyYAML (YAML 1.1) reads "3e-3" as a string; accept plain scientific notation as a number
        if isinstance(value, str) and re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)[eE][+-]?\d+", value.strip()):
            value = float(value)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where} must be a number, got {value!r}.")
        return float(value)
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}.")
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}.")
        return value
    if tp is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}.")
        return value
    return value


def from_mapping(cls: type[T], data: Mapping[str, Any] | None, where: str | None = None) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise :class:`ConfigError`.

    After construction the dataclass's own ``__post_init__`` runs, so cross-field checks live there.
    """
    where = where or cls.__name__
    data = dict(data or {})
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise unknown_key_error(str(key), list(fields), where)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    try:
        return cls(**kwargs)
    except TypeError as err:  # a required field is missing
        raise ConfigError(f"{where}: {err}") from None


def to_mapping(obj: Any) -> Any:
    """Plain, YAML/JSON-serialisable view of a (nested) dataclass."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_mapping(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_mapping(v) for v in obj]
    if isinstance(obj, dict):
        return {str(k): to_mapping(v) for k, v in obj.items()}
    if isinstance(obj, Path):
        return str(obj)
    return obj


def apply_overrides(data: dict[str, Any], overrides: list[str] | None, cls: type | None = None) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides to a nested mapping; values are parsed as YAML (``3``, ``[1, 2]``).

    With ``cls`` (the dataclass the mapping will become) an unknown dotted path is refused at once with
    the valid keys at that level.
    """
    data = dict(data)
    for item in overrides or []:
        if "=" not in item:
            raise ConfigError(f"Override {item!r} must look like key.path=value.")
        path, raw = item.split("=", 1)
        keys = path.strip().split(".")
        value = yaml.safe_load(raw)
        node = data
        node_cls = cls
        for i, key in enumerate(keys):
            if node_cls is not None and _is_dataclass_type(node_cls):
                names = {f.name: f for f in dataclasses.fields(node_cls)}
                if key not in names:
                    raise unknown_key_error(key, list(names), ".".join(keys[:i]) or "config")
                hint = typing.get_type_hints(node_cls)[key]
                node_cls = next((a for a in (hint, *typing.get_args(hint)) if _is_dataclass_type(a)), None)
            else:
                node_cls = None
            if i == len(keys) - 1:
                node[key] = value
            else:
                child = node.get(key)
                child = dict(child) if isinstance(child, Mapping) else {}
                node[key] = child
                node = child
    return data


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with a clear error for a missing file or a non-mapping document."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"Config file {path} is not valid YAML: {err}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"Config file {path} must hold a mapping at the top level, got {type(data).__name__}.")
    return data
