"""Training: the Lightning task, training runs, the run record, tracking, cross-validation, sweeps, comparison,
and the ``bmi`` command line (``pipeline.cli``) and demo (``pipeline.demo``), the two modules that orchestrate every
layer.

Import-light: this package imports nothing; its modules import torch and Lightning themselves, where they need
them.
"""
