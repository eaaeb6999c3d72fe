"""Two-stage gated decoder: a movement/rest gate, then a decoder of the movement's type."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .base import Decoder
from .registry import build, get, register

#: what a member of a gated decoder is when the config names none
DEFAULT_GATE = {"name": "logvar"}
DEFAULT_TYPE = {"name": "logvar"}


def _member_spec(key: str, spec: Any) -> tuple[str, dict[str, Any]]:
    """``{"name": ..., **params}`` (or a bare name) -> (name, params), refused by key when malformed."""
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
        raise ValueError(f"'{key}' ({spec!r}) must be a registered decoder: a name or a mapping "
                         "{name: NAME, <its parameters>}.")
    name, params = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    if name == "gated":
        raise ValueError(f"'{key}.name' ('gated'): a member of a gated decoder cannot itself be gated.")
    get(name)  # an unknown name lists the known ones
    taken = [k for k in ("n_chans", "n_times", "n_outputs", "sfreq", "ch_names", "input_window_seconds") if k in params]
    if taken:
        raise ValueError(f"'{key}' sets {taken}: a member's signal arguments come from the gated decoder.")
    return name, params


@register("gated")
class GatedDecoder(Decoder):
    """A movement/rest gate and a movement-type decoder, combined into one probability over every class.

    The scheme of the MEG BMI of the phantom-limb studies (Yanagisawa et al.): first decide *whether* the
    patient moves (from slow movement-related fields), then *which* movement. ``gate`` is any registered
    decoder, built with one rest output and ``gate_units`` movement outputs, giving
    ``g = P(movement | x) = 1 - softmax(gate(x))[rest]``: "movement" is a soft OR of several patterns (a grasp
    and an opening may engage opposite hemispheres, so no single linear feature says "moving"). ``type`` is any
    registered decoder over the movement classes giving ``q_k = P(k | x, movement)``. The output is the log of
    the joint probabilities over all classes in their training order::

        P(rest) = 1 - g,    P(k) = g * q_k   (k a movement class)

    so ``softmax(forward(x))`` are those probabilities, the flat decoders' contract holds (training, metrics,
    the exported ``probabilities``) and the negative log-likelihood splits exactly into the gate's binary
    cross-entropy (every window) plus the type decoder's cross-entropy (movement windows only): rest windows
    never train the type decoder. By default (``gate_units=None``) the gate's movement units are tied to the
    movement classes: ``q = softmax(type(x) + log_softmax(gate(x))[movement units])``, so the type labels shape
    the gate's features too (on the synthetic recordings a gate trained by rest / movement alone generalised far
    worse: ``scripts/bench_gate.py``); an integer ``gate_units`` makes them free patterns trained by the
    rest / movement label only, and the two stages fully separate.
    :meth:`gate_probability` is ``g``; the ONNX export adds it as a third output, ``gate``, which the server
    thresholds (``gate_threshold``, ``gate_hysteresis``, ``gate_dwell_s``: it holds the rest command while the
    gate is below its threshold) before it takes any movement command (``type_threshold``: the least
    conditional type probability a movement command needs).

    Parameters
    ----------
    n_chans, n_times, n_outputs, sfreq, ch_names, input_window_seconds
        Signal arguments, see :class:`models.base.Decoder`. ``n_outputs`` counts every class, rest included
        (with one movement class the gate alone decides and ``type`` is not built).
    gate, type : str or dict
        The two stages, each a registered decoder: a name, or ``{name: NAME, <its hyperparameters>}``.
    rest_index : int
        Position of the rest class among the outputs (the data's class order, ``data.events``).
    gate_threshold : float or None
        Gate probability at or above which the server lets movement commands through. None: 0.7 with two
        movement classes (above the balanced 0.5: the hand moves only on a confident gate; it traded false
        movements at rest against late or missed movements on the synthetic session: docs/benchmarks/gate.rst,
        "The trade-off"), and in general where the gate opens (threshold + 0.1) at twice the movement odds of a
        window with no evidence, k for k movement classes trained in balance: 0.757 with three, 0.789 with four
        (the same rule as ``bmi serve --gate-rest-class``'s default, ``exports.runtime.smoothing.rest_gate_defaults``).
    gate_hysteresis : float
        The gate opens only at ``gate_threshold + gate_hysteresis`` (it closes below ``gate_threshold``).
    gate_dwell_s : float
        Stream time the gate must stay above its opening level before it opens.
    type_threshold : float
        Least (smoothed) conditional probability of a movement type for its command; below it the hand rests.
    gate_units : int or None
        The gate's movement outputs (it has ``1 + gate_units``, rest first). None: one per movement class, tied
        to them (above); an integer: free units trained by the rest / movement label only.

    References
    ----------
    Yanagisawa, T., Fukuma, R., Seymour, B., Hosomi, K., Kishima, H., Shimizu, T., Yokoi, H., Hirata, M.,
    Yoshimine, T., Kamitani, Y., & Saitoh, Y. (2016). Induced sensorimotor brain plasticity controls pain in
    phantom limb patients. Nature Communications, 7, 13209. https://doi.org/10.1038/ncomms13209
    """

    #: the export adds the ``gate`` output (:meth:`forward_with_gate`)
    has_gate = True

    def __init__(self, n_chans=None, n_times=None, n_outputs=None, sfreq=None, gate=None, type=None, rest_index=0,
                 gate_threshold=None, gate_hysteresis=0.1, gate_dwell_s=0.2, type_threshold=0.0, gate_units=None, *,
                 ch_names=None, input_window_seconds=None):
        super().__init__(n_chans, n_times, n_outputs, sfreq, ch_names=ch_names,
                         input_window_seconds=input_window_seconds)
        if isinstance(rest_index, bool) or not isinstance(rest_index, int) or not 0 <= rest_index < self.n_outputs:
            raise ValueError(f"'rest_index' ({rest_index!r}) must be an output position in 0..{self.n_outputs - 1}.")
        if gate_threshold is None:  # opening at twice the no-evidence odds k: 0.8 - 0.1 with two movement classes
            k = max(1, self.n_outputs - 1)
            gate_threshold = round(2 * k / (2 * k + 1) - 0.1, 3)
        for key, value, low, high in (("gate_threshold", gate_threshold, 0.0, 1.0), ("gate_hysteresis", gate_hysteresis, 0.0, 1.0),
                                      ("type_threshold", type_threshold, 0.0, 1.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value < high:
                raise ValueError(f"'{key}' ({value!r}) must be in [{low:g}, {high:g}).")
        if gate_threshold + gate_hysteresis >= 1:
            raise ValueError(f"'gate_threshold' + 'gate_hysteresis' ({gate_threshold} + {gate_hysteresis}) must be below 1: "
                             "the gate could never open.")
        if isinstance(gate_dwell_s, bool) or not isinstance(gate_dwell_s, (int, float)) or gate_dwell_s < 0:
            raise ValueError(f"'gate_dwell_s' ({gate_dwell_s!r}) must be >= 0 seconds.")
        signal = {"n_chans": self.n_chans, "n_times": self.n_times, "sfreq": self.sfreq}
        gate_name, gate_params = _member_spec("gate", DEFAULT_GATE if gate is None else gate)
        type_name, type_params = _member_spec("type", DEFAULT_TYPE if type is None else type)
        self.tied = gate_units is None  # one gate unit per movement class, shared with the type decision
        if gate_units is None:
            gate_units = max(1, self.n_outputs - 1)
        if isinstance(gate_units, bool) or not isinstance(gate_units, int) or gate_units < 1:
            raise ValueError(f"'gate_units' ({gate_units!r}) must be a positive integer (movement outputs of the gate).")
        self.gate_units = gate_units
        self.gate = build(gate_name, n_outputs=1 + gate_units, **signal, **gate_params)
        # one movement class: the gate alone decides (no type decoder)
        self.type_decoder = build(type_name, n_outputs=self.n_outputs - 1, **signal, **type_params) \
            if self.n_outputs > 2 else None
        self.rest_index = rest_index
        self.gate_threshold, self.gate_hysteresis = float(gate_threshold), float(gate_hysteresis)
        self.gate_dwell_s, self.type_threshold = float(gate_dwell_s), float(type_threshold)
        movement = [i for i in range(self.n_outputs) if i != rest_index]
        # output position of every class: rest first in the concatenation below, then the movements in order
        order = [0 if i == rest_index else 1 + movement.index(i) for i in range(self.n_outputs)]
        self.register_buffer("order", torch.tensor(order, dtype=torch.long), persistent=False)

    @classmethod
    def check_nested_params(cls, params: dict[str, Any]) -> None:
        """Each stage's name and parameters (``models.check_params``), before any data are read."""
        from .registry import check_params

        for key, default in (("gate", DEFAULT_GATE), ("type", DEFAULT_TYPE)):
            name, member = _member_spec(key, params.get(key) or default)
            try:
                check_params(name, member)
            except TypeError as err:
                raise TypeError(f"'{key}': {err}") from None

    @classmethod
    def member_default(cls, params: dict[str, Any], key: str, fallback: Any) -> Any:
        """Training defaults from the stages' (``models.default_setting``): one optimiser for both, so the
        smaller of their learning rates; the type decoder's augmentation (it separates the movements)."""
        gate = get(_member_spec("gate", params.get("gate") or DEFAULT_GATE)[0])
        type_ = get(_member_spec("type", params.get("type") or DEFAULT_TYPE)[0])
        if key == "default_lr":
            return min(getattr(gate, key, fallback), getattr(type_, key, fallback))
        return getattr(type_, key, fallback)

    def _members(self) -> list[nn.Module]:
        return [self.gate] + ([self.type_decoder] if self.type_decoder is not None else [])

    @property
    def hparams(self) -> dict[str, Any]:
        """As every decoder's, with the stages described by their own (signal arguments once, here)."""
        from .registry import hyperparameters

        out = super().hparams
        signal = ("n_chans", "n_times", "n_outputs", "sfreq")
        for key, member in (("gate", self.gate), ("type", self.type_decoder)):
            out[key] = None if member is None else {k: v for k, v in hyperparameters(member).items() if k not in signal}
        return out

    @torch.no_grad()
    def fit_data(self, X: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Each stage's data-dependent set-up (e.g. logvar's whitening) on the training windows, with labels
        as the stage sees them: the gate's output positions (when its units are the classes), the type
        decoder's movement classes (-1 for rest windows, which it never learns from)."""
        pos = None if y is None else self.order[y]
        if hasattr(self.gate, "fit_data"):
            gate_labels = None  # free units have no labels of their own ...
            if pos is not None and self.tied:
                gate_labels = pos
            elif pos is not None and self.gate_units == 1:  # ... except a single one: rest (0) / movement (1)
                gate_labels = (pos > 0).long()
            self.gate.fit_data(X, gate_labels)
        if self.type_decoder is not None and hasattr(self.type_decoder, "fit_data"):
            self.type_decoder.fit_data(X, None if pos is None else pos - 1)

    def apply_constraints(self) -> None:
        """Apply each stage's own weight constraints (max-norm) after an optimiser step."""
        for member in self._members():
            if hasattr(member, "apply_constraints"):
                member.apply_constraints()

    def inference_module(self) -> nn.Module:
        """The same gated decoder around each stage's fastest equivalent arrangement."""
        fast = [m.inference_module() if hasattr(m, "inference_module") else m for m in self._members()]
        out = _GatedInference(fast[0], fast[1] if len(fast) > 1 else None, self.order, self.tied)
        return out.eval()

    def forward_with_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores (logits) and the gate's probability of movement, for windows ``x``."""
        return _combine(self.gate(x), None if self.type_decoder is None else self.type_decoder(x), self.order, self.tied)

    def gate_probability(self, x: torch.Tensor) -> torch.Tensor:
        """``P(movement | x)``, ``[batch]``."""
        return 1 - torch.softmax(self.gate(x), dim=1)[:, 0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits, ``[batch, n_outputs]``); :meth:`forward_with_gate` also returns the gate."""
        return self.forward_with_gate(x)[0]


def _combine(gate_logits: torch.Tensor, type_logits: torch.Tensor | None, order: torch.Tensor,
             tied: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(log joint probabilities in class order, gate probability). ``tied``: the gate's movement units are the
    movement classes and add to the type decoder's logits (so the type labels train them too)."""
    units = torch.log_softmax(gate_logits, dim=1)  # [:, 0] rest, [:, 1:] the movement patterns
    log_rest, log_move = units[:, :1], torch.logsumexp(units[:, 1:], dim=1, keepdim=True)  # log(1 - g), log g
    gate = 1 - units[:, 0].exp()
    if type_logits is None:  # one movement class
        return torch.cat([log_rest, log_move], dim=1).index_select(1, order), gate
    if tied:
        type_logits = type_logits + units[:, 1:]
    joint = torch.cat([log_rest, log_move + torch.log_softmax(type_logits, dim=1)], dim=1)
    return joint.index_select(1, order), gate


class _GatedInference(nn.Module):
    """What is exported: the same function, built from the stages' inference modules."""

    has_gate = True

    def __init__(self, gate: nn.Module, type_: nn.Module | None, order: torch.Tensor, tied: bool):
        super().__init__()
        self.gate, self.type_decoder, self.tied = gate, type_, tied
        self.register_buffer("order", order.clone(), persistent=False)

    def forward_with_gate(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class scores (logits) and the gate's probability of movement, for windows ``x``."""
        return _combine(self.gate(x), None if self.type_decoder is None else self.type_decoder(x), self.order, self.tied)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores (logits, ``[batch, n_outputs]``); :meth:`forward_with_gate` also returns the gate."""
        return self.forward_with_gate(x)[0]
