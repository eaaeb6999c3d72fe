"""
A decoder's spatial patterns
============================

The log-variance network learns spatial filters, as CSP does: each one is a weighting of the channels whose
output's log variance over the window is a feature. A filter's weights are not where the signal comes from;
its *pattern* is (Haufe et al., 2014, NeuroImage 87:96-110, doi:10.1016/j.neuroimage.2013.10.067): the
covariance of the channels times the filter. On these synthetic recordings the movement modulates the
sensorimotor rhythm over the hand areas, and that is where the patterns should lie.
"""

# %%
# The trained network and its filters
# -----------------------------------
# :func:`pipeline.record.run.load_network` returns the run's plain ``nn.Module`` with its kept weights. With
# whitening on, the filter applied to the channels is the learnt filter times the fixed whitening matrix.
import matplotlib.pyplot as plt
import mne
import numpy as np
from _tutorial_run import recordings, trained_run

from datasets.dsp import PreprocessingSpec, apply_offline
from pipeline.record.run import load_network

summary = trained_run("logvar")
net, _, data_info, _ = load_network(summary["run_dir"])
W = net.spatial.weight.detach().numpy()[:, :, 0] @ net.whitening.numpy()  # [n_filters, n_chans]
print(f"{W.shape[0]} spatial filters over {W.shape[1]} channels")

# %%
# Patterns from the training recordings' covariance
# -------------------------------------------------
# The channels' covariance is taken on the training runs, band-passed by the run's own causal filters
# (:func:`datasets.dsp.apply_offline` runs the preprocessing the model was trained with).
files, _ = recordings()
spec = PreprocessingSpec.from_dict(data_info["preprocessing"])
raws = [mne.io.read_raw_fif(f, preload=True, verbose="error") for f in files[:2]]
filtered = np.concatenate([apply_offline(spec, raw.get_data(picks=list(spec.ch_names))) for raw in raws], axis=1)
patterns = np.cov(filtered) @ W.T  # [n_chans, n_filters]

# %%
# On the scalp
# ------------
info = raws[0].copy().pick(list(spec.ch_names)).info
n_cols = min(8, W.shape[0])
n_rows = -(-W.shape[0] // n_cols)
fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.6 * n_cols, 1.8 * n_rows), squeeze=False)
for i, ax in enumerate(axes.flat[: W.shape[0]]):
    mne.viz.plot_topomap(patterns[:, i], info, axes=ax, show=False, contours=0)
    ax.set_title(f"pattern {i + 1}", fontsize=9)
fig.tight_layout()
