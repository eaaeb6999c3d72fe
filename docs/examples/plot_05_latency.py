"""
How long a decision takes on the rig
====================================

The rig runs the exported model with onnxruntime only (no torch). :class:`exports.runtime.model.DecoderSession`
is the server's decoder: one preallocated input window, one thread, warmed up at start. Here the held-out
recording goes through the server's own decision chain (:class:`exports.runtime.chain.SignalChain`) one hop at a
time, and the time of each decoded window (the newest window copied from the ring, then the model) is drawn as a
histogram, with the percentiles that ``bmi serve --stats`` reports. What a decision costs on this machine depends
on its load: measure on the rig computer itself (``bmi bench``).
"""

import time

import matplotlib.pyplot as plt
import mne
import numpy as np
from _tutorial_run import WORK, recordings, trained_run

from exports.onnx import export_run
from exports.runtime.alignment import choose_alignment
from exports.runtime.chain import ChainConfig, SignalChain
from exports.runtime.model import DecoderSession

summary = trained_run("logvar")
model = WORK / "logvar.onnx"
if not model.is_file():
    export_run(summary["run_dir"], out=model)
decoder = DecoderSession(model, threads=1)
meta = decoder.meta
print(f"model input: {decoder.n_chans} channels x {decoder.n_times} samples at {meta['sfreq']:g} Hz")

# %%
# The held-out recording through the decision chain, a hop (50 ms) at a time; every decoded window is timed.
files, _ = recordings()
raw = mne.io.read_raw_fif(files[-1], preload=True, verbose="error")
data = raw.get_data(picks=list(meta["preprocessing"]["ch_names"])).astype(np.float32)
chain = SignalChain(decoder, ChainConfig(), choose_alignment(meta, None, None, None))

latency_ms = []
for start in range(0, data.shape[1], chain.hop):
    chain.feed(data[:, start : start + chain.hop])
    if chain.hop_due():
        t0 = time.perf_counter()
        window = chain.window()  # the checks' verdict, the window from the ring, then the model
        if window.reason is None:
            latency_ms.append(1000 * (time.perf_counter() - t0))
latency_ms = np.asarray(latency_ms)
p50, p99 = np.percentile(latency_ms, [50, 99])
print(f"median {p50:.3f} ms, 99th percentile {p99:.3f} ms, longest {latency_ms.max():.3f} ms")

fig, ax = plt.subplots(figsize=(6, 3))
shown = latency_ms[latency_ms <= 3 * p99]  # the rare long ones (the machine's other work) are counted below
ax.hist(shown, bins=40, color="C0")
ax.set_title(f"{len(latency_ms) - len(shown)} of {len(latency_ms)} windows took longer than {3 * p99:.2f} ms",
             fontsize=9)
for value, label in ((p50, "median"), (p99, "99th percentile")):
    ax.axvline(value, color="k", ls="--" if label == "median" else ":", label=f"{label} {value:.2f} ms")
ax.set_xlabel("decoder time per window (ms)")
ax.set_ylabel("windows")
ax.legend()
fig.tight_layout()
