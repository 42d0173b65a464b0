"""Leaving a gunicorn process (master or worker) once everything it owns is stopped and flushed.

The interpreter's own teardown frees every module's objects one by one: a
third of a second of CPU in the worker, for nothing, on every stop and
restart. Both processes end their work explicitly first (upstreams stopped,
activity flushed, workers reaped), so the only thing left to do is to flush
the logs and go.
"""

from __future__ import annotations

import logging
import os
import sys

from app.observe.stdout_writer import drain_stdout


def exit_now(code: int | str | None = 0) -> None:
    """Flush the logs and the standard streams, then end the process with ``code`` (as ``sys.exit`` reads it)."""
    logging.shutdown()
    drain_stdout(timeout=1.0)  # the log lines still queued for stdout, if it reads them soon
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing left to save
            pass
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:  # sys.exit("message") prints the message and exits 1
        print(code, file=sys.stderr, flush=True)
        status = 1
    os._exit(status)
