"""The upstream side of a websocket relay (``app.relay.websocket.UpstreamClient``) waits on the hub, unpatched too."""

from __future__ import annotations

import subprocess
import sys
import threading

import gevent.event
import gevent.monkey
import gevent.socket
import pytest

from app.relay.websocket import UpstreamClient, close_quietly
from tests.helpers.server import wait_for
from tests.helpers.upstream import REPO_ROOT, free_port, http_status


@pytest.fixture
def echo_port():
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "tests.helpers.ws_echo", "--port", str(port)], cwd=REPO_ROOT,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for(lambda: http_status("127.0.0.1", port) == 200, timeout=10, what="the echo server")
        yield port
    finally:
        server.kill()
        server.wait()


def test_without_monkey_patching_the_upstream_websocket_reads_in_a_greenlet_over_a_gevent_socket(echo_port):
    assert not gevent.monkey.is_module_patched("socket")  # a threaded WSGI host patches nothing
    threads = threading.active_count()
    client = UpstreamClient(f"ws://127.0.0.1:{echo_port}/x", [], [])
    try:
        assert isinstance(client.sock, gevent.socket.socket)
        assert isinstance(client.event, gevent.event.Event)
        assert threading.active_count() == threads, "its reader is an OS thread, not a greenlet"
        assert client.receive(timeout=5) == "open:/x"
        client.send("hi")
        assert client.receive(timeout=5) == "echo:hi"
    finally:
        close_quietly(client)
