"""One worker process per server (``app.runtime.single``): the lock a second worker of the same host cannot take."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from app.runtime import single
from tests.helpers.upstream import REPO_ROOT

PARENT = 999_999_001  # a host master's pid, the same for "both workers" here


def holder(key: str) -> subprocess.Popen:
    """Another process that claims ``key`` (for PARENT) and keeps it until its stdin closes."""
    script = ("import sys; from app.runtime import single\n"
              f"single.claim({key!r}, wait=0, parent={PARENT}); print('held', flush=True); sys.stdin.read()")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=10)


def test_a_second_worker_of_the_same_host_and_config_is_refused_saying_to_run_one(monkeypatch, capsys):
    monkeypatch.setattr(single, "_held", {})
    first = holder("/srv/config.yaml|")
    try:
        began = time.monotonic()
        with pytest.raises(single.SecondWorker, match="exactly one worker"):
            single.claim("/srv/config.yaml|", wait=0.3, parent=PARENT)
        assert time.monotonic() - began >= 0.3, "it waited for the other to go (a graceful restart)"
    finally:
        release(first)
    said = capsys.readouterr().err
    assert said.count("waiting 0.3s for it to go") == 1 and "exactly one worker" in said, said


def test_a_second_worker_says_why_before_it_waits_so_a_host_that_kills_it_meanwhile_leaves_the_reason(monkeypatch):
    """gunicorn before 22 kills a worker silent for --timeout seconds while it loads: the reason must already
    be out when that happens, not only printed at the end of the wait."""
    monkeypatch.setattr(single, "_held", {})
    first = holder("/srv/config.yaml|")
    script = ("from app.runtime import single\n"
              f"single.claim('/srv/config.yaml|', wait=60, parent={PARENT})\n")
    second = subprocess.Popen([sys.executable, "-c", script], cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True)
    try:
        said = second.stderr.readline()  # before the 60 s wait is over
        assert "already serves this config" in said and "waiting 60s" in said, said
        assert second.poll() is None, "still waiting"
    finally:
        second.kill()
        second.wait()
        release(first)


def test_the_lock_is_free_once_the_other_worker_is_gone_and_other_servers_never_share_it(monkeypatch):
    monkeypatch.setattr(single, "_held", {})
    first = holder("/srv/config.yaml|")
    try:
        single.claim("/srv/other.yaml|", wait=0, parent=PARENT)  # another config: another server
        single.claim("/srv/config.yaml|", wait=0, parent=PARENT + 1)  # another host process
    finally:
        release(first)
    single.claim("/srv/config.yaml|", wait=0, parent=PARENT)  # the first one is gone: ours now
    single.claim("/srv/config.yaml|", wait=0, parent=PARENT)  # and again, in the same process
    for fd in single._held.values():
        os.close(fd)


def test_the_config_key_is_the_config_as_absolute_paths_so_servers_in_two_directories_are_two(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = single.config_key({})
    assert here == f"{tmp_path / 'config.yaml'}|", "the default config.yaml, where the host runs"
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert single.config_key({}) != here
    assert single.config_key({"LLAMA_SWAP_CONFIG": "../config.yaml"}) == here
    assert single.config_key({"LLAMA_SWAP_CONFIG_DIR": "models"}) == f"|{tmp_path / 'other' / 'models'}"
