"""Decoders, one architecture per file, built by name: ``models.build("eegnet", n_chans=..., ...)``."""

# imported for their registration
from . import amplitude, bands, cnn_lstm, deep, eegnet, gated, logvar, recurrent, shallow, tcn  # noqa: F401
from .registry import available, build, check_params, default_setting, get, hyperparameters, register

__all__ = ["available", "build", "check_params", "default_setting", "get", "hyperparameters", "register"]
