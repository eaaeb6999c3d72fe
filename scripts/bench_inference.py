"""Single-window decoding latency and batch throughput: PyTorch eager vs onnxruntime, side by side.

Per decoder and shape, three engines on one window: **eager** (the trained module as is), **exported** (eager
PyTorch running the graph the ONNX file holds: ``inference_module()``, an equivalent faster arrangement where
the decoder offers one -- EEGNet / EEG-TCNet filter space before time, ShallowConvNet / DeepConvNet / CNN-LSTM
fold their temporal + spatial + BatchNorm front end into one filter, see models/fused.py) and **onnxruntime**
on the exported file; p50 and p99 of each, and onnxruntime's p99 against the 1 ms budget per window
(``budget_ratio`` = p99 / 1 ms: <= 1 meets it). Where the exported graph differs from the trained module,
onnxruntime also runs the module as trained (``onnxruntime_as_trained``), so the export's own gain is measured
with the engine held fixed. Where the file begins with a channel mix, onnxruntime also runs what ``bmi serve``
runs per decision (``onnxruntime_rig``): the graph after that mix on the mixed rows, the mix itself having been
applied to the samples as they arrived (exports/runtime/channel_mix.py).

Shapes: EEG 64 channels x 1 s at 160 Hz; MEG 306 channels x 0.5 s as the decoder sees it at 1 kHz (no
decimation), 250 Hz (the rig's decimation in scripts/bench_server.py) and 125 Hz (the MEG decimation of
scripts/bench_accuracy.py). One CPU thread for every engine (torch.set_num_threads(1); onnxruntime intra-op
threads 1, sequential, all graph optimisations, no spinning -- the server's session options), the same
random weights and inputs, the engines interleaved in blocks of 10 per model so load on the shared machine
hits them alike. Throughput is at batch 64.

    .venv/bin/python scripts/bench_inference.py [--quick] [--models a,b] [--shapes a,b] [--out bench_results/inference.json]
        [--docs-table] [--docs-dir DIR]

``--docs-table`` also writes the docs' results files (scripts/results_file.py): ``inference`` (every shape and
decoder run) and, when the run covers its three shapes, ``rig_inference`` (the whole file against what the rig
runs per decision, for the decoders that begin with a channel mix).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import results_file  # noqa: E402  (scripts/, beside this file)

SHAPES = {"eeg_64ch_1s_160Hz": (64, 160, 160.0), "meg_306ch_0.5s_1kHz": (306, 500, 1000.0),
          "meg_306ch_0.5s_250Hz": (306, 125, 250.0), "meg_306ch_0.5s_125Hz": (306, 62, 125.0)}
#: onnxruntime p99 per window that every decoder should meet on one thread (issue 16)
BUDGET_MS = 1.0
#: ensembles (``bmi train --seeds``: one ONNX file averaging the members' probabilities): name -> (members, decoder)
ENSEMBLES = {"ensemble5_logvar": (5, "logvar"), "ensemble5_eegnet": (5, "eegnet")}


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean())}


def _time(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _as_trained(net):
    """The decoder wrapped so the exporter sees no ``inference_module``: the graph as trained."""
    import torch

    class AsTrained(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            return self.inner(x)

    return AsTrained(net)


def _rig_tail(path: Path, one: np.ndarray, opts, whole):
    """(session on the graph after the file's leading channel mix, its inputs for window ``one``, rows), as
    ``bmi serve`` splits it and checked against ``whole`` (the file's own session), or None."""
    import onnx
    import onnxruntime as ort

    from exports.runtime.channel_mix import graph_feeds, split_channel_mix
    from exports.runtime.model import SPLIT_TOLERANCE, split_difference

    mix = split_channel_mix(onnx.load(str(path)))
    if mix is None:
        return None
    session = ort.InferenceSession(mix.tail, opts, providers=["CPUExecutionProvider"])
    if not split_difference(whole, session, mix, one[None], ["probabilities"]) <= SPLIT_TOLERANCE:
        raise RuntimeError(f"{path.name}: the split graph disagrees with the whole one")
    return session, graph_feeds(mix(one[0])[None], mix), len(mix.matrix)


def bench_model(name: str, shape: tuple[int, int, float], iters: int, folder: Path) -> dict:
    import onnxruntime as ort
    import torch

    import models
    from exports.runtime.model import DecoderSession  # noqa: F401  (same session options as the server)
    from exports.torch_export import export_onnx

    n_chans, n_times, sfreq = shape
    try:
        if name in ENSEMBLES:
            from models.ensemble import ProbabilityEnsemble

            k, base = ENSEMBLES[name]
            net = ProbabilityEnsemble([models.build(base, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=sfreq)
                                       for _ in range(k)]).eval()
        else:
            net = models.build(name, n_chans=n_chans, n_times=n_times, n_outputs=3, sfreq=sfreq).eval()
    except ValueError as err:
        return {"skipped": str(err)}
    path = export_onnx(net, n_chans, n_times, folder / f"{name}.onnx")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    one = rng.standard_normal((1, n_chans, n_times)).astype(np.float32)
    batch = rng.standard_normal((64, n_chans, n_times)).astype(np.float32)
    one_t, batch_t = torch.from_numpy(one), torch.from_numpy(batch)
    deployable = net.inference_module().eval()  # what the ONNX file holds (same function)
    # onnxruntime on the module as trained, where the export is a different (faster) graph (the wrapper is put in
    # eval mode first: the exporter restores the mode it found, and it would find a new module in training mode)
    as_trained = None
    if deployable is not net:
        as_trained = ort.InferenceSession(str(export_onnx(_as_trained(net).eval(), n_chans, n_times, folder / f"{name}_as_trained.onnx")),
                                          opts, providers=["CPUExecutionProvider"])
    if net.training or deployable.training:
        raise RuntimeError(f"{name}: the benchmark must time the decoder in eval mode")
    rig = _rig_tail(path, one, opts, session)  # the server's split: None when the file has no leading channel mix

    def fused_one():
        with torch.inference_mode():
            deployable(one_t)

    def torch_one():
        with torch.inference_mode():
            net(one_t)

    def ort_one():
        session.run(["probabilities"], {"signals": one})

    def torch_batch():
        with torch.inference_mode():
            net(batch_t)

    def ort_batch():
        session.run(["probabilities"], {"signals": batch})

    def ort_as_trained():
        as_trained.run(["probabilities"], {"signals": one})

    def ort_rig():
        rig[0].run(["probabilities"], rig[1])

    for fn in (torch_one, ort_one, torch_batch, ort_batch, *([ort_as_trained] if as_trained is not None else []),
               *([ort_rig] if rig is not None else [])):  # warm-up
        _time(fn, 5)
    t_one, f_one, o_one, a_one, r_one = [], [], [], [], []
    for block in range(iters // 10):  # interleave the engines in blocks
        t_one += _time(torch_one, 10)
        f_one += _time(fused_one, 10)
        o_one += _time(ort_one, 10)
        if rig is not None:
            r_one += _time(ort_rig, 10)
        if as_trained is not None and block % 5 == 0:  # a reference (up to 100x slower): every 5th block
            a_one += _time(ort_as_trained, 10)
    n_batch = max(3, iters // 20)
    t_b = min(_time(torch_batch, n_batch))
    o_b = min(_time(ort_batch, n_batch))
    result = {
        "torch": _percentiles(t_one) | {"throughput_windows_per_s_b64": 64 / t_b},
        "torch_inference_module": _percentiles(f_one),
        "onnxruntime": _percentiles(o_one) | {"throughput_windows_per_s_b64": 64 / o_b},
    }
    if a_one:  # the export's own gain, engine held fixed
        result["onnxruntime_as_trained"] = _percentiles(a_one)
        result["export_graph_speedup_p50"] = result["onnxruntime_as_trained"]["p50_ms"] / result["onnxruntime"]["p50_ms"]
    if r_one:  # what the server runs per decision, the channel mix having run on arrival
        result["onnxruntime_rig"] = _percentiles(r_one) | {"rows": int(rig[2])}
    result["speedup_p50"] = result["torch"]["p50_ms"] / result["onnxruntime"]["p50_ms"]
    # against eager on the same (reordered) graph the ONNX file holds: the engine's own share of the gain
    result["speedup_p50_same_graph"] = result["torch_inference_module"]["p50_ms"] / result["onnxruntime"]["p50_ms"]
    result["speedup_throughput"] = result["onnxruntime"]["throughput_windows_per_s_b64"] / result["torch"]["throughput_windows_per_s_b64"]
    result["budget_ratio"] = result["onnxruntime"]["p99_ms"] / BUDGET_MS
    result["meets_budget"] = result["budget_ratio"] <= 1.0
    return result


def _pair(r: dict) -> str:
    return f"{r['p50_ms']:.3f} / {r['p99_ms']:.3f}"


#: rig_inference's columns: the shapes it compares, in its order
RIG_SHAPES = {"meg_306ch_0.5s_1kHz": "MEG 306 x 0.5 s at 1 kHz", "meg_306ch_0.5s_250Hz": "MEG at 250 Hz",
              "eeg_64ch_1s_160Hz": "EEG 64 x 1 s at 160 Hz"}


def docs_tables(results: dict, every_decoder: bool) -> list[dict]:
    """The docs' results tables of a run (``inference``; ``rig_inference`` when the run has its shapes)."""
    rows = []
    for shape, per in results["shapes"].items():
        for name, r in per.items():
            if "skipped" in r:
                rows.append([shape, name, f"not built: {r['skipped']}", "", "", "", ""])
                continue
            ratio = r["budget_ratio"]
            rows.append([shape, name, _pair(r["torch"]), _pair(r["torch_inference_module"]),
                         _pair(r["onnxruntime_as_trained"]) if "onnxruntime_as_trained" in r else "(same graph)",
                         f"**{r['onnxruntime']['p50_ms']:.3f}** / {r['onnxruntime']['p99_ms']:.3f}",
                         f"{ratio:.2f}" + (" (over)" if ratio > 1 else "")])
    tables = [{"name": "inference",
               "title": "Inference: one window at a time on one thread" + (", every registered decoder" if every_decoder else ""),
               "columns": ["shape the decoder sees", "model", "eager p50 / p99 (ms)", "exported graph in eager PyTorch",
                           "onnxruntime as trained", "**onnxruntime, exported** p50 / p99", "p99 / 1 ms budget"],
               "rows": rows}]
    if all(shape in results["shapes"] for shape in RIG_SHAPES):
        split = [name for name in results["shapes"][next(iter(RIG_SHAPES))]
                 if any("onnxruntime_rig" in results["shapes"][shape].get(name, {}) for shape in RIG_SHAPES)]
        rig_rows = []
        for name in split:
            cells = []
            for shape in RIG_SHAPES:
                r = results["shapes"][shape].get(name, {})
                cells.append("not built" if "skipped" in r else "no channel mix" if "onnxruntime_rig" not in r
                             else f"{_pair(r['onnxruntime'])} -> {_pair(r['onnxruntime_rig'])}")
            rig_rows.append([name, *cells])
        if rig_rows:
            tables.append({"name": "rig_inference",
                           "title": "What the rig runs per decision: whole file against the channel mix split off",
                           "columns": ["decoder", *RIG_SHAPES.values()], "rows": rig_rows})
    return tables


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--out", default="bench_results/inference.json")
    parser.add_argument("--models", help=f"comma-separated decoders (default: every registered one and {', '.join(ENSEMBLES)})")
    parser.add_argument("--shapes", help=f"comma-separated shapes (default: all of {', '.join(SHAPES)})")
    results_file.add_arguments(parser)
    args = parser.parse_args()
    shapes = args.shapes.split(",") if args.shapes else list(SHAPES)
    unknown = [s for s in shapes if s not in SHAPES]
    if unknown:
        parser.error(f"--shapes: unknown {unknown}; choose from {', '.join(SHAPES)}")
    import onnxruntime as ort
    import torch

    import models

    torch.set_num_threads(1)
    iters = 100 if args.quick else 500
    results = {"machine": {"threads": 1, "torch": torch.__version__, "onnxruntime": ort.__version__},
               "iterations": iters, "budget_ms": BUDGET_MS, "shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for shape_name in shapes:
            shape = SHAPES[shape_name]
            results["shapes"][shape_name] = {}
            for name in (args.models.split(",") if args.models else [*models.available(), *ENSEMBLES]):
                r = bench_model(name, shape, iters, Path(tmp))
                results["shapes"][shape_name][name] = r
                if "skipped" in r:
                    print(f"{shape_name:>20} {name:>16}: skipped ({r['skipped']})", flush=True)
                    continue
                e, x, o = r["torch"], r["torch_inference_module"], r["onnxruntime"]
                print(f"{shape_name:>20} {name:>16}: eager p50/p99 {e['p50_ms']:7.3f}/{e['p99_ms']:7.3f} | exported "
                      f"{x['p50_ms']:7.3f}/{x['p99_ms']:7.3f} | onnxruntime {o['p50_ms']:6.3f}/{o['p99_ms']:6.3f} ms | "
                      f"p99/budget {r['budget_ratio']:5.2f} | b64 {e['throughput_windows_per_s_b64']:7.0f} vs "
                      f"{o['throughput_windows_per_s_b64']:7.0f} win/s"
                      + (f" | ort as trained {r['onnxruntime_as_trained']['p50_ms']:.3f}/{r['onnxruntime_as_trained']['p99_ms']:.3f}"
                         if "onnxruntime_as_trained" in r else "")
                      + (f" | rig (mix on arrival, {r['onnxruntime_rig']['rows']} rows) {r['onnxruntime_rig']['p50_ms']:.3f}/"
                         f"{r['onnxruntime_rig']['p99_ms']:.3f}" if "onnxruntime_rig" in r else ""), flush=True)
    results["over_budget"] = {shape: sorted(m for m, r in per.items() if not r.get("meets_budget", True))
                              for shape, per in results["shapes"].items()}
    if (docs := results_file.docs_folder(args)) is not None:
        for table in docs_tables(results, every_decoder=not args.models):
            path = results_file.write_table(table["name"], title=table["title"], columns=table["columns"],
                                            rows=table["rows"], folder=docs,
                                            source=f"scripts/bench_inference.py (raw results: {args.out})")
            print(f"docs results file: {path}")
    if args.models or args.shapes:  # a subset: no goal summary
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"results: {out}")
        return 0
    results["goals"] = {
        f"every_decoder_p99_le_{BUDGET_MS:g}ms": {shape: not over for shape, over in results["over_budget"].items()},
        "over_budget": results["over_budget"],
        "skipped": {shape: sorted(m for m, r in per.items() if "skipped" in r) for shape, per in results["shapes"].items()},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["goals"], indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
