"""
Train a decoder and compare it with the classical references
============================================================

Write a few synthetic EEG recordings in a real file format (FIF), train a decoder from the registry on them, and
read its run: the test score beside the classical references that every run fits on the same trials (CSP + LDA,
tangent space + logistic regression), the learning curves and the test confusion matrix. This is what
``bmi data synth``, ``bmi train`` and ``bmi compare`` do from the command line.
"""

# %%
# Recordings
# ----------
# :func:`datasets.synthetic.write_synthetic` simulates hand-movement trials (rest, grasp, open) with the
# event-related desynchronisation of the sensorimotor rhythm over the hand area, and writes one file per run with
# the cues as annotations. Three runs of one subject; the third is held out for testing. The config's ``data:``
# section says how they are read (every key is in :doc:`/reference/config`).
import matplotlib.pyplot as plt
import numpy as np
from _tutorial_run import recordings, trained_run

files, config = recordings()
print([f.name for f in files])
print(config.read_text())

# %%
# Train
# -----
# :func:`pipeline.train.run_training` takes a typed :class:`~pipeline.record.config.ExperimentConfig` and writes
# the run directory (resolved config, metrics per epoch, checkpoints, plots, summary). Here: the log-variance
# network (the deep analogue of CSP) for a few epochs, which is enough on these recordings.
summary = trained_run("logvar", fresh=True)
print("run directory:", summary["run_dir"])

# %%
# Compare with the references
# ---------------------------
# The summary holds the test scores and those of the references fitted on the same training trials.
scores = {"logvar (this run)": summary["test"]["balanced_accuracy"]}
for result in summary["baselines"].values():
    scores[result["model"]] = result["test"]["balanced_accuracy"]
print(scores)

fig, ax = plt.subplots(figsize=(6, 2.5))
ax.barh(list(scores), [float(v) for v in scores.values()], color=["C0"] + ["C7"] * (len(scores) - 1))
ax.axvline(1 / 3, color="k", ls=":", label="chance (3 classes)")
ax.set_xlim(0, 1)
ax.set_xlabel("test balanced accuracy")
ax.legend(loc="lower right")
fig.tight_layout()

# %%
# Learning curves and confusion matrix
# ------------------------------------
# Every run draws them with :mod:`pipeline.plots` into its ``plots/`` folder.
from pathlib import Path

fig, axes = plt.subplots(len(summary["plots"]), 1, figsize=(9, 4.2 * len(summary["plots"])), squeeze=False)
for png, ax in zip(summary["plots"], axes[:, 0]):
    ax.imshow(plt.imread(Path(png)))
    ax.set_axis_off()
fig.tight_layout()

print(np.array(summary["test_confusion_matrix"]))
