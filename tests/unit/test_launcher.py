"""The real launcher (``scheduler.launcher.PosixLauncher``): no Python between fork and exec, and a child that
dies with its parent, runs with the signals and locale it was given, or fails to start as ``subprocess`` says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import gevent.subprocess
import psutil
import pytest

from scheduler import launcher as launcher_module
from scheduler.launcher import PosixLauncher
from tests.helpers.server import wait_for
from tests.helpers.upstream import REPO_ROOT


class UntoldGuardian:
    """A guardian that is told nothing and kills nothing: only the kernel's parent-death signal is left."""

    def watch(self, pgid: int) -> None:
        pass

    def forget(self, pgid: int) -> None:
        pass


@pytest.fixture(autouse=True, params=["setpriv", "interpreter"])
def way(request, monkeypatch):
    """Each test both ways the child can set its parent-death signal: setpriv, or the interpreter fallback."""
    if request.param == "setpriv" and launcher_module.SETPRIV is None:
        pytest.skip("no setpriv on this host: the interpreter fallback is what runs")
    if request.param == "interpreter":
        monkeypatch.setattr(launcher_module, "SETPRIV", None)
        monkeypatch.setenv("LLAMA_SWAP_NO_SETPRIV", "1")  # for the launch in a child process
    return request.param


def output_of(argv: list[str]) -> list[str]:
    child = PosixLauncher(UntoldGuardian()).launch(argv, {}, None)
    lines = list(child.lines())
    assert child.wait() == 0
    return lines


def test_no_python_code_runs_between_fork_and_exec(monkeypatch):
    seen = {}
    real_popen = gevent.subprocess.Popen

    def spy(*args, **kwargs):
        seen.update(kwargs)
        return real_popen(*args, **kwargs)

    monkeypatch.setattr(launcher_module.gevent.subprocess, "Popen", spy)
    assert output_of(["echo", "hi"]) == ["hi"]
    assert seen.get("preexec_fn") is None and seen["start_new_session"] is True


def test_a_child_dies_with_its_parent_though_no_guardian_knows_it(tmp_path):
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from tests.unit.test_launcher import UntoldGuardian
        import os
        from scheduler import launcher
        if os.environ.get("LLAMA_SWAP_NO_SETPRIV"):
            launcher.SETPRIV = None
        child = launcher.PosixLauncher(UntoldGuardian()).launch(["sleep", "60"], {}, None)
        print(child.pid, flush=True)
        time.sleep(60)
    """)], cwd=REPO_ROOT, stdout=subprocess.PIPE, text=True)
    try:
        pid = int(parent.stdout.readline())
        wait_for(lambda: psutil.Process(pid).cmdline() == ["sleep", "60"], timeout=5,
                 what="the child to become the command")  # setpriv execs it a moment after the launch
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE,
                 timeout=5, what="the child to die with its parent")
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


def test_the_command_gets_default_signals_and_the_locale_it_was_given(monkeypatch):
    monkeypatch.delenv("LC_ALL", raising=False)
    monkeypatch.delenv("LC_CTYPE", raising=False)
    monkeypatch.setenv("LANG", "C")  # the C locale: the interpreter in between would set LC_CTYPE
    locale, ignored = output_of(["sh", "-c", "echo ${LC_CTYPE-unset}; grep SigIgn /proc/self/status"])
    assert locale == "unset"
    mask = int(ignored.split()[1], 16)
    # Python ignores these two; the command must not (whatever the test runner itself ignores)
    assert [sig for sig in (signal.SIGPIPE, signal.SIGXFSZ) if mask & (1 << (sig - 1))] == []
    monkeypatch.setenv("LC_CTYPE", "C")
    assert output_of(["sh", "-c", "echo $LC_CTYPE"]) == ["C"]


def test_a_command_that_cannot_be_run_raises_as_subprocess_would():
    with pytest.raises(FileNotFoundError, match=r"No such file or directory: 'no-such-llama-server'"):
        PosixLauncher(UntoldGuardian()).launch(["no-such-llama-server", "--port", "1"], {}, None)
    not_executable = os.path.join(REPO_ROOT, "README.md")
    with pytest.raises(PermissionError):
        PosixLauncher(UntoldGuardian()).launch([not_executable], {}, None)
