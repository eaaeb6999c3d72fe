"""Collect the benchmark JSON files of a results folder into all.json and a Markdown table (benchmarks.md)."""

from __future__ import annotations

import json
import platform
import sys
from pathlib import Path


def fmt(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}"


def main(folder: str = "bench_results") -> int:
    root = Path(folder)
    parts = {p.stem: json.loads(p.read_text()) for p in sorted(root.glob("*.json")) if p.stem != "all"}
    parts["machine"] = {"python": platform.python_version(), "platform": platform.platform(), "cpus": __import__("os").cpu_count()}
    (root / "all.json").write_text(json.dumps(parts, indent=2))
    lines = [f"Machine: {parts['machine']['platform']}, {parts['machine']['cpus']} CPUs, Python {parts['machine']['python']}.", ""]
    if "data" in parts:
        lines += ["| data set | epochs | first load (MNE) | cached load | ratio | peak memory first / cached |", "|---|---|---|---|---|---|"]
        for name, r in parts["data"].items():
            if "first_load" in r:
                lines.append(f"| {name} | {r['epochs']} | {r['first_load']['epochs_per_s']:.0f} epochs/s | "
                             f"{r['cached_load']['epochs_per_s']:.0f} epochs/s | x{r['speedup']:.0f} | "
                             f"{r['first_load']['peak_rss_mb']:.0f} / {r['cached_load']['peak_rss_mb']:.0f} MB |")
        lines.append("")
    if "train" in parts:
        t = parts["train"]
        lines += [f"Training loop: {t.get('model')}, batch {t.get('batch_size')}, {t.get('epochs')} epochs, one torch thread; "
                  "samples/s are medians of rounds that alternate both loops in one process.", "",
                  f"| workload | `bmi train` samples/s | plain loop samples/s | ratio (target {t.get('target_ratio', 0.95)}) | "
                  f"braindecode EEGNetv4 samples/s | bmi train / braindecode (target {t.get('target_versus_braindecode', 1.5)}) | "
                  "extra per epoch | peak memory bmi train / plain | glibc settings, plain loop |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for name, w in t["workloads"].items():
            alone = w["alone"]
            bd = w.get("versus_braindecode") or {}
            lines.append(f"| {name}: {w['description']}, {w['n_train']} windows ({w['batches_per_epoch']} batches/epoch) | "
                         f"{w['samples_per_s']['lightning']:.0f} | {w['samples_per_s']['plain']:.0f} | "
                         f"{w['ratio_lightning_over_plain']:.2f} | {fmt(w['samples_per_s'].get('braindecode'), 0)} | "
                         f"{fmt(bd.get('ratio_lightning_over_braindecode'))} | {w['per_epoch_overhead_ms']:.1f} ms | "
                         f"{alone['lightning']['peak_rss_mb']:.0f} / {alone['plain']['peak_rss_mb']:.0f} MB | "
                         f"x{w['allocator_speedup_plain']:.2f} ({alone['plain_glibc_default']['page_faults']} -> "
                         f"{alone['plain']['page_faults']} page faults) |")
        lines.append("")
    if "inference" in parts:
        lines += ["| shape | model | eager p50 / p99 (ms) | exported graph, eager p50 / p99 | onnxruntime p50 / p99 | "
                  "onnxruntime p99 / 1 ms | batch-64 windows/s eager / ort |",
                  "|---|---|---|---|---|---|---|"]
        for shape, models in parts["inference"]["shapes"].items():
            for name, r in models.items():
                if "skipped" in r:
                    lines.append(f"| {shape} | {name} | window too short | | | | |")
                    continue
                exported = r.get("torch_inference_module", {})
                lines.append(f"| {shape} | {name} | {fmt(r['torch']['p50_ms'], 3)} / {fmt(r['torch']['p99_ms'], 3)} | "
                             f"{fmt(exported.get('p50_ms'), 3)} / {fmt(exported.get('p99_ms'), 3)} | "
                             f"{fmt(r['onnxruntime']['p50_ms'], 3)} / {fmt(r['onnxruntime']['p99_ms'], 3)} | "
                             f"{fmt(r.get('budget_ratio'), 2)} | "
                             f"{r['torch']['throughput_windows_per_s_b64']:.0f} / {r['onnxruntime']['throughput_windows_per_s_b64']:.0f} |")
        lines.append("")
    if "server" in parts:
        lines += ["| stream | end-to-end latency p50 / p99 / max (ms) | dropped samples | missed hops | late hops |", "|---|---|---|---|---|"]
        sessions = [(n, r) for n, r in parts["server"].items() if isinstance(r, dict) and "latency_ms" in r]
        sessions += [(n + " + console + browser", r) for n, r in parts["server"].get("with_console_browser", {}).items()]
        for name, r in sessions:
            lines.append(f"| {name}, {r['seconds']:.0f} s, hop {r['hop_ms']} ms | {fmt(r['latency_ms']['p50'])} / "
                         f"{fmt(r['latency_ms']['p99'])} / {fmt(r['latency_ms']['max'])} | {r['dropped_samples']} | "
                         f"{r['missed_hops']} of {r['decisions_expected']} | {r['late_hops']} |")
        lines.append("")
    if "faults" in parts:
        lines += [f"Fault injection (max age {parts['faults']['max_age_ms']:g} ms, hop {parts['faults']['hop_ms']:g} ms; "
                  "each fault 6 s into its own session):", "",
                  "| fault | time to safe (ms) | movement commands on bad data | hops withheld | recovery (s) |",
                  "|---|---|---|---|---|"]
        for r in parts["faults"]["faults"]:
            lines.append(f"| {r['fault']}: {r['note']} | {fmt(r['time_to_safe_ms'], 1)} | {r['movement_commands_on_bad_data']} | "
                         f"{r['hops_withheld_after_onset']} | {fmt(r['recovery_s'])} |")
        lines.append("")
    if "dashboard" in parts:
        d = parts["dashboard"]
        lay = d.get("layout", {})
        lines += [f"Comparison dashboard on {lay.get('runs')} runs ({lay.get('studies')} study and CV folders, "
                  f"{lay.get('failed')} failed):", "",
                  "| bmi compare (fresh process) | runs API first load / reload | runs page first paint | "
                  "opening a folder |", "|---|---|---|---|",
                  f"| {fmt(d.get('bmi_compare_s'))} s | {fmt(d.get('api_list_runs_cold_s'), 3)} / "
                  f"{fmt(d.get('api_list_runs_again_s'), 3)} s | "
                  + (f"{fmt(d.get('page_first_paint_s'), 3)} s ({d.get('page_group_rows')} folder rows) | "
                     f"{fmt(d.get('page_open_group_s'), 3)} s |" if "page_first_paint_s" in d else f"{d.get('page')} | |"),
                  ""]
    if "accuracy" in parts and (root / "accuracy.md").is_file():
        # the accuracy benchmark writes its own table (recipes x data sets, mean +- std over seeds)
        lines += [f"Test balanced accuracy (`{parts['accuracy'].get('command', 'scripts/bench_accuracy.py')}`, seeds "
                  f"{parts['accuracy'].get('seeds')}):", "", (root / "accuracy.md").read_text()]
        lines.append("")
    (root / "benchmarks.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
