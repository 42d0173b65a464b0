"""The server's name in ``ps``: ``llama-swap`` and its arguments, where tools look for llama-swap.

``pgrep llama-swap`` reads a process's short name (``/proc/<pid>/comm``),
``pgrep -f llama-swap`` and ``ps`` its command line. The master's becomes
``llama-swap --config … --listen …`` and the worker's ``llama-swap worker
--config …``: the arguments stay, so whoever tells servers apart by them
(several on one host, the tests' leak checks) still can. The command line
can only be rewritten with the ``setproctitle`` package; without it the short
name alone changes. gunicorn retitles its processes itself when the package
is there ("gunicorn: master [...]"), so ``gunicorn.conf.py`` calls ``retitle``
after it has: in ``pre_fork`` (the master) and ``post_fork`` (the worker).
"""

from __future__ import annotations

import sys

NAME = "llama-swap"

try:
    from setproctitle import setproctitle
except ImportError:  # the short name still changes
    setproctitle = None


def title(role: str = "", argv: list[str] | None = None) -> str:
    """``llama-swap [role] <arguments>``: the process's arguments (``sys.argv[1:]``) after its name."""
    args = sys.argv[1:] if argv is None else argv
    return " ".join([NAME, *([role] if role else []), *args])


def retitle(role: str = "") -> None:
    """Name this process ``llama-swap`` in ``ps`` (``role`` tells the worker from the master)."""
    if setproctitle is not None:
        setproctitle(title(role))
    try:
        with open("/proc/self/comm", "w") as comm:  # Linux; setproctitle would leave the title's first 15 bytes
            comm.write(NAME)
    except OSError:
        pass
