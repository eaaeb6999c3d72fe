"""``bmi export`` and ``bmi inspect``."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "export", help="export a run's decoder to ONNX with metadata and verified parity",
        description="Export a run's kept decoder to one ONNX file (input signals [batch, channels, samples], outputs "
                    "logits and probabilities) with everything the runtime needs in its metadata, checked with "
                    "onnx.checker and against PyTorch with onnxruntime on the run's own validation windows. Only a "
                    "model that passes is written.")
    p.add_argument("run_dir", help="a run directory from bmi train")
    p.add_argument("--checkpoint", default="best", help="best, last, or a checkpoint path (default best)")
    p.add_argument("--out", help="output .onnx path (default RUN_DIR/model.onnx)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--quantize", action="store_true", help="int8 quantisation, refused if accuracy drops too much")
    p.add_argument("--max-accuracy-drop", type=float, default=0.02, metavar="FRACTION",
                   help="the largest validation accuracy --quantize may cost, else it is refused (default 0.02)")
    p.add_argument("--json", action="store_true", help="print the parity report as JSON")
    p.add_argument("--verbose", action="store_true",
                   help="also show third-party warnings and log lines (onnxruntime's quantiser) filtered by default")
    p.set_defaults(func=_export)

    p = subparsers.add_parser("inspect", help="print an exported model's metadata",
                              description="Print what an exported model holds: classes, channels, rate, window, "
                                          "filters, normalisation, and the run it came from.")
    p.add_argument("model", help="an ONNX file from bmi export")
    p.add_argument("--json", action="store_true", help="print the metadata document as JSON")
    p.set_defaults(func=_inspect)


def _export(args: argparse.Namespace) -> int:
    from .onnx import export_run

    result = export_run(args.run_dir, checkpoint=args.checkpoint, out=args.out, opset=args.opset,
                        quantize=args.quantize, max_accuracy_drop=args.max_accuracy_drop)
    if args.json:
        print(json.dumps({"path": str(result.path), "parity": result.parity}))
    else:
        p = result.parity
        print(f"exported {result.path}")
        print(f"parity on {p['windows']}: max |logit diff| {p['max_abs_diff']:.2e} (< {p['tolerance']}), "
              f"same predictions: {p['same_predictions']}")
        if "quantization" in p:
            q = p["quantization"]
            print(f"int8: {q['metric']} {q['before']:.3f} -> {q['after']:.3f}")
        print(f"report: {result.path.with_suffix('.parity.json')}")
    return 0


def describe(meta: dict) -> str:
    """A readable view of a model's metadata."""
    pre, norm, run = meta["preprocessing"], meta["normalization"], meta["run"]
    band = pre.get("bandpass")
    lines = [
        f"model        {meta['model']['name']} ({meta['model']['n_params']:,} parameters)",
        f"classes      {', '.join(meta['classes'])}",
        f"channels     {len(meta['channels']['names'])}: {' '.join(meta['channels']['names'])}",
        f"input        signals [batch, {meta['io']['input_shape'][1]}, {meta['io']['input_shape'][2]}] float32 "
        f"-> {', '.join(meta['io']['outputs'])}",
        f"rate         stream {pre['sfreq_in']:g} Hz -> model {meta['sfreq']:g} Hz (decimation {pre['decim']})",
        f"window       {meta['window']['n_times']} samples = {meta['window']['seconds']:g} s "
        f"(cue + {meta['window']['tmin']:g} to {meta['window']['tmax']:g} s in training)",
        f"filters      {'causal' if pre['causal'] else 'ZERO-PHASE (offline only)'}; band {band} Hz, order {pre['order']}; "
        f"notch {pre['notch'] or 'none'}; reference {pre['reference'] or 'as recorded'}",
        f"normalise    {norm.get('kind')}" + (f", Euclidean alignment for {sorted(norm['alignment'])}" if norm.get("alignment") else ""),
        f"run          {run['run_id']} (code {run.get('code_version')}, data {run.get('data_hash')})",
    ]
    gate = meta.get("gate")
    if gate:  # a gated decoder: what the server does with its gate
        lines.insert(4, f"gate         rest ({gate['rest_class']}) below {gate['threshold']:g}; opens at "
                        f"{gate['threshold'] + gate['hysteresis']:g} held {gate['dwell_s'] * 1000:g} ms; "
                        f"type threshold {gate['type_threshold']:g}")
    for stage in ("val", "test"):
        m = (run.get("metrics") or {}).get(stage) or {}
        if m:
            lines.append(f"{stage:<13}" + ", ".join(f"{k} {v:.3f}" for k, v in m.items()))
    lines.append(f"created      {meta['created']} (schema {meta['schema']} v{meta['schema_version']})")
    return "\n".join(lines)


def _inspect(args: argparse.Namespace) -> int:
    from .onnx import read_model_metadata

    meta = read_model_metadata(args.model)
    print(json.dumps(meta, indent=2) if args.json else describe(meta))
    return 0
