"""The real launcher (``scheduler.launcher.PosixLauncher``): no Python between fork and exec, and a child that
dies with its parent, runs with the signals and locale it was given, or fails to start as ``subprocess`` says."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from contextlib import contextmanager
from typing import Iterator

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


def dead(pid: int) -> bool:
    return not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE


@contextmanager
def parent_running(script: str) -> Iterator[subprocess.Popen]:
    """A Python process running ``script`` from the repository, its stdout piped; killed at the end."""
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script)], cwd=REPO_ROOT,
                              stdout=subprocess.PIPE, text=True)
    try:
        yield parent
    finally:
        parent.kill()
        parent.wait()
        parent.stdout.close()


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
    with parent_running("""
        import sys, time
        from tests.unit.test_launcher import UntoldGuardian
        import os
        from scheduler import launcher
        if os.environ.get("LLAMA_SWAP_NO_SETPRIV"):
            launcher.SETPRIV = None
        child = launcher.PosixLauncher(UntoldGuardian()).launch(["sleep", "60"], {}, None)
        print(child.pid, flush=True)
        time.sleep(60)
    """) as parent:
        pid = int(parent.stdout.readline())
        wait_for(lambda: psutil.Process(pid).cmdline() == ["sleep", "60"], timeout=5,
                 what="the child to become the command")  # setpriv execs it a moment after the launch
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: dead(pid), timeout=5, what="the child to die with its parent")


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


# --------------------------------------------------------------------------- off the main thread


class RecordingGuardian:
    def __init__(self) -> None:
        self.told: list[str] = []

    def watch(self, pgid: int) -> None:
        self.told.append(f"+{pgid}")

    def forget(self, pgid: int) -> None:
        self.told.append(f"-{pgid}")


def on_a_thread_of_its_own(work):
    """``work()`` on a new thread, as issue 13's bridge runs the server: a hub whose loop is not libev's default
    (the only one with child watchers), in a process gevent has not patched. Its result, or its exception."""
    outcome = {}

    def run() -> None:
        hub = gevent.get_hub()
        try:
            assert not hub.loop.default
            outcome["value"] = work()
        except BaseException as exc:
            outcome["error"] = exc
        finally:
            hub.destroy(destroy_loop=True)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert not thread.is_alive(), "the work on its thread did not end"
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def ticking() -> tuple[list[int], gevent.Greenlet]:
    """A greenlet counting the hub's turns every 10 ms: it counts only while nobody blocks the hub."""
    ticks = [0]

    def tick() -> None:
        while True:
            gevent.sleep(0.01)
            ticks[0] += 1

    return ticks, gevent.spawn(tick)


def test_off_the_main_thread_a_child_s_output_and_exit_wait_only_for_their_greenlet():
    def work():
        guardian = RecordingGuardian()
        ticks, ticker = ticking()
        child = PosixLauncher(guardian).launch(["sh", "-c", "echo one; sleep 0.3; echo two; exit 3"], {}, None)
        lines = list(child.lines())
        returncode = child.wait()
        ticker.kill()
        return lines, returncode, ticks[0], guardian.told, child.pid

    lines, returncode, ticks, told, pid = on_a_thread_of_its_own(work)
    assert (lines, returncode) == (["one", "two"], 3)
    assert ticks >= 10, "the hub stood still while the child ran"
    assert told == [f"+{pid}", f"-{pid}"]


def test_off_the_main_thread_a_child_s_exit_is_seen_without_a_pidfd(monkeypatch):
    monkeypatch.delattr(launcher_module.os, "pidfd_open")  # a kernel before 5.3: polled

    def work():
        ticks, ticker = ticking()
        child = PosixLauncher(UntoldGuardian()).launch(["sh", "-c", "sleep 0.2; exit 4"], {}, None)
        returncode = child.wait()
        ticker.kill()
        return returncode, ticks[0]

    returncode, ticks = on_a_thread_of_its_own(work)
    assert returncode == 4 and ticks >= 5


def test_off_the_main_thread_signal_group_reaches_what_the_child_started():
    def work():
        child = PosixLauncher(UntoldGuardian()).launch(["sh", "-c", "sleep 30 & echo $!; wait"], {}, None)
        lines = child.lines()
        grandchild = int(next(lines))
        child.signal_group(signal.SIGTERM)
        return child.wait(), grandchild

    returncode, grandchild = on_a_thread_of_its_own(work)
    assert returncode == -signal.SIGTERM
    wait_for(lambda: dead(grandchild), timeout=5, what="the grandchild to die with its group")


def test_off_the_main_thread_a_command_that_cannot_be_run_raises_as_subprocess_would():
    def work():
        with pytest.raises(FileNotFoundError, match=r"No such file or directory: 'no-such-llama-server'"):
            PosixLauncher(UntoldGuardian()).launch(["no-such-llama-server", "--port", "1"], {}, None)
        return True

    assert on_a_thread_of_its_own(work)


def test_off_the_main_thread_run_waits_for_a_helper_and_kills_one_that_overruns(tmp_path):
    marker = tmp_path / "cmdstop-ran"

    def work():
        launcher = PosixLauncher(UntoldGuardian())
        ticks, ticker = ticking()
        launcher.run(["sh", "-c", f"sleep 0.1; touch {marker}"], timeout=5)
        ran = marker.exists()
        began = time.monotonic()
        with pytest.raises(subprocess.TimeoutExpired):
            launcher.run(["sh", "-c", f"sleep 30 # {tmp_path}"], timeout=0.3)
        overran = time.monotonic() - began
        ticker.kill()
        return ran, overran, ticks[0]

    ran, overran, ticks = on_a_thread_of_its_own(work)
    assert ran and overran < 2.0
    assert ticks >= 20, "the hub stood still while the helpers ran"
    assert not [p for p in psutil.process_iter(["cmdline"]) if str(tmp_path) in " ".join(p.info["cmdline"] or ())]


def test_off_the_main_thread_the_guardian_kills_what_a_child_started_once_we_are_killed():
    with parent_running("""
        import os, threading
        import gevent
        from scheduler import launcher
        if os.environ.get("LLAMA_SWAP_NO_SETPRIV"):
            launcher.SETPRIV = None
        def serve():
            child = launcher.PosixLauncher().launch(["sh", "-c", "sleep 60 & echo $!; wait"], {}, None)
            print(next(child.lines()), flush=True)
            gevent.sleep(60)
        threading.Thread(target=serve).start()
    """) as parent:
        grandchild = int(parent.stdout.readline())  # the direct child's parent-death signal cannot reach it
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_for(lambda: dead(grandchild), timeout=5, what="the guardian to kill the grandchild")
