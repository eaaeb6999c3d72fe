"""Quiet by default: third-party chatter that tells a ``bmi`` user nothing is filtered; ``--verbose`` shows it.

What is filtered, and why it says nothing here:

- Lightning's info lines (accelerator found, "Tip: try litlogger", checkpoint restored for the final
  evaluation, "max_epochs reached"): the run prints what it chose and where it writes itself;
- Lightning's warning that the batches per epoch are fewer than ``log_every_n_steps`` (metrics are logged per
  epoch here, not per step), that a loader has no workers (the windows are in memory), and its own pytree
  deprecation notice;
- onnxruntime's quantiser listing every tensor it did not quantise.

Our own warnings (dropped epochs, too few steps, an early stop) are never filtered.
"""

from __future__ import annotations

import logging
import warnings

#: (message regex, category) of the third-party warnings filtered by default
WARNINGS = (
    (r".*isinstance\(treespec, LeafSpec\)` is deprecated", Warning),
    (r"The number of training batches \(\d+\) is smaller than the logging interval", Warning),
    (r".*does not have many workers which may be a bottleneck", Warning),
    (r".*Consider setting `persistent_workers=True`", Warning),
)
#: loggers whose info lines are dropped by default (warnings and errors still show)
LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero",
           "lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero")
#: packages that log their chatter on the root logger (``logging.warning``): dropped by their source file
ROOT_LOGGER_SOURCES = ("onnxruntime/quantization",)


class _DropFrom(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        path = record.pathname.replace("\\", "/")
        return not any(source in path for source in ROOT_LOGGER_SOURCES)


def quiet_third_party(verbose: bool = False) -> None:
    """Install the filters for this process (a no-op with ``verbose``)."""
    if verbose:
        return
    for message, category in WARNINGS:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    root = logging.getLogger()
    if not any(isinstance(f, _DropFrom) for f in root.filters):
        root.addFilter(_DropFrom())


def add_verbose(parser) -> None:
    """The ``--verbose`` option every training-side command takes."""
    parser.add_argument("--verbose", action="store_true",
                        help="also show third-party warnings and log lines (Lightning, W&B, onnxruntime) that are "
                             "filtered by default")
