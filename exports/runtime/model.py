"""The decoder as the rig runs it: onnxruntime tuned for latency, plus the model's own metadata."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from ..metadata import parse_metadata_props


class DecoderSession:
    """Load an exported model, check its metadata, warm it up; ``predict`` one window -> probabilities."""

    def __init__(self, path: str | Path, threads: int = 1, warmup: int = 20):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # no busy-wait between hops
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
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
        self._input = np.zeros((1, self.n_chans, self.n_times), dtype=np.float32)
        for _ in range(warmup):  # first runs allocate and pick kernels; keep that off the first real window
            self.session.run(self._outputs, {"signals": self._input})

    @property
    def window(self) -> np.ndarray:
        """The input window ``[n_chans, n_times]`` (float32): write into it, then :meth:`predict` with no argument."""
        return self._input[0]

    def predict(self, window: np.ndarray | None = None) -> np.ndarray:
        """Class probabilities of one window, or of :attr:`window` as written (a gated decoder's gate
        probability goes to :attr:`gate`)."""
        if window is not None:
            self._input[0] = window
        out = self.session.run(self._outputs, {"signals": self._input})
        if self.gated:
            self.gate = float(out[1][0])
        return out[0][0]
