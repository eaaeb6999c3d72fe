"""Decoders by name: ``build("eegnet", n_chans=..., n_times=..., n_outputs=...)``."""

from __future__ import annotations

import difflib
import inspect
from typing import Any, Callable

from torch import nn

_REGISTRY: dict[str, type[nn.Module]] = {}


def register(name: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator adding a decoder to the registry under ``name``."""

    def deco(cls: type[nn.Module]) -> type[nn.Module]:
        if name in _REGISTRY:
            raise ValueError(f"A decoder named {name!r} is already registered ({_REGISTRY[name].__name__}).")
        _REGISTRY[name] = cls
        cls.registry_name = name
        return cls

    return deco


def available() -> list[str]:
    """Names of every registered decoder, sorted."""
    return sorted(_REGISTRY)


def get(name: str) -> type[nn.Module]:
    """The decoder class registered under ``name``.

    Parameters
    ----------
    name : str
        A registered name (:func:`available` lists them).

    Returns
    -------
    type
        The ``nn.Module`` subclass.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones and the closest match.
    """
    if name not in _REGISTRY:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown model {name!r}. Known models: {', '.join(available())}.{hint}")
    return _REGISTRY[name]


def check_params(name: str, params: dict[str, Any]) -> None:
    """Refuse an unknown model name (listing the known ones) or keyword arguments its class does not take
    (listing the valid ones), without building anything: a config is checked before any data are read."""
    cls = get(name)
    valid = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in params if k not in valid]
    if unknown:
        raise TypeError(f"Model {name!r} has no parameter(s) {unknown}; valid: {', '.join(valid)}.")
    nested = getattr(cls, "check_nested_params", None)  # a composite decoder checks its members' too
    if nested is not None:
        nested(params)


def default_setting(name: str, params: dict[str, Any], key: str, fallback: Any) -> Any:
    """A decoder's training default (``default_lr``, ``default_augment``) for these hyperparameters: the class's
    own, or what a composite decoder (``gated``) derives from its members' (its ``member_default``)."""
    cls = get(name)
    hook = getattr(cls, "member_default", None)
    return hook(params, key, fallback) if hook is not None else getattr(cls, key, fallback)


def build(name: str, **kwargs: Any) -> nn.Module:
    """Build decoder ``name``; unknown hyperparameters are refused with the valid ones listed."""
    check_params(name, kwargs)
    return get(name)(**kwargs)


def hyperparameters(module: nn.Module) -> dict[str, Any]:
    """The registry name and constructor arguments of a decoder (defaults included, signal arguments as resolved),
    however it was built: decoders record them themselves (:attr:`models.base.Decoder.hparams`)."""
    hparams = getattr(module, "hparams", None)
    if not isinstance(hparams, dict):
        raise ValueError(f"{type(module).__name__} does not describe itself: it is not a models.base.Decoder "
                         "(nor an ensemble of them).")
    name = getattr(module, "registry_name", None) or type(module).__name__
    return {"name": name, **hparams}
