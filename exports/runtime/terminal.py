"""The runtime's status lines go through :mod:`logging`: logger ``bmi.serve`` for the notices the operator must
read, ``bmi.serve.status`` for the status line rewritten in place once a second. A lab routes them where it
wants (a file, syslog, its own handler). By default the command line shows them as it always has, through a
queue: the decoding loop only puts a record on it and a thread writes to the terminal, so a slow or unread stderr
pipe never stalls a decision."""

from __future__ import annotations

import atexit
import logging
import logging.handlers
import queue
import sys

NOTICES = logging.getLogger("bmi.serve")
STATUS = logging.getLogger("bmi.serve.status")


class _Terminal(logging.Handler):
    """``\\n<name>: notice\\n`` for notices; the status line as given (it starts with ``\\r``)."""

    def __init__(self, name: str):
        super().__init__()
        self.name_shown = name

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        try:
            sys.stderr.write(text if record.name == STATUS.name else f"\n{self.name_shown}: {text}\n")
            sys.stderr.flush()
        except (OSError, ValueError):  # a closed terminal: the session goes on without it
            pass


def show_on_terminal(name: str = "bmi serve") -> None:
    """Route the notices and the status line to stderr through a queue, unless a handler is already configured
    on ``bmi.serve`` (the lab's own routing wins). What is queued is written before the process ends."""
    if NOTICES.handlers:
        return
    records: queue.SimpleQueue = queue.SimpleQueue()
    NOTICES.addHandler(logging.handlers.QueueHandler(records))
    NOTICES.setLevel(logging.INFO)
    NOTICES.propagate = False
    listener = logging.handlers.QueueListener(records, _Terminal(name))
    listener.start()
    atexit.register(listener.stop)
