"""Single-window decoding latency and batch throughput: PyTorch eager vs onnxruntime, side by side.

Eager PyTorch runs the trained module; onnxruntime runs the exported file, which for EEGNet and EEG-TCNet
holds an equivalent reordered graph (space filtered before time, ``inference_module()``); eager on that same
graph is timed too, so the table separates the engine's gain from the reordering's.

Every registered decoder at two shapes: EEG 64 channels x 1 s at 160 Hz and MEG 306 channels x 0.5 s at
1 kHz. One CPU thread for both engines (torch.set_num_threads(1); onnxruntime intra-op threads 1,
sequential, all graph optimisations), the same random weights and inputs, interleaved per model so load on
the shared machine hits both alike. Throughput is at batch 64.

    .venv/bin/python scripts/bench_inference.py [--quick] [--out bench_results/inference.json]
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

SHAPES = {"eeg_64ch_1s_160Hz": (64, 160, 160.0), "meg_306ch_0.5s_1kHz": (306, 500, 1000.0)}
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

    for fn in (torch_one, ort_one, torch_batch, ort_batch):  # warm-up
        _time(fn, 5)
    t_one, f_one, o_one = [], [], []
    for _ in range(iters // 10):  # interleave the engines in blocks
        t_one += _time(torch_one, 10)
        f_one += _time(fused_one, 10)
        o_one += _time(ort_one, 10)
    n_batch = max(3, iters // 20)
    t_b = min(_time(torch_batch, n_batch))
    o_b = min(_time(ort_batch, n_batch))
    result = {
        "torch": _percentiles(t_one) | {"throughput_windows_per_s_b64": 64 / t_b},
        "torch_inference_module": _percentiles(f_one),
        "onnxruntime": _percentiles(o_one) | {"throughput_windows_per_s_b64": 64 / o_b},
    }
    result["speedup_p50"] = result["torch"]["p50_ms"] / result["onnxruntime"]["p50_ms"]
    # against eager on the same (reordered) graph the ONNX file holds: the engine's own share of the gain
    result["speedup_p50_same_graph"] = result["torch_inference_module"]["p50_ms"] / result["onnxruntime"]["p50_ms"]
    result["speedup_throughput"] = result["onnxruntime"]["throughput_windows_per_s_b64"] / result["torch"]["throughput_windows_per_s_b64"]
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer iterations")
    parser.add_argument("--out", default="bench_results/inference.json")
    parser.add_argument("--models", help=f"comma-separated decoders (default: every registered one and {', '.join(ENSEMBLES)})")
    args = parser.parse_args()
    import onnxruntime as ort
    import torch

    import models

    torch.set_num_threads(1)
    iters = 100 if args.quick else 500
    results = {"machine": {"threads": 1, "torch": torch.__version__, "onnxruntime": ort.__version__},
               "iterations": iters, "shapes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for shape_name, shape in SHAPES.items():
            results["shapes"][shape_name] = {}
            for name in (args.models.split(",") if args.models else [*models.available(), *ENSEMBLES]):
                r = bench_model(name, shape, iters, Path(tmp))
                results["shapes"][shape_name][name] = r
                if "skipped" in r:
                    print(f"{shape_name:>20} {name:>9}: skipped ({r['skipped']})")
                    continue
                print(f"{shape_name:>20} {name:>9}: torch p50 {r['torch']['p50_ms']:7.3f} p99 {r['torch']['p99_ms']:7.3f} ms | "
                      f"ort p50 {r['onnxruntime']['p50_ms']:7.3f} p99 {r['onnxruntime']['p99_ms']:7.3f} ms | "
                      f"x{r['speedup_p50']:.2f} (same graph x{r['speedup_p50_same_graph']:.2f}) | b64 {r['torch']['throughput_windows_per_s_b64']:8.0f} vs "
                      f"{r['onnxruntime']['throughput_windows_per_s_b64']:8.0f} win/s")
    if args.models:  # a subset: no goal summary
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(results, indent=2))
        print(f"results: {out}")
        return 0
    eeg = results["shapes"]["eeg_64ch_1s_160Hz"]["eegnet"]
    conv = ["eegnet", "shallow", "deep", "tcn"]
    meg = results["shapes"]["meg_306ch_0.5s_1kHz"]
    results["goals"] = {
        "eegnet_eeg_ort_p99_ms": eeg["onnxruntime"]["p99_ms"],
        "eegnet_eeg_ort_p99_le_1ms": eeg["onnxruntime"]["p99_ms"] <= 1.0,
        "meg_conv_speedup_p50": {m: meg[m].get("speedup_p50") for m in conv},
        "meg_conv_speedup_p50_same_graph": {m: meg[m].get("speedup_p50_same_graph") for m in conv},
        "meg_conv_ort_ge_2x": {m: (meg[m].get("speedup_p50") or 0) >= 2.0 for m in conv if "skipped" not in meg[m]},
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(json.dumps(results["goals"], indent=2))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
