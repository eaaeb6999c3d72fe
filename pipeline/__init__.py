"""Training pipeline: Lightning task, training runs, tracking, cross-validation, sweeps, comparison, the `bmi` CLI.

Kept import-light: submodules import torch/Lightning themselves.
"""

#: The classification metrics every stage and report uses (balanced accuracy = mean per-class recall).
METRICS = ("accuracy", "balanced_accuracy", "kappa", "f1_macro")
