"""The guardian kills every process group it was told of once the proxy's pipe closes, and only those."""

from __future__ import annotations

import os
import signal
import subprocess

import psutil

from scheduler.guardian import Guardian, guard
from tests.helpers.server import wait_for


def group_leader() -> subprocess.Popen:
    """A process in a session of its own (its pgid is its pid) with a child of its own in the group."""
    return subprocess.Popen(["sh", "-c", "sleep 60 & wait"], start_new_session=True)


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def group_members(pgid: int) -> list[int]:
    members = []
    for proc in psutil.process_iter():
        try:
            if os.getpgid(proc.pid) == pgid:
                members.append(proc.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def ignored_signals(pid: int) -> set[int]:
    with open(f"/proc/{pid}/status") as status:
        mask = next(int(line.split()[1], 16) for line in status if line.startswith("SigIgn:"))
    return {sig for sig in signal.Signals if mask & (1 << (sig - 1))}


def kill_groups(*leaders: subprocess.Popen) -> None:
    for proc in leaders:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def test_guard_kills_the_groups_still_listed_at_eof_and_spares_forgotten_ones():
    watched, forgotten = group_leader(), group_leader()
    try:
        wait_for(lambda: len(group_members(watched.pid)) == 2, 5, what="the sleeper in the group")
        read, write = os.pipe()
        os.write(write, b"+%d\n+%d\n-%d\n" % (watched.pid, forgotten.pid, forgotten.pid))
        os.close(write)
        assert guard(read) == {watched.pid}
        os.close(read)
        wait_for(lambda: watched.poll() is not None, 5, what="the watched leader to die")
        wait_for(lambda: all(gone(p) for p in group_members(watched.pid)), 5, what="its whole group to die")
        assert forgotten.poll() is None
    finally:
        kill_groups(watched, forgotten)


def test_a_guardian_that_died_is_replaced_and_told_every_live_group():
    guardian = Guardian()
    first = group_leader()
    second = group_leader()
    try:
        guardian.watch(first.pid)
        old = guardian.pid
        os.kill(old, signal.SIGKILL)
        wait_for(lambda: guardian._proc.poll() is not None, 5, what="the guardian to die")
        guardian.watch(second.pid)
        assert guardian.pid != old
        guardian._proc.stdin.close()  # what our death looks like to it
        guardian._proc.wait(timeout=5)
        wait_for(lambda: first.poll() is not None and second.poll() is not None, 5,
                 what="both groups killed by the new guardian")
    finally:
        kill_groups(first, second)


def test_the_guardian_ignores_the_signals_sent_to_a_whole_terminal_group():
    guardian = Guardian()
    leader = group_leader()
    try:
        guardian.watch(leader.pid)
        wait_for(lambda: ignored_signals(guardian.pid) >= {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}, 5,
                 what="the guardian to set its signals up")
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            os.kill(guardian.pid, sig)
        assert guardian._proc.poll() is None and leader.poll() is None
    finally:
        guardian._proc.stdin.close()
        guardian._proc.wait(timeout=5)
        leader.wait(timeout=5)
