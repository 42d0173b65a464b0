"""Where log lines go: proxy records and the upstreams' own output, into the log monitors.

Records of the ``llama-swap`` loggers at or above ``logLevel`` become proxy
lines, ``[LEVEL] message`` with llama-swap's level names (DEBUG, INFO, WARN,
ERROR), after a timestamp when ``logTimeFormat`` names one; the upstreams'
lines are kept verbatim. Both go to the app's ``LogHub``
(``app.observe.logs``), which sends to stdout what ``logToStdout`` asks for.
"""

from __future__ import annotations

import logging
from typing import Callable

from app.config import Config
from app.observe.logs import LogHub
from app.runtime.log_time import time_formatter

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warn": logging.WARNING,
           "warning": logging.WARNING, "error": logging.ERROR}
_LEVEL_NAMES = {logging.WARNING: "WARN", logging.CRITICAL: "ERROR"}


class ProxyLineFormatter(logging.Formatter):
    """``[<time> ][LEVEL] message`` as llama-swap writes its own lines."""

    def __init__(self, time_format: str = ""):
        super().__init__()
        self._stamp = time_formatter(time_format)

    def format(self, record: logging.LogRecord) -> str:
        level = _LEVEL_NAMES.get(record.levelno, record.levelname)
        line = f"[{level}] {record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if self._stamp is not None:
            line = f"{self._stamp(record.created)} {line}"
        return line


class ProxyLogHandler(logging.Handler):
    """Hands each proxy record, formatted, to the hub's proxy log."""

    def __init__(self, hub: LogHub, formatter: logging.Formatter):
        super().__init__()
        self._hub = hub
        self.setFormatter(formatter)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._hub.write_proxy(self.format(record) + "\n")
        except Exception:  # a bad format string must not take the caller down
            self.handleError(record)


def setup_logging(config: Config, hub: LogHub) -> None:
    """Point the ``llama-swap`` loggers at ``hub`` with this config's level, stamp and ``logToStdout``."""
    hub.configure(config.log_to_stdout)
    proxy = logging.getLogger("llama-swap")
    proxy.setLevel(_LEVELS.get(config.log_level, logging.INFO))
    proxy.propagate = False
    for handler in list(proxy.handlers):
        proxy.removeHandler(handler)
    proxy.addHandler(ProxyLogHandler(hub, ProxyLineFormatter(config.log_time_format)))


def upstream_output_sink(hub: LogHub) -> Callable[[str, str], None]:
    """The callback each process pumps its child's output lines into: ``(model, line)``."""
    write = hub.write_upstream

    def emit(model: str, line: str) -> None:
        write(model, line + "\n")

    return emit
