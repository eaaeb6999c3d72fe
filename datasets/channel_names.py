"""Channel renaming rules, shared by training (reading recordings) and the rig (renaming a live stream).

Light on purpose (standard library only): the runtime imports it, never MNE.
"""

from __future__ import annotations

from typing import Callable, Mapping


def eegbci_name(name: str) -> str:
    """PhysioNet EEG Motor Movement/Imagery names (``C3..``, ``Fc5.``, ``Fpz.``) -> standard 10-05 names
    (``C3``, ``FC5``, ``Fpz``); the same rule as ``mne.datasets.eegbci.standardize``."""
    std = name.strip(".").upper()
    if std.endswith("Z"):
        std = std[:-1] + "z"
    if std.startswith("FP"):
        std = "Fp" + std[2:]
    return std


RULES: dict[str, Callable[[str], str]] = {"eegbci": eegbci_name}


def rename_channels(names: list[str], rule: str | Mapping[str, str] | None) -> list[str]:
    """Apply a named rule (``eegbci``) or an explicit ``{old: new}`` mapping (names not in it are kept)."""
    if rule is None:
        return list(names)
    if isinstance(rule, str):
        if rule not in RULES:
            raise ValueError(f"Unknown channel renaming {rule!r}; known rules: {sorted(RULES)} (or a mapping old -> new).")
        renamed = [RULES[rule](n) for n in names]
    else:
        renamed = [str(rule.get(n, n)) for n in names]
    duplicates = sorted({n for n in renamed if renamed.count(n) > 1})
    if duplicates:
        raise ValueError(f"Renaming gives several channels the same name: {duplicates}.")
    return renamed
