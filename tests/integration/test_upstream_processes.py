"""Upstream processes never outlive the proxy, and never share a port.

Against the real server: a model whose ``cmd`` is a wrapper (``sh -c
'<simulator>; echo done'``, so the simulator is a grandchild the kernel's
parent-death signal never reaches) must go with the proxy however it dies;
an ordinary stop must take the whole wrapped server too; a port another
program listens on is never handed to a model.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
import time

import psutil
import pytest
import requests

from tests.helpers.server import fake_cmd, guardians_of, processes_under, wait_for
from tests.helpers.upstream import free_port_block


def chat(name: str) -> dict:
    return {"model": name, "messages": [{"role": "user", "content": "hello"}]}


def wrapped_config(tmp_path, flags: str = "") -> str:
    inner = fake_cmd("A", tmp_path, flags)
    return f"""
healthCheckTimeout: 15
models:
  A:
    cmd: sh -c '{inner}; echo done'
"""


def simulators(server) -> list[psutil.Process]:
    """The simulator processes themselves (not the ``sh`` wrapping them)."""
    return [p for p in server.upstream_processes() if p.cmdline()[:1] == [sys.executable]]


def load_wrapped(llama_swap, tmp_path, flags: str = ""):
    server = llama_swap(wrapped_config(tmp_path, flags))
    r = requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=15)
    assert r.status_code == 200, r.text
    sims = simulators(server)
    assert len(sims) == 1 and sims[0].pid == server.starts("A")[-1]
    assert sims[0].ppid() != psutil.Process(server.proc.pid).children()[0].pid, "the simulator is a grandchild"
    return server, sims[0]


def gone(proc: psutil.Process) -> bool:
    try:
        return proc.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("victims", ["worker", "master", "master and worker"])
def test_a_wrapped_upstream_dies_with_a_sigkilled_proxy(llama_swap, tmp_path, victims):
    server, sim = load_wrapped(llama_swap, tmp_path)
    master = psutil.Process(server.proc.pid)
    worker = master.children()[0]
    [guardian] = guardians_of(worker.pid)
    targets = {"worker": [worker], "master": [master], "master and worker": [master, worker]}[victims]
    for proc in targets:
        os.kill(proc.pid, signal.SIGKILL)
    wait_for(lambda: gone(sim), timeout=5, what=f"the wrapped simulator to die after SIGKILL of the {victims}")
    wait_for(lambda: gone(guardian), timeout=5, what="the guardian to exit once its work is done")
    if victims == "worker":  # gunicorn's master starts a new worker: it still serves
        r = requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=30)
        assert r.status_code == 200, r.text


@pytest.mark.parametrize("flags", ["", "--ignore-sigterm"])
def test_unloading_a_wrapped_upstream_stops_the_server_it_wraps(llama_swap, tmp_path, flags):
    server, sim = load_wrapped(llama_swap, tmp_path, flags)
    assert requests.post(server.url("/api/models/unload"), timeout=30).status_code == 200
    wait_for(lambda: gone(sim), timeout=5, what="the wrapped simulator to die on unload")
    assert server.state_of("A") is None
    [guardian] = guardians_of(psutil.Process(server.proc.pid).children()[0].pid)
    server.stop()
    wait_for(lambda: gone(guardian), timeout=5, what="the guardian to exit with the server")


def test_a_hung_cmd_stop_is_bounded_by_unload_timeout_and_leaves_nothing_behind(llama_swap, tmp_path):
    # The model ignores SIGTERM and its cmdStop hangs (a wrapper around a
    # sleeper): the stop must end in unloadTimeout (1 s), the model SIGKILLed
    # and the whole cmdStop with it (the fixture's leak check finds the
    # sleeper: it carries tmp_path in its command line).
    sleeper = f'{sys.executable} -c "import time; time.sleep(60)" {tmp_path}'
    server = llama_swap(f"""
healthCheckTimeout: 15
models:
  A:
    cmd: {fake_cmd("A", tmp_path, "--ignore-sigterm")}
    cmdStop: sh -c '{sleeper}; echo stopped ${{PID}}'
    unloadTimeout: 1
""")
    assert requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=15).status_code == 200
    began = time.monotonic()
    assert requests.post(server.url("/api/models/unload"), timeout=30).status_code == 200
    took = time.monotonic() - began
    assert 1.0 <= took < 1.5, f"unload took {took:.2f}s with unloadTimeout 1"
    wait_for(lambda: not processes_under(str(tmp_path), "time.sleep"), timeout=2, what="the hung cmdStop to be killed with its children")
    server.wait_for_log("still running 1s after stop request; sending SIGKILL")


def test_a_port_another_program_listens_on_is_never_used(llama_swap, tmp_path):
    # Another program listens on the port A is assigned (a plain socket that
    # never answers): A must start on the next free port, the one B (which is
    # assigned the next) is not given, and the log must say so.
    base = free_port_block(4)
    squatter = socket.socket()
    squatter.bind(("127.0.0.1", base))
    squatter.listen()
    try:
        server = llama_swap(f"""
startPort: {base}
healthCheckTimeout: 5
groups:
  both: {{swap: false, members: [A, B]}}
models:
  A:
    cmd: {fake_cmd("A", tmp_path)}
  B:
    cmd: {fake_cmd("B", tmp_path)}
""")
        for model in ("A", "B"):
            r = requests.post(server.url("/v1/chat/completions"), json=chat(model), timeout=15)
            assert r.status_code == 200, r.text
            assert r.json()["model"] == model
        assert len(server.starts("A")) == 1 and len(server.starts("B")) == 1
        ports = {p.cmdline()[p.cmdline().index("--model") + 1]: int(p.cmdline()[p.cmdline().index("--port") + 1])
                 for p in simulators(server)}
        assert ports == {"A": base + 2, "B": base + 1}
        server.wait_for_log(f"A: port {base} is already in use by another program; using port {base + 2} instead")
    finally:
        squatter.close()
