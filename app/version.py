"""The version: the string ``--version`` prints, and the build facts ``/api/version`` answers.

``__version__`` is the one place the version is written. The commit and the
build date come from the environment a package was built with
(``LLAMA_SWAP_COMMIT``, ``LLAMA_SWAP_BUILD_DATE``), else from git when the
code runs from a checkout (HEAD's short hash and its commit date), else
"unknown". ``build_info`` asks git once per process and remembers.
"""

from __future__ import annotations

import functools
import os
import subprocess
from pathlib import Path

__version__ = "0.1.0"

COMMIT_ENV = "LLAMA_SWAP_COMMIT"
BUILD_DATE_ENV = "LLAMA_SWAP_BUILD_DATE"
UNKNOWN = "unknown"
_ROOT = Path(__file__).resolve().parent.parent


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(_ROOT), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


@functools.cache
def build_info() -> dict[str, str]:
    """``{"version", "commit", "build_date"}``, as llama-swap's ``/api/version``."""
    commit, build_date = os.environ.get(COMMIT_ENV), os.environ.get(BUILD_DATE_ENV)
    if not (commit and build_date):
        head = (_git("log", "-1", "--format=%h %cI", "HEAD") or "").split()  # one git run for both facts
        git_commit, git_date = head if len(head) == 2 else (None, None)
        commit, build_date = commit or git_commit or UNKNOWN, build_date or git_date or UNKNOWN
    return {"version": __version__, "commit": commit, "build_date": build_date}
