"""A ``cmd`` / ``cmdStop`` string → the argv a process is started with.

Matches Go's ``StripComments`` and ``SanitizeCommand``: lines whose first
non-blank character is ``#`` are dropped, a trailing backslash continues the
line, and what is left is split like a POSIX shell (quotes and backslash
escapes; no variable expansion, so ``${PID}`` stays literal).
"""

from __future__ import annotations

import shlex


def strip_comments(text: str) -> str:
    """``text`` without its comment lines (done before macro expansion, as Go does)."""
    return "\n".join(line for line in text.split("\n") if not line.strip().startswith("#"))


def split_command(text: str) -> tuple[str, ...]:
    """The argv of a command string; ValueError for unbalanced quotes. May be empty."""
    lines = []
    for line in text.split("\n"):
        trimmed = line.strip()
        if trimmed.startswith("#"):
            continue
        lines.append(trimmed[:-1] + " " if trimmed.endswith("\\") else line)
    return tuple(shlex.split("\n".join(lines), comments=False, posix=True))
