"""
Offline and online give the same probabilities
==============================================

One preprocessing definition, run twice: training filtered whole recordings, the rig filters samples as they
arrive. Here the trained run is exported to ONNX (with its preprocessing and normalisation in the metadata,
:doc:`/reference/metadata`), the held-out recording is streamed through the rig's own decision chain hop by hop
(:func:`exports.runtime.closed_loop.decode_windows`, what ``bmi serve`` and ``bmi rehearse`` run), and every
window's probabilities are compared with the model run offline on the same window, filtered in one pass over
the whole recording with SciPy.
"""

# %%
# Export
# ------
# :func:`exports.onnx.export_run` writes the ONNX model and checks it against the PyTorch network.
import matplotlib.pyplot as plt
import mne
import numpy as np
import onnxruntime as ort
from _tutorial_run import WORK, recordings, trained_run
from scipy import signal

from datasets.dsp import apply_normalization
from exports.onnx import export_run

summary = trained_run("logvar")
exported = export_run(summary["run_dir"], out=WORK / "logvar.onnx")
meta = exported.metadata
print(exported.path.name, "parity with PyTorch:", exported.parity)

# %%
# Stream the held-out run
# -----------------------
# The recording's channels in the model's order, streamed in 50 ms chunks: the causal filters carry their state
# from chunk to chunk, a window is decoded every hop once the filters have settled.
from exports.runtime.closed_loop import decode_windows

files, _ = recordings()
raw = mne.io.read_raw_fif(files[-1], preload=True, verbose="error")
pre = meta["preprocessing"]
data = raw.get_data(picks=list(pre["ch_names"]))
windows = decode_windows(exported.path, data, hop_ms=50.0)
decoded = np.array([reason == "" for reason in windows.reason])  # the others were withheld (settling filters)
t_online, online, newest_online = windows.t[decoded], windows.probabilities[decoded], windows.sample_index[decoded] - 1
print(f"{decoded.sum()} windows decoded online, {(~decoded).sum()} withheld")

# %%
# The same windows offline
# ------------------------
# One ``scipy.signal.sosfilt`` over the whole recording (started at the steady state of its first sample), then
# each window ending at the online window's newest sample, every ``decim``-th sample, normalised as in training.
sos = np.asarray(pre["sos"], dtype=np.float64).reshape(-1, 6)
filtered = signal.sosfilt(sos, data, axis=1, zi=signal.sosfilt_zi(sos)[:, None, :] * data[None, :, :1])[0]
decim, n_times = pre["decim"], meta["window"]["n_times"]
session = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
offline = []
for newest in newest_online:
    window = filtered[:, newest - (n_times - 1) * decim : newest + 1 : decim].astype(np.float32)
    window = apply_normalization(window, meta["normalization"])
    offline.append(session.run(["probabilities"], {"signals": window[None]})[0][0])
offline = np.asarray(offline)
print(f"largest difference of a probability: {np.abs(offline - online).max():.2e}")

# %%
# Both, class by class: the lines lie on each other.
fig, ax = plt.subplots(figsize=(9, 3.2))
for i, name in enumerate(meta["classes"]):
    ax.plot(t_online, offline[:, i], color=f"C{i}", lw=3, alpha=0.35, label=f"{name} offline")
    ax.plot(t_online, online[:, i], color=f"C{i}", lw=0.8, label=f"{name} online")
for onset, _duration, description in zip(raw.annotations.onset, raw.annotations.duration,
                                          raw.annotations.description):
    ax.axvline(onset, color="k", lw=0.4, alpha=0.3)
ax.set_xlim(t_online[0], t_online[0] + 40)
ax.set_xlabel("time in the recording (s)")
ax.set_ylabel("probability")
ax.legend(ncol=3, fontsize=7, loc="upper right")
fig.tight_layout()
