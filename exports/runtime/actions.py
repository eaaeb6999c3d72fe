"""What each decoded class makes the hand do: grasp (close), open, or hold (stay still).

Every message carries both the decoded class (``command``) and the hand ``action``; controllers act on
the action. Classes named like hand movements map by default; any other class (``left``, ``feet``) must
be mapped explicitly, so a model never drives a hand in a way nobody chose.
"""

from __future__ import annotations

HAND_ACTIONS = ("grasp", "open", "hold")
DEFAULT_ACTIONS = {"grasp": "grasp", "close": "grasp", "open": "open", "rest": "hold", "hold": "hold"}
SAFE_ACTION = "hold"


def parse_action_args(items: list[str] | None) -> dict[str, str]:
    """``["left=open", "right=grasp,feet=hold"]`` -> ``{"left": "open", ...}``."""
    mapping: dict[str, str] = {}
    for item in items or []:
        for pair in filter(None, (p.strip() for p in item.split(","))):
            cls, sep, action = pair.partition("=")
            if not sep or not cls or not action:
                raise ValueError(f"'--action' ({pair!r}) must be CLASS=ACTION with ACTION one of {list(HAND_ACTIONS)}.")
            mapping[cls.strip()] = action.strip()
    return mapping


def action_options(mapping: dict[str, str]) -> list[str]:
    """``{"left": "open"}`` -> ``["--action", "left=open"]``: the options that give ``bmi serve`` that mapping."""
    return [arg for cls, action in mapping.items() for arg in ("--action", f"{cls}={action}")]


def plan_actions(classes: list[str], overrides: dict[str, str]) -> dict[str, str]:
    """The action of every class: the defaults, then ``overrides``; refuses unknown or unmapped classes."""
    unknown = sorted(set(overrides) - set(classes))
    if unknown:
        raise ValueError(f"'--action' names {unknown}, not classes of the model {classes}.")
    bad = {c: a for c, a in overrides.items() if a not in HAND_ACTIONS}
    if bad:
        raise ValueError(f"'--action' maps to {sorted(set(bad.values()))}; hand actions are {list(HAND_ACTIONS)}.")
    actions = {c: overrides.get(c, DEFAULT_ACTIONS.get(c)) for c in classes}
    unmapped = [c for c, a in actions.items() if a is None]
    if unmapped:
        example = " ".join(f"--action {c}={a}" for c, a in zip(unmapped, ("open", "grasp", "hold", "hold")))
        raise ValueError(
            f"The classes {unmapped} have no hand action (by default grasp/close -> grasp, open -> open, "
            f"rest -> hold). Choose one for each with --action CLASS=grasp|open|hold, e.g. {example}."
        )
    return actions


def level_classes(actions: dict[str, str]) -> tuple[str, str] | None:
    """The (grasp, open) class pair whose probability difference drives proportional control, if unique."""
    grasp = [c for c, a in actions.items() if a == "grasp"]
    open_ = [c for c, a in actions.items() if a == "open"]
    return (grasp[0], open_[0]) if len(grasp) == 1 and len(open_) == 1 else None
