"""The guardian: a small process that SIGKILLs every upstream's process group once the proxy is gone.

The kernel's parent-death signal (``PR_SET_PDEATHSIG``) reaches only the
direct child: with a wrapper ``cmd`` (``sh -c 'server; echo done'``, a
script, ``docker run``) the real server is a grandchild, and a SIGKILLed
proxy would leave it running, holding its GPU and its port. Nothing in the
proxy can act on its own SIGKILL, so another process must: the guardian.

One guardian per proxy process, started on the first launch. Each upstream
runs in a process group of its own; the proxy tells the guardian each group
it starts (``+<pgid>``) and each it has finished with (``-<pgid>``), one
line each on the guardian's stdin. The proxy holds the only write end of
that pipe, so however the proxy ends (SIGKILL of the worker, of gunicorn's
master, which takes the worker with it, a crash, a clean exit) the guardian
reads end-of-file, SIGKILLs every group still listed, and exits. It ignores
the signals a terminal or a supervisor sends a whole process group (INT,
TERM, HUP, QUIT): only the proxy's end decides its end.

The proxy side (``Guardian``) starts a new guardian, telling it every live
group again, if the old one is gone or the process has forked since. It is
started with ``subprocess.Popen``: gevent's once patched (the main thread's
hub), the standard library's otherwise, which works from any thread (issue
13's bridge launches from a thread of its own). Nothing ever waits on it:
``poll`` and a few bytes written to its pipe never block.

Limits: a process that leaves its group (``setsid``, a daemonizing server)
escapes ``killpg``; so does a container that ``docker run`` asked the docker
daemon to start (give such a model a ``cmdStop``). The guardian program
imports the standard library only, and runs as a script, not a package.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

IGNORED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT)


def guard(fd: int = 0) -> set[int]:
    """The guardian's loop: keep the groups read from ``fd`` until EOF, then SIGKILL them; those it killed."""
    groups: set[int] = set()
    pending = b""
    while chunk := os.read(fd, 4096):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.startswith(b"+"):
                groups.add(int(line[1:]))
            elif line.startswith(b"-"):
                groups.discard(int(line[1:]))
    for pgid in groups:
        try:
            os.killpg(pgid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
    return groups


class Guardian:
    """The proxy's side: tell the guardian which groups to kill if this process dies."""

    def __init__(self) -> None:
        self._groups: set[int] = set()
        self._proc: subprocess.Popen | None = None
        self._owner_pid = 0  # the process that started ``_proc``: a fork needs a guardian of its own

    def watch(self, pgid: int) -> None:
        """Kill group ``pgid`` if this process dies before ``forget(pgid)``."""
        self._groups.add(pgid)
        self._send(b"+%d\n" % pgid)

    def forget(self, pgid: int) -> None:
        """Group ``pgid`` is finished with (its leader reaped, the rest killed)."""
        if pgid in self._groups:
            self._groups.discard(pgid)
            self._send(b"-%d\n" % pgid)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _send(self, line: bytes) -> None:
        if self._alive():
            try:
                os.write(self._proc.stdin.fileno(), line)  # a few bytes: never blocks on a reading guardian
                return
            except OSError:  # it died between the check and the write
                pass
        self._start()

    def _alive(self) -> bool:
        return (self._proc is not None and self._owner_pid == os.getpid()
                and self._proc.poll() is None)

    def _start(self) -> None:
        """A new guardian, told every live group at once (``+`` lines on its stdin before it reads)."""
        if self._proc is not None:  # a dead guardian's pipe, or one a fork inherited: theirs, not ours
            self._proc.stdin.close()
        from scheduler.interpreter import python_executable  # here: the guardian itself runs as a bare script

        self._proc = subprocess.Popen(
            [python_executable(), "-I", os.path.abspath(__file__), "--guarding", str(os.getpid())],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        self._owner_pid = os.getpid()
        if self._groups:
            os.write(self._proc.stdin.fileno(), b"".join(b"+%d\n" % g for g in sorted(self._groups)))


def main() -> None:
    for sig in IGNORED_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
    guard(sys.stdin.fileno())


if __name__ == "__main__":
    main()
