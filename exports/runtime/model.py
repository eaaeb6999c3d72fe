"""The decoder as the rig runs it: onnxruntime tuned for latency, plus the model's own metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..metadata import parse_metadata_props
from .channel_mix import ChannelMix, graph_feeds, split_channel_mix

#: largest difference in any output allowed between the whole graph and the split one (float32 rounding)
SPLIT_TOLERANCE = 1e-5


def split_difference(whole: ort.InferenceSession, tail: ort.InferenceSession, mix: ChannelMix, windows: np.ndarray,
                     outputs: list[str]) -> float:
    """The largest difference in any of ``outputs`` between the whole graph on ``windows`` [k, 1, C, T] and the
    graph after ``mix`` on their mixed rows (NaN if either gives NaN)."""
    rows = np.empty((1, len(mix.matrix), windows.shape[-1]), dtype=np.float32)
    differences = []
    for x in windows:
        expected = whole.run(outputs, {"signals": x})
        mix(x[0], out=rows[0])
        differences += [np.max(np.abs(a - b)) for a, b in zip(expected, tail.run(outputs, graph_feeds(rows, mix)))]
    return float(np.max(differences))


class DecoderSession:
    """Load an exported model, check its metadata, warm it up; ``predict`` one window -> probabilities.

    With ``split_mix`` (the default), a model that begins with a channel mix (:mod:`.channel_mix`) runs without
    it: the caller turns samples into rows as they arrive (:meth:`rows_from` a normaliser for filtered samples,
    :meth:`input_rows` for normalised ones) and writes the newest of those rows into :attr:`window` (K rows
    instead of the C channels). The split is used only when the two graphs agree
    on random windows within :data:`SPLIT_TOLERANCE`; :attr:`mix` is None otherwise."""

    def __init__(self, path: str | Path, threads: int = 1, warmup: int = 20, split_mix: bool = True):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait between hops
        model_bytes = path.read_bytes()  # read once: onnxruntime and the channel-mix split parse the same bytes
        try:
            self.session = ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own types for corrupt files
            raise ValueError(f"{path} is not a valid ONNX model (corrupted or truncated?): {err}") from None
        self.meta: dict[str, Any] = parse_metadata_props(self.session.get_modelmeta().custom_metadata_map, str(path))
        self.classes: list[str] = self.meta["classes"]
        self.n_chans, self.n_times = self.meta["io"]["input_shape"][1:]
        # a gated decoder (models.gated) also gives its gate's movement probability
        self.gated = self.meta.get("gate") is not None
        self._outputs = ["probabilities", "gate"] if self.gated else ["probabilities"]
        missing = set(self._outputs) - {o.name for o in self.session.get_outputs()}
        if missing:
            raise ValueError(f"{path}: the metadata names the outputs {self._outputs} but the graph lacks {sorted(missing)}.")
        self.gate: float | None = None  # the last window's gate probability (gated decoders)
        self.split_refused: str | None = None  # why a channel mix found in the graph is not run on arrival
        self.mix: ChannelMix | None = self._split(model_bytes, options) if split_mix else None
        rows = self.n_chans if self.mix is None else len(self.mix.matrix)
        self._input = np.zeros((1, rows, self.n_times), dtype=np.float32)
        self._feed = graph_feeds(self._input, self.mix)
        for _ in range(warmup):  # first runs allocate and pick kernels; keep that off the first real window
            self.session.run(self._outputs, self._feed)

    def _split(self, model_bytes: bytes, options: ort.SessionOptions) -> ChannelMix | None:
        """The model's leading channel mix and a session on the graph after it, if the two agree with the whole."""
        import onnx

        mix = split_channel_mix(onnx.load_from_string(model_bytes))
        if mix is None:
            return None
        tail = ort.InferenceSession(mix.tail, options, providers=["CPUExecutionProvider"])
        windows = np.random.default_rng(0).standard_normal((4, 1, self.n_chans, self.n_times)).astype(np.float32)
        differs = split_difference(self.session, tail, mix, windows, self._outputs)
        if not differs <= SPLIT_TOLERANCE:  # NaN included
            self.split_refused = (f"the model's leading channel mix runs inside the graph: split off, its outputs "
                                  f"differed from the whole graph's by {differs:.3g} (allowed {SPLIT_TOLERANCE:g})")
            return None
        self.session = tail
        return mix

    def rows_from(self, normalizer):
        """Filtered samples [n_chans, n] -> the rows :attr:`window` holds: ``normalizer``'s output, or, when the
        channel mix runs outside the graph, that mix folded with the normaliser (one product per chunk)."""
        return normalizer if self.mix is None else self.mix.after(normalizer)

    def input_rows(self, x: np.ndarray) -> np.ndarray:
        """What :attr:`window` holds for normalised samples ``x`` [n_chans, n]: the samples, or their channel
        mix when the graph runs without it (:attr:`mix`)."""
        return x if self.mix is None else self.mix(x)

    @property
    def window(self) -> np.ndarray:
        """The input window ``[rows, n_times]`` (float32), rows as :meth:`input_rows` gives them: write into it,
        then :meth:`predict` with no argument."""
        return self._input[0]

    def predict(self, window: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities of one normalised window ``[n_chans, n_times]``, or of :attr:`window` as written
        (a gated decoder's gate probability goes to :attr:`gate`)."""
        if window is not None:
            self._input[0] = self.input_rows(np.asarray(window, dtype=np.float32))
        out = self.session.run(self._outputs, self._feed)
        if self.gated:
            self.gate = float(out[1][0])
        return out[0][0]
