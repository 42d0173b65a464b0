"""The first program of every upstream child: ask the kernel to SIGKILL it when the proxy dies, then become the command.

The parent-death signal (``PR_SET_PDEATHSIG``) has to be set by the child
itself, between fork and exec. Done there with ``preexec_fn``, that is Python
code run in a copy of a process that has other threads (gevent's resolver
and threadpool, the stdout writer): a lock one of them held at the fork is
held for ever in the copy, and ``subprocess`` warns against it. Instead the
child execs this small program in a fresh interpreter (one thread), which
makes the one ``prctl`` call and replaces itself with the command: the
signal survives ``exec``. It costs an interpreter start (about 30 ms) per
upstream start.

``python -I -S die_with_parent.py <parent pid> <status fd> <command...>``

- If the parent is already gone (it died before ``prctl``), exit 1.
- The status fd is inherited from the launcher and closed at exec, so the
  launcher reads end-of-file when the command runs; if exec fails, this
  writes the errno there and exits 127, and the launcher raises that error as
  ``subprocess`` would (``[Errno 2] No such file or directory: 'llama-server'``).
- The command gets what the interpreter changed back: SIGPIPE and SIGXFSZ to
  their defaults (Python ignores them; an ignored signal stays ignored across
  exec) and ``LC_CTYPE`` as the launcher had it (Python's C-locale coercion
  sets it), named in ``LLAMA_SWAP_LC_CTYPE`` (absent: unset).

Standard library only; run as a script (the launcher imports its constant alone).
"""

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
LC_CTYPE_KEEP = "LLAMA_SWAP_LC_CTYPE"


def restore_environment() -> None:
    for name in ("SIGPIPE", "SIGXFSZ"):
        sig = getattr(signal, name, None)
        if sig is not None:
            signal.signal(sig, signal.SIG_DFL)
    kept = os.environ.pop(LC_CTYPE_KEEP, None)
    if kept is None:
        os.environ.pop("LC_CTYPE", None)
    else:
        os.environ["LC_CTYPE"] = kept


def main(argv: list) -> None:
    parent_pid, status_fd, command = int(argv[1]), int(argv[2]), argv[3:]
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before prctl: nobody will kill us
        os._exit(1)
    restore_environment()
    os.set_inheritable(status_fd, False)  # closed by a successful exec: the launcher reads EOF
    try:
        os.execvp(command[0], command)
    except OSError as exc:
        os.write(status_fd, str(exc.errno or 0).encode())
    os._exit(127)


if __name__ == "__main__":
    main(sys.argv)
