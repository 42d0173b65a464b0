"""The master's stop (app/arbiter.py) and the quick exit both processes end with (app/quick_exit.py)."""

from __future__ import annotations

import queue
import signal
from types import SimpleNamespace
import subprocess
import sys
import time

import app.arbiter
from app.arbiter import Arbiter
from tests.helpers.upstream import REPO_ROOT


def arbiter_with(workers: dict, exits: list[int]) -> Arbiter:
    """An arbiter without gunicorn's setup: its workers, its signal queue, and a reaper that reaps ``exits``."""
    arbiter = Arbiter.__new__(Arbiter)
    arbiter.WORKERS = workers
    arbiter.SIG_QUEUE = queue.SimpleQueue()
    arbiter.reaped = 0

    def reap_workers() -> None:
        arbiter.reaped += 1
        for pid in exits:
            workers.pop(pid, None)

    arbiter.reap_workers = reap_workers
    return arbiter


def test_the_wait_ends_when_the_workers_exit_is_signalled_not_at_a_poll(monkeypatch):
    monkeypatch.setattr(app.arbiter, "WAKE_AT_LEAST_EVERY", 60.0)  # a poll would take a minute
    arbiter = arbiter_with({7: "worker"}, exits=[7])
    arbiter.SIG_QUEUE.put_nowait(signal.SIGCHLD)
    began = time.monotonic()
    assert arbiter._wait_for_workers(time.monotonic() + 120) is False
    assert arbiter.WORKERS == {} and arbiter.reaped == 1
    assert time.monotonic() - began < 30  # woken by the queued SIGCHLD


def test_a_second_sigint_ends_the_wait_and_is_left_for_gunicorns_quick_shutdown():
    arbiter = arbiter_with({7: "worker"}, exits=[])
    arbiter.SIG_QUEUE.put_nowait(signal.SIGINT)
    assert arbiter._wait_for_workers(time.monotonic() + 30) is True
    assert arbiter.WORKERS == {7: "worker"} and arbiter.reaped == 0
    assert arbiter.SIG_QUEUE.get_nowait() == signal.SIGINT


def test_a_worker_that_never_exits_is_left_at_the_deadline():
    arbiter = arbiter_with({7: "worker"}, exits=[])
    arbiter._wait_for_workers(time.monotonic() + 0.05)
    assert arbiter.WORKERS == {7: "worker"} and arbiter.reaped >= 1


def test_a_worker_still_there_at_the_deadline_is_killed_at_once_not_after_a_second_graceful_timeout():
    arbiter = arbiter_with({7: "worker"}, exits=[])
    arbiter.cfg = SimpleNamespace(graceful_timeout=0.05, reuse_port=False)
    arbiter.LISTENERS, arbiter.systemd, arbiter.dirty_arbiter_pid = [], False, 0
    arbiter.reexec_pid = arbiter.master_pid = 0
    sent: list[int] = []

    def kill_workers(sig: int) -> None:
        sent.append(sig)
        if sig == signal.SIGKILL:
            arbiter.WORKERS.clear()  # dead, and reaped

    arbiter.kill_workers = kill_workers
    arbiter.stop()
    assert sent[:2] == [signal.SIGTERM, signal.SIGKILL]


def run_exit(code: str) -> subprocess.CompletedProcess:
    script = ("import logging, sys; from app.quick_exit import exit_now\n"
              "logging.basicConfig(stream=sys.stdout, format='%(message)s', level=logging.INFO)\n"
              "logging.info('last line'); sys.stdout.write('buffered'); exit_now(" + code + ")")
    env = {"PATH": "/usr/bin:/bin"}  # no PYTHONUNBUFFERED: the buffered text must be flushed by exit_now
    return subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True,
                          text=True, timeout=30)


def test_the_quick_exit_flushes_the_logs_and_keeps_the_status():
    done = run_exit("3")
    assert done.returncode == 3
    assert done.stdout == "last line\nbuffered"


def test_the_quick_exit_reads_a_status_as_sys_exit_does():
    assert run_exit("None").returncode == 0
    done = run_exit("'worker failed to boot'")
    assert done.returncode == 1 and "worker failed to boot" in done.stderr
