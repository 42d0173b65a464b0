"""Fixtures shared by the integration tests: a real server per test, and a leak check."""

from __future__ import annotations

import os
import sys

import psutil
import pytest

from tests.helpers.server import LlamaSwapServer, processes_under, wait_for
from tests.helpers.upstream import REPO_ROOT

# Each server, upstream and helper a test starts is a new Python process that
# imports the app. Where the environment says PYTHONDONTWRITEBYTECODE, every
# one of them compiled every module again (0.4 s of CPU per server); cache the
# bytecode once instead, out of the source tree.
if os.environ.pop("PYTHONDONTWRITEBYTECODE", None):
    os.environ.setdefault("PYTHONPYCACHEPREFIX", str(REPO_ROOT / ".pycache"))
    sys.dont_write_bytecode = False
    sys.pycache_prefix = os.environ["PYTHONPYCACHEPREFIX"]


@pytest.fixture
def llama_swap(tmp_path):
    """Start a server on a config text; on teardown stop it and prove nothing leaked."""
    servers: list[LlamaSwapServer] = []

    def start(config_text: str, *extra_args: str, stdout: int | None = None) -> LlamaSwapServer:
        server = LlamaSwapServer(tmp_path, config_text, extra_args)
        servers.append(server)
        return server.start(stdout=stdout)

    yield start
    for server in servers:
        server.stop()
    marker = str(tmp_path)
    try:
        wait_for(lambda: not processes_under(marker), timeout=5, what="every process of the test to exit")
    except AssertionError:
        leftovers = processes_under(marker)
        for proc in leftovers:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        pytest.fail("leaked processes: " + "; ".join(" ".join(p.cmdline()) for p in leftovers
                                                     if p.is_running()))
