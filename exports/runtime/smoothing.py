"""From per-window probabilities to a steady command: EMA or majority vote, hysteresis and minimum dwell.

Dwell is counted in stream time (the stream's sample clock at each window's end), never in windows or
wall time: a burst of windows decoded within a millisecond cannot cross it.
"""

from __future__ import annotations

from collections import Counter, deque
from dataclasses import dataclass

import numpy as np


@dataclass
class SmoothingConfig:
    """``method``: "ema" (exponential moving average of probabilities, weight ``alpha`` on the newest),
    "vote" (majority of the last ``k`` argmax decisions) or "none". A new command must beat the current
    one by ``hysteresis`` in (smoothed) probability and the current command must have been held for
    ``dwell_s`` seconds of stream time before it may change."""

    method: str = "ema"
    alpha: float = 0.3
    k: int = 5
    hysteresis: float = 0.1
    dwell_s: float = 0.2

    def __post_init__(self) -> None:
        if self.method not in ("ema", "vote", "none"):
            raise ValueError(f"'smoothing' ({self.method!r}) must be one of ema, vote, none.")
        if not 0 < self.alpha <= 1:
            raise ValueError(f"'ema-alpha' ({self.alpha}) must be in (0, 1].")
        if self.k < 1:
            raise ValueError(f"'vote-k' ({self.k}) must be at least 1.")
        if not 0 <= self.hysteresis < 1:
            raise ValueError(f"'hysteresis' ({self.hysteresis}) must be in [0, 1).")
        if self.dwell_s < 0:
            raise ValueError(f"'dwell' ({self.dwell_s * 1000:g} ms) must be >= 0.")


class Smoother:
    """``hold``: the command every (re)start begins from (the server's safe command: the rest class, or "hold"
    when the model has none). From hold, a movement is commanded only once it has been the smoothed choice (by
    more than the hysteresis over the rest class, where there is one) for the whole dwell in stream time, so
    one window after a start, a resume or any reset cannot move the hand. ``hold=None``: the first window's
    choice is the command at once (a gated decoder's type smoother, whose gate holds instead)."""

    def __init__(self, classes: list[str], cfg: SmoothingConfig, level_pair: tuple[str, str] | None = None,
                 hold: str | None = None):
        self.classes, self.cfg, self.hold = classes, cfg, hold
        self.level_idx = tuple(classes.index(c) for c in level_pair) if level_pair else None
        self.hold_idx = classes.index(hold) if hold in classes else None
        self.reset()

    def reset(self) -> None:
        """Forget every window so far: back to hold (or, with ``hold=None``, no command until the next window)."""
        self._ema: np.ndarray | None = None
        self._votes: deque[int] = deque(maxlen=self.cfg.k)
        self.command: int | None = None
        self._since = 0.0  # stream time the current command began
        self.holding = self.hold is not None  # at hold until a movement has earned the dwell
        self._candidate: int | None = None  # the movement the hold may give way to, and since when
        self._candidate_since = 0.0

    def _smooth(self, probs: np.ndarray) -> np.ndarray:
        if self.cfg.method == "ema":
            self._ema = probs if self._ema is None else self.cfg.alpha * probs + (1 - self.cfg.alpha) * self._ema
            return self._ema
        if self.cfg.method == "vote":
            self._votes.append(int(probs.argmax()))
            counts = Counter(self._votes)
            return np.array([counts.get(i, 0) / len(self._votes) for i in range(len(probs))])
        return probs

    def _leave_hold(self, smooth: np.ndarray, best: int, t: float) -> bool:
        """Whether the movement ``best`` has now been the choice for the whole dwell since hold."""
        rest = self.hold_idx
        moving = best != rest and (rest is None or smooth[best] - smooth[rest] > self.cfg.hysteresis)
        if not moving:
            self._candidate = None
            return False
        if best != self._candidate:
            self._candidate, self._candidate_since = best, t
        return t - self._candidate_since >= self.cfg.dwell_s - 1e-9

    def update(self, probs: np.ndarray, t: float) -> tuple[str, float, float, np.ndarray]:
        """Probabilities of the window ending at stream time ``t`` (s) -> (command, confidence, level,
        smoothed probabilities)."""
        probs = np.asarray(probs, dtype=np.float64)
        smooth = self._smooth(probs)
        best = int(smooth.argmax())
        if self.holding:
            if not self._leave_hold(smooth, best, t):
                confidence = float(smooth[self.hold_idx]) if self.hold_idx is not None else 0.0
                return self.hold, confidence, 0.0, smooth
            self.holding, self.command, self._since = False, best, t
        elif self.command is None:
            self.command, self._since = best, t
        elif best != self.command:
            margin = smooth[best] - smooth[self.command]
            if margin > self.cfg.hysteresis and t - self._since >= self.cfg.dwell_s - 1e-9:
                self.command, self._since = best, t
        level = 0.0
        if self.level_idx is not None:
            level = float(smooth[self.level_idx[0]] - smooth[self.level_idx[1]])
        return self.classes[self.command], float(smooth[self.command]), level, smooth


@dataclass
class GateConfig:
    """The gate of a gated decoder (``models.gated``), from the model's metadata (``gate``) or the command line.

    The gate probability (EMA-smoothed with the smoothing's ``alpha`` when ``method`` is "ema", raw otherwise)
    opens the gate once it has stayed at or above ``threshold + hysteresis`` for ``dwell_s`` of stream time,
    and closes it at once when it falls below ``threshold``: while the gate is below its threshold the command
    is the rest class. An open gate passes the type decoder's (smoothed) command if its conditional probability
    is at least ``type_threshold``; otherwise the hand rests too."""

    rest_class: str
    threshold: float = 0.5
    hysteresis: float = 0.1
    dwell_s: float = 0.2
    type_threshold: float = 0.0

    def __post_init__(self) -> None:
        for name in ("threshold", "hysteresis", "type_threshold"):
            if not 0 <= getattr(self, name) < 1:
                raise ValueError(f"'gate-{name.replace('_', '-')}' ({getattr(self, name)}) must be in [0, 1).")
        if self.threshold + self.hysteresis >= 1:
            raise ValueError(f"'gate-threshold' + 'gate-hysteresis' ({self.threshold} + {self.hysteresis}) must be "
                             "below 1: the gate could never open.")
        if self.dwell_s < 0:
            raise ValueError(f"'gate-dwell' ({self.dwell_s * 1000:g} ms) must be >= 0.")


#: a rest gate's settings on a decoder without a gate output (``1 - P(rest class)``): models.gated's defaults,
#: for two movement classes (see :func:`rest_gate_defaults`)
REST_GATE_DEFAULTS = {"threshold": 0.7, "hysteresis": 0.1, "dwell_s": 0.2}


def movement_prior(classes: list[str]) -> float:
    """The gate of a window with no evidence: the movement classes' share, k / (k + 1), of a decoder trained on
    balanced classes (k movement classes and rest)."""
    k = len(classes) - 1
    return k / (k + 1)


def rest_gate_defaults(classes: list[str]) -> dict[str, float]:
    """:data:`REST_GATE_DEFAULTS` for ``classes``: the gate opens where the movement odds are twice the
    no-evidence odds k (0.8 with two movement classes, as models.gated's defaults; 0.857 with three, 0.889
    with four), so a decoder with more movement classes is not opened by its own prior."""
    k = len(classes) - 1
    opening = 2 * k / (2 * k + 1)
    return dict(REST_GATE_DEFAULTS, threshold=round(opening - REST_GATE_DEFAULTS["hysteresis"], 3))


def gate_prior_warning(gate: GateConfig, classes: list[str]) -> str | None:
    """A warning when the gate opens at or below :func:`movement_prior`: a window with no evidence opens it."""
    prior, opening = movement_prior(classes), gate.threshold + gate.hysteresis
    if opening > prior + 1e-9:
        return None
    return (f"the gate opens at {opening:g} (threshold + hysteresis), not above {prior:.3g}, the movement classes' "
            f"share ({len(classes) - 1} of {len(classes)} classes): a window with no evidence of movement opens it; "
            f"raise --gate-threshold above {prior - gate.hysteresis:.3g}")


def gate_in_force(meta: dict, rest_class: str | None, overrides: dict[str, float]) -> GateConfig | None:
    """The gate the server applies, or None: a gated model's own (its metadata's settings under ``overrides``),
    or, on any other model with ``rest_class`` given, a rest gate on ``1 - P(rest_class)`` (the same rules,
    :func:`rest_gate_defaults` under ``overrides``)."""
    if meta.get("gate") is not None:
        if rest_class is not None:
            raise ValueError(f"--gate-rest-class ({rest_class!r}): the model has its own gate (rest class "
                             f"{meta['gate']['rest_class']!r}); leave it out.")
        return GateConfig(**({k: v for k, v in meta["gate"].items() if k != "output"} | overrides))
    if rest_class is None:
        if overrides:
            flags = ", ".join("--gate-dwell-ms" if k == "dwell_s" else f"--gate-{k}" for k in overrides)
            raise ValueError(f"{flags}: the model has no gate; "
                             "add --gate-rest-class CLASS to gate its commands on 1 - P(CLASS).")
        return None
    if rest_class not in meta["classes"]:
        raise ValueError(f"--gate-rest-class ({rest_class!r}) is not one of the classes {meta['classes']}.")
    return GateConfig(rest_class, **(rest_gate_defaults(meta["classes"]) | overrides))


class GatedSmoother:
    """The server's smoothing for a gated decoder: the gate decides rest or movement, the type smoother which.

    ``update(probs, t, gate)`` takes the joint probabilities (rest = 1 - gate, movement k = gate x P(k | move)),
    the gate's movement probability and the window's stream time; it returns what :meth:`Smoother.update`
    does. The type decision is :class:`Smoother` (same method, hysteresis and dwell) over the conditional
    movement probabilities, updated on every window so it is current when the gate opens.

    The control level for proportional control comes from the gate: ``(g - threshold) / (1 - threshold)``
    clipped to [0, 1] (``g`` the smoothed gate probability; 0 at the threshold, 1 at certainty), signed + for
    the first level class (the class mapped to grasp) and - for the second (open); 0 while the gate is closed.
    """

    def __init__(self, classes: list[str], cfg: SmoothingConfig, gate: GateConfig,
                 level_pair: tuple[str, str] | None = None):
        if gate.rest_class not in classes:
            raise ValueError(f"'gate.rest_class' ({gate.rest_class!r}) is not one of the classes {classes}.")
        self.classes, self.cfg, self.gate_cfg = classes, cfg, gate
        self.rest = classes.index(gate.rest_class)
        self.movement = [i for i in range(len(classes)) if i != self.rest]
        self.types = Smoother([classes[i] for i in self.movement], cfg) if len(self.movement) > 1 else None
        self.level_pair = level_pair
        self.reset()

    def reset(self) -> None:
        """Forget every window so far: the gate closed, holding until it first opens again (after the full gate
        dwell), the type smoother reset."""
        self._g: float | None = None
        self.open = False
        self.holding = True  # until the gate first opens after this (re)start: the dwell from hold
        self._above_since: float | None = None
        self.gate: float | None = None  # the smoothed gate probability after the last update
        if self.types is not None:
            self.types.reset()

    def _gate(self, g: float, t: float) -> None:
        cfg = self.gate_cfg
        if self.open:
            if g < cfg.threshold:  # closing is immediate: the hand rests as soon as the patient does
                self.open, self._above_since = False, None
        elif g >= cfg.threshold + cfg.hysteresis:
            if self._above_since is None:
                self._above_since = t
            if t - self._above_since >= cfg.dwell_s - 1e-9:
                self.open, self.holding = True, False
        else:
            self._above_since = None

    def update(self, probs: np.ndarray, t: float, gate: float) -> tuple[str, float, float, np.ndarray]:
        """One window: its joint probabilities ``probs`` (one per class), its raw gate probability ``gate`` and
        its end ``t`` on the stream's sample clock (s) -> (command, confidence, level, smoothed probabilities).

        The command is the rest class unless the gate is open and the type decision's confidence is at least
        ``type_threshold``; the smoothed probabilities are ``1 - g`` for rest and ``g`` x the smoothed
        conditional ones for the movements (``g`` the smoothed gate).
        """
        probs = np.asarray(probs, dtype=np.float64)
        alpha = self.cfg.alpha if self.cfg.method == "ema" else 1.0
        g = float(gate) if self._g is None else alpha * float(gate) + (1 - alpha) * self._g
        self._g = self.gate = g
        self._gate(g, t)
        moving = probs[self.movement]
        total = moving.sum()
        cond = moving / total if total > 0 else np.full(len(moving), 1.0 / len(moving))
        if self.types is not None:
            type_name, type_conf, _, type_smooth = self.types.update(cond, t)
        else:
            type_name, type_conf, type_smooth = self.classes[self.movement[0]], 1.0, np.ones(1)
        smooth = np.empty(len(self.classes))
        smooth[self.rest] = 1 - g
        smooth[self.movement] = g * type_smooth
        level = 0.0
        if self.open and type_conf >= self.gate_cfg.type_threshold:
            command = self.classes.index(type_name)
            if self.level_pair is not None and type_name in self.level_pair:
                extent = min(1.0, max(0.0, (g - self.gate_cfg.threshold) / (1 - self.gate_cfg.threshold)))
                level = extent if type_name == self.level_pair[0] else -extent
        else:
            command = self.rest
        return self.classes[command], float(smooth[command]), level, smooth
