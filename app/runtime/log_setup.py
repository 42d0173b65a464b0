"""Where log lines go: proxy events and the upstreams' own output, per ``logToStdout``.

Proxy lines are ``[LEVEL] message`` (with a timestamp when ``logTimeFormat``
is set), as the Go llama-swap prints them; upstream lines are copied
verbatim. ``logToStdout`` picks which of the two reach stdout.
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

from app.config import Config

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}

upstream_log = logging.getLogger("llama-swap.upstream")


def setup_logging(config: Config) -> None:
    proxy = logging.getLogger("llama-swap")
    proxy.setLevel(_LEVELS.get(config.log_level, logging.INFO))
    proxy.propagate = False
    for handler in list(proxy.handlers):
        proxy.removeHandler(handler)
    upstream_log.propagate = False
    # Shown or not, every upstream line passes through here: when nobody shows
    # them, the level check alone turns them away (no record is built).
    upstream_log.setLevel(logging.INFO if config.log_to_stdout in ("upstream", "both") else logging.CRITICAL + 1)
    for handler in list(upstream_log.handlers):
        upstream_log.removeHandler(handler)

    show_proxy = config.log_to_stdout in ("proxy", "both")
    show_upstream = config.log_to_stdout in ("upstream", "both")
    if show_proxy:
        handler = logging.StreamHandler(sys.stdout)
        stamp = "%(asctime)s " if config.log_time_format else ""
        handler.setFormatter(logging.Formatter(stamp + "[%(levelname)s] %(message)s"))
        proxy.addHandler(handler)
    else:
        proxy.addHandler(logging.NullHandler())
    if show_upstream:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(message)s"))
        upstream_log.addHandler(handler)
    else:
        upstream_log.addHandler(logging.NullHandler())


def upstream_output_sink() -> Callable[[str, str], None]:
    """The callback each process pumps its child's output lines into."""

    def emit(model: str, line: str) -> None:
        upstream_log.info("%s", line)

    return emit
