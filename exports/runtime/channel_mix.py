"""A decoder's leading channel mix, split off its ONNX graph so that the rig applies it to samples as they arrive.

Many decoders begin with a linear mix of the channels, the same at every sample (EEGNet and EEG-TCNet's spatial
filters in their export graph, the log-variance network's folded whitening and spatial filters, the recurrent
decoders' spatial layer, each stage of a gated decoder). Run inside the graph, that mix reads the whole window,
e.g. 306 channels x 250 samples, on every decision, which on this project's machine is most of a decision's cost
once the caches have gone cold between hops. Since it is linear and per sample, it can as well run on each chunk
when it arrives (a [K, C] x [C, n] product), the server keeping K mixed rows instead of C channels: the decision
then copies and decodes a K-row window through the rest of the graph (the *tail*).

:func:`split_channel_mix` finds the mix (every consumer of the input is a kernel-1 ``Conv`` over the channels,
or an ``Unsqueeze`` to 4-D followed by a ``Conv`` whose kernel spans all channels and one sample) and builds the
tail, whose inputs are those convolutions' outputs. Anything else, or a mix no narrower than the input, is left
whole. :class:`~exports.runtime.model.DecoderSession` checks the split against the whole graph before using it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper, numpy_helper

INPUT = "signals"


@dataclass
class TailInput:
    """One input of the tail: the output of one mixing convolution, rows ``rows`` of the mixed signal."""

    name: str
    rows: slice
    four_d: bool  # [batch, K, 1, T] (after an Unsqueeze) rather than [batch, K, T]


@dataclass
class ChannelMix:
    """The leading mix ``matrix`` [K, C] (+ ``bias`` [K, 1]) and the graph after it (``tail``, serialised ONNX)."""

    matrix: np.ndarray
    bias: np.ndarray | None
    inputs: list[TailInput]
    tail: bytes

    def __call__(self, x: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        """The mixed rows [K, n] of samples ``x`` [C, n] (float32)."""
        out = np.matmul(self.matrix, x, out=out)
        if self.bias is not None:
            out += self.bias
        return out

    def after(self, normalizer) -> "ChannelMix":
        """This mix of ``normalizer``'s output (a :class:`datasets.dsp.Normalizer`: alignment A, then
        (x - m) / s per channel) as one mix of its input, so that a chunk costs one product:
        W ((A x - m) / s) + b = (W diag(1/s) A) x + (b - W diag(1/s) m)."""
        w = self.matrix.astype(np.float64)
        bias = np.zeros(len(w)) if self.bias is None else self.bias[:, 0].astype(np.float64)
        if normalizer.mean is not None:
            w = w / normalizer.std[:, 0].astype(np.float64)
            bias = bias - w @ normalizer.mean[:, 0].astype(np.float64)
        if normalizer.matrix is not None:
            w = w @ normalizer.matrix.astype(np.float64)
        return ChannelMix(np.ascontiguousarray(w, dtype=np.float32),
                          bias.astype(np.float32)[:, None] if bias.any() else None, self.inputs, self.tail)


def graph_feeds(buffer: np.ndarray, mix: ChannelMix | None) -> dict[str, np.ndarray]:
    """A graph's inputs as views of ``buffer`` [1, rows, n_times]: the whole file's ``signals`` (``mix`` None), or
    the tail's inputs, each its rows of the mixed signal. Written once per window, never copied."""
    if mix is None:
        return {INPUT: buffer}
    return {t.name: buffer[:, t.rows, None] if t.four_d else buffer[:, t.rows] for t in mix.inputs}


def _attr(node: onnx.NodeProto, name: str, default=None):
    for a in node.attribute:
        if a.name == name:
            return helper.get_attribute_value(a)
    return default


def _plain_conv(node: onnx.NodeProto, kernel: list[int]) -> bool:
    """A convolution with this kernel, one group, unit strides and dilations, and no padding."""
    ones = [1] * len(kernel)
    return (node.op_type == "Conv" and _attr(node, "kernel_shape", kernel) == kernel and _attr(node, "group", 1) == 1
            and _attr(node, "strides", ones) == ones and _attr(node, "dilations", ones) == ones
            and not any(_attr(node, "pads", [0] * 2 * len(kernel))) and _attr(node, "auto_pad", b"NOTSET") in (b"NOTSET", "NOTSET"))


def split_channel_mix(model: onnx.ModelProto) -> ChannelMix | None:
    """The decoder's leading channel mix and the graph after it, or None when it does not begin with one (or the
    mix has as many rows as channels: nothing to gain)."""
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    inputs = [i for i in graph.input if i.name not in inits]
    if [i.name for i in inputs] != [INPUT] or any(o.name == INPUT for o in graph.output):
        return None
    dims = inputs[0].type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[1].dim_value:
        return None
    n_chans = dims[1].dim_value
    consts = {n.output[0]: n for n in graph.node if n.op_type == "Constant"}

    def consumers(name: str) -> list[onnx.NodeProto]:
        return [n for n in graph.node if name in n.input]

    def constant(name: str) -> np.ndarray | None:
        if name in inits:
            return numpy_helper.to_array(inits[name])
        if name in consts:
            return numpy_helper.to_array(_attr(consts[name], "value"))
        return None

    removed, mixes = [], []  # mixes: (conv node, weight [K, C], bias [K] or None, four_d)
    for node in consumers(INPUT):
        if node.op_type == "Unsqueeze" and list(node.input[:1]) == [INPUT]:
            axes = constant(node.input[1]) if len(node.input) > 1 else np.asarray(_attr(node, "axes", []))
            after = consumers(node.output[0])
            if axes is None or list(np.ravel(axes)) != [1] or len(after) != 1:
                return None
            conv, four_d, kernel = after[0], True, [n_chans, 1]
            removed.append(node)
        else:
            conv, four_d, kernel = node, False, [1]
        weight = constant(conv.input[1]) if len(conv.input) > 1 else None
        shape = (1, n_chans, 1) if four_d else (n_chans, 1)
        if (not _plain_conv(conv, kernel) or conv.input[0] != (removed[-1].output[0] if four_d else INPUT)
                or weight is None or weight.ndim != len(shape) + 1 or weight.shape[1:] != shape):
            return None
        bias = constant(conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
        mixes.append((conv, weight.reshape(len(weight), n_chans), bias, four_d))
        removed.append(conv)
    rows = sum(len(w) for _, w, _, _ in mixes)
    if not mixes or rows >= n_chans:
        return None

    kept = [n for n in graph.node if not any(n is r for r in removed)]
    used = {name for n in kept for name in n.input} | {o.name for o in graph.output}
    kept = [n for n in kept if n.op_type != "Constant" or n.output[0] in used]  # the Unsqueeze's axes, say
    tail_inputs, value_infos, start = [], [], 0
    batch = dims[0].dim_param or dims[0].dim_value
    for conv, weight, _, four_d in mixes:
        k, name = len(weight), conv.output[0]
        tail_inputs.append(TailInput(name, slice(start, start + k), four_d))
        value_infos.append(helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT,
                                                         [batch, k, 1, dims[2].dim_value] if four_d else [batch, k, dims[2].dim_value]))
        start += k
    tail_input_names = {t.name for t in tail_inputs}
    tail = helper.make_graph(kept, graph.name + "_tail", value_infos, list(graph.output),
                             initializer=[i for i in graph.initializer if i.name in used],
                             value_info=[v for v in graph.value_info if v.name not in tail_input_names])
    tail_model = helper.make_model(tail, opset_imports=list(model.opset_import), ir_version=model.ir_version)
    matrix = np.concatenate([w for _, w, _, _ in mixes]).astype(np.float32)
    biases = [b if b is not None else np.zeros(len(w)) for _, w, b, _ in mixes]
    bias = np.concatenate(biases).astype(np.float32)[:, None] if any(b is not None for _, _, b, _ in mixes) else None
    return ChannelMix(np.ascontiguousarray(matrix), bias, tail_inputs, tail_model.SerializeToString())
