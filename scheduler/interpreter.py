"""Which Python runs our helper scripts (the guardian, ``die_with_parent``): ``sys.executable`` is not always Python.

A host that embeds the interpreter names itself there: under uWSGI
``sys.executable`` is the ``uwsgi`` binary, and ``uwsgi -I guardian.py``
starts no guardian (it exits at once, so writing to it raised a broken pipe
while a model started, and a killed worker would have left a wrapper's
server running). The helper scripts import the standard library only and
run isolated (``-I``), so any interpreter of this version will do; the
environment's own is preferred, then the base install's.
"""

from __future__ import annotations

import os
import shutil
import sys
from functools import cache
from typing import Iterator


@cache
def python_executable() -> str:
    """The path of a Python interpreter of this version: ``sys.executable`` when it is one."""
    return next((path for path in _candidates() if _is_python(path)), sys.executable)


def _candidates() -> Iterator[str]:
    yield sys.executable
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix, sys.base_prefix, sys.base_exec_prefix)):
        yield os.path.join(prefix, "bin", version)
    yield getattr(sys, "_base_executable", "")  # CPython's record of the interpreter it was started as
    yield shutil.which(version) or ""


def _is_python(path: str) -> bool:
    return os.path.basename(path).startswith("python") and os.path.isfile(path) and os.access(path, os.X_OK)
