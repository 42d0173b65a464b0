"""Starting, signalling and reaping upstream children: the operating system's side of a process owner.

``UpstreamProcess`` decides *when*; this module knows *how*. Behind the
small ``Launcher`` / ``Child`` protocols, so the owner's tests use a fake
child whose output, exit and signals the test controls.

``PosixLauncher``, the real one:
- each child runs in its own session, so one ``killpg`` reaches everything
  it spawned (a ``bash -c`` wrapper, a script, ``docker run``); once the
  child exits, whatever it left in its group is SIGKILLed;
- each child's group is handed to the guardian (``scheduler.guardian``), a
  separate process that SIGKILLs it if we die first, however we die: the
  kernel's parent-death signal (``PR_SET_PDEATHSIG``, also set) reaches only
  the direct child, not the server a wrapper started. The child sets it
  itself before it becomes the command: with util-linux's ``setpriv
  --pdeathsig KILL`` (a small C program: about a millisecond) where the
  host has it, else with ``scheduler.die_with_parent``, a fresh interpreter
  (about 30 ms, which a swap would pay). No Python code of ours runs between
  fork and exec (``preexec_fn``, unsafe in a process with threads); what
  ``subprocess`` does natively (a new session, the fds passed, the signals
  Python ignores restored) it does. A command that cannot be executed is
  refused before the fork with the error ``subprocess`` raises;
- stdout and stderr are one pipe, read line by line.

Waiting on a child and reading its output block only the calling greenlet,
with or without gevent's monkey patching, on whichever thread's hub calls:
- on the hub that runs libev's default loop (the main thread's: gunicorn's
  gevent worker, ``python -m app``), with ``gevent.subprocess``, whose child
  watchers (SIGCHLD) exist on that loop only;
- on any other hub (issue 13's thread bridge: a threaded WSGI host, where
  the server runs on a hub of its own thread), ``gevent.subprocess`` cannot
  start a child at all ("child watchers are only available on the default
  loop"). There the standard library's ``Popen`` (it works from any thread)
  starts it, its exit is waited for on a process file descriptor
  (``pidfd_open``: readable once the child has exited; polled where the
  kernel lacks it), and its output read through gevent's ``FileObject``.
  ``PR_SET_PDEATHSIG`` fires when the *thread* that forked the child ends,
  not the process: such a hub must live as long as its children (the
  bridge's thread does), never a short-lived request thread.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from typing import Any, Iterator, Mapping, Protocol, Sequence

import gevent
import gevent.subprocess
from gevent.fileobject import FileObject
from gevent.monkey import get_original
from gevent.socket import wait_read

from scheduler.die_with_parent import LC_CTYPE_KEEP
from scheduler.guardian import Guardian
from scheduler.interpreter import python_executable

DIE_WITH_PARENT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "die_with_parent.py")
SETPRIV = shutil.which("setpriv")  # util-linux; None where the host lacks it


def executable(command: str, path: str | None) -> str:
    """Where ``command`` is (as exec would find it on ``path``); the OSError ``subprocess`` raises if nowhere."""
    if os.sep in command:
        if not os.path.exists(command):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
        if os.path.isdir(command) or not os.access(command, os.X_OK):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), command)
        return command
    found = shutil.which(command, path=path if path is not None else os.defpath)
    if found is None:
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), command)
    return found


class Child(Protocol):
    """One running upstream child."""

    @property
    def pid(self) -> int: ...

    def lines(self) -> Iterator[str]:
        """Its output (stdout and stderr), a line at a time, without line ends, until EOF."""
        ...

    def wait(self) -> int:
        """Block until it exits; its exit code (negative: killed by that signal)."""
        ...

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to its whole process group; nothing if the group is gone."""
        ...


class Launcher(Protocol):
    def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> Child:
        """Start ``argv``; raises (OSError, ValueError, ...) when it cannot be started."""
        ...

    def run(self, argv: Sequence[str], timeout: float) -> None:
        """Run a helper command (``cmdStop``) to its end; raises if it cannot, or overruns ``timeout``."""
        ...


def exec_status(fd: int) -> int:
    """What ``die_with_parent`` wrote on ``fd`` before it closed: 0 once the command runs, else the errno
    of its exec. Read cooperatively: only the calling greenlet waits for the interpreter to start."""
    with FileObject(fd, "rb") as status:
        written = status.read()
    return int(written) if written else 0


def kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


_GUARDIAN = Guardian()  # one per process, started on the first launch
_StdlibPopen = get_original("subprocess", "Popen")  # the standard one, patched or not
EXIT_POLL_S = 0.02  # how often a child's exit is looked for where there is no pidfd


class PidfdPopen(_StdlibPopen):
    """The standard library's ``Popen``, waited for cooperatively on any hub: exit through a pidfd, output
    (``stdout=PIPE``) through a gevent ``FileObject``."""

    def __init__(self, args: Sequence[str], **kwargs: Any):
        read_end = write_end = None
        if kwargs.get("stdout") == subprocess.PIPE:
            read_end, write_end = os.pipe()
            kwargs["stdout"] = write_end
        try:
            super().__init__(args, **kwargs)
        except BaseException:
            if read_end is not None:
                os.close(read_end)
            raise
        finally:
            if write_end is not None:
                os.close(write_end)  # the child has its own copy
        if read_end is not None:
            self.stdout = FileObject(read_end, "rb")
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except (AttributeError, OSError):  # before Linux 5.3: polled
            self._pidfd = None

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self._until_exited(timeout)
        returncode = super().wait()  # exited: reaped at once
        if self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return returncode

    def _until_exited(self, timeout: float | None) -> None:
        expired = subprocess.TimeoutExpired(self.args, timeout)
        if self._pidfd is not None:
            wait_read(self._pidfd, timeout, expired)
            return
        with gevent.Timeout(timeout, expired):
            while self.poll() is None:
                gevent.sleep(EXIT_POLL_S)


def start_process(argv: Sequence[str], **kwargs: Any) -> gevent.subprocess.Popen | PidfdPopen:
    """``Popen(argv, **kwargs)`` whose ``wait`` and ``stdout`` block only the calling greenlet, on this thread's hub."""
    if gevent.get_hub().loop.default:
        return gevent.subprocess.Popen(argv, **kwargs)
    return PidfdPopen(argv, **kwargs)


class PosixChild:
    __slots__ = ("_popen", "_guardian")

    def __init__(self, popen: gevent.subprocess.Popen | PidfdPopen, guardian: Guardian):
        self._popen = popen
        self._guardian = guardian

    @property
    def pid(self) -> int:
        return self._popen.pid

    def lines(self) -> Iterator[str]:
        for raw in self._popen.stdout:
            yield raw.decode("utf-8", "replace").rstrip("\r\n")

    def wait(self) -> int:
        returncode = self._popen.wait()
        kill_group(self._popen.pid, signal.SIGKILL)  # whatever it left in its group
        self._guardian.forget(self._popen.pid)
        return returncode

    def signal_group(self, sig: int) -> None:
        kill_group(self._popen.pid, sig)  # its own session: pgid == pid


class PosixLauncher:
    """Children in their own session, dying with us, their output on one pipe."""

    def __init__(self, guardian: Guardian | None = None):
        self._guardian = guardian or _GUARDIAN

    def launch(self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None) -> Child:
        full_env = {**os.environ, **env}
        if SETPRIV is not None:
            return self._launch_with_setpriv(argv, full_env, cwd)
        return self._launch_with_interpreter(argv, full_env, cwd)

    def _launch_with_setpriv(self, argv: Sequence[str], full_env: dict[str, str], cwd: str | None) -> Child:
        if any("\0" in arg for arg in argv):
            raise ValueError("embedded null byte")  # as subprocess says, before it looks for the command
        command = argv[0] if cwd is None or os.sep not in argv[0] else os.path.join(cwd, argv[0])
        executable(command, full_env.get("PATH"))  # refused here, as subprocess would, not by setpriv's 127
        popen = start_process(
            [SETPRIV, "--pdeathsig", "KILL", "--", *argv],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            env=full_env, cwd=cwd, close_fds=True, start_new_session=True)
        self._guardian.watch(popen.pid)  # its own session: pgid == pid
        return PosixChild(popen, self._guardian)

    def _launch_with_interpreter(self, argv: Sequence[str], full_env: dict[str, str], cwd: str | None) -> Child:
        if "LC_CTYPE" in full_env:  # die_with_parent puts it back after its interpreter's locale coercion
            full_env[LC_CTYPE_KEEP] = full_env["LC_CTYPE"]
        status_read, status_write = os.pipe()
        try:
            popen = start_process(
                [python_executable(), "-I", "-S", DIE_WITH_PARENT, str(os.getpid()), str(status_write), *argv],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                env=full_env, cwd=cwd, close_fds=True, start_new_session=True, pass_fds=(status_write,))
        except BaseException:
            os.close(status_read)
            raise
        finally:
            os.close(status_write)
        self._guardian.watch(popen.pid)  # its own session: pgid == pid
        child = PosixChild(popen, self._guardian)
        error = exec_status(status_read)
        if error:
            child.wait()
            popen.stdout.close()
            raise OSError(error, os.strerror(error), argv[0])
        return child

    def run(self, argv: Sequence[str], timeout: float) -> None:
        """Run it in a group of its own; on overrun, SIGKILL the group (a wrapper's children too) and raise."""
        popen = start_process(list(argv), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, close_fds=True, start_new_session=True)
        self._guardian.watch(popen.pid)
        try:
            popen.wait(timeout=max(0.0, timeout))
        finally:
            kill_group(popen.pid, signal.SIGKILL)  # on overrun, or what it left behind
            popen.wait()
            self._guardian.forget(popen.pid)
