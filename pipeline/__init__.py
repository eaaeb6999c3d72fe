"""Training pipeline: Lightning task, training runs, tracking, cross-validation, sweeps, comparison, the `bmi` CLI.

Kept import-light: submodules import torch/Lightning themselves.
"""
