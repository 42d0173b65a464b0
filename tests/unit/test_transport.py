"""The upstream transport against a tiny local HTTP server that counts the connections it accepts."""

from __future__ import annotations

import socket
import ssl
import threading
import time
from contextlib import contextmanager
from typing import Iterator

import gevent
import gevent.monkey
import gevent.ssl

from app.relay import transport as transport_module
from app.relay.transport import HealthProbe, UpstreamTransport


class CountingServer:
    """HTTP/1.1 on 127.0.0.1: ``/health`` answers 200 "ok"; ``/stream`` sends chunks until told to stop."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.open = 0
        self.release_stream = threading.Event()
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                self.open += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        reader = conn.makefile("rb")
        try:
            while True:
                line = reader.readline()
                if not line:
                    return
                path = line.split()[1]
                while reader.readline() not in (b"\r\n", b""):
                    pass
                if path == b"/stream":
                    conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nhead\r\n")
                    self.release_stream.wait(10)
                    conn.sendall(b"4\r\ntail\r\n0\r\n\r\n")
                else:
                    conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
        except OSError:
            return
        finally:
            with self._lock:
                self.open -= 1
            conn.close()

    def close(self) -> None:
        self.release_stream.set()
        self.sock.close()


@contextmanager
def counting_server() -> Iterator[CountingServer]:
    server = CountingServer()
    try:
        yield server
    finally:
        server.close()


def wait_for(predicate, what: str) -> None:
    import time
    deadline = time.monotonic() + 5
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.005)  # polling a server thread, with a deadline


def test_health_polls_of_one_start_share_one_connection_and_close_it():
    with counting_server() as server:
        check = HealthProbe().open(server.base_url + "/health")
        assert all(check.check(timeout=2) for _ in range(20))
        assert server.accepted == 1, "each poll opened a connection of its own"
        check.close()
        wait_for(lambda: server.open == 0, "the check's connection to close")


def test_requests_reuse_one_keep_alive_connection_and_drop_idle_closes_it():
    with counting_server() as server:
        transport = UpstreamTransport()
        for _ in range(5):
            response = transport.send("GET", server.base_url, "/health", {}, None, (5, 5))
            assert b"".join(response.iter_content(None)) == b"ok"
            response.close()
        assert server.accepted == 1
        transport.drop_idle(server.base_url)
        wait_for(lambda: server.open == 0, "the idle connection to close")
        transport.close()


def test_drop_idle_leaves_a_stream_in_flight_alone_and_the_next_request_works():
    with counting_server() as server:
        transport = UpstreamTransport()
        response = transport.send("GET", server.base_url, "/stream", {}, None, (5, None))
        chunks = response.iter_content(None)
        assert next(chunks) == b"head"
        transport.drop_idle(server.base_url)  # the model is being stopped while this streams
        server.release_stream.set()
        assert b"".join(chunks) == b"tail", "the stream in flight finished"
        response.close()
        again = transport.send("GET", server.base_url, "/health", {}, None, (5, 5))
        assert again.content == b"ok"
        transport.close()


def test_without_monkey_patching_a_wait_on_an_upstream_blocks_only_its_greenlet():
    assert not gevent.monkey.is_module_patched("socket")  # a threaded WSGI host patches nothing
    with counting_server() as server:
        transport = UpstreamTransport()
        response = transport.send("GET", server.base_url, "/stream", {}, None, (5, None))
        chunks = response.iter_content(None)
        assert next(chunks) == b"head"
        began = time.monotonic()
        rest = gevent.spawn(lambda: b"".join(chunks))  # waits for a tail the server holds back for 10 s
        gevent.sleep(0)  # it runs until it waits
        health = transport.send("GET", server.base_url, "/health", {}, None, (5, 5))
        assert health.content == b"ok"
        assert not rest.ready() and time.monotonic() - began < 2, "the stream's read held the hub"
        server.release_stream.set()
        assert rest.get(timeout=5) == b"tail"
        response.close()
        transport.close()


def test_without_monkey_patching_an_https_upstream_gets_a_cooperative_tls_context():
    assert not gevent.monkey.is_module_patched("ssl")
    adapter = transport_module._adapter(pool_size=1)
    context = adapter.poolmanager.connection_pool_kw["ssl_context"]
    assert isinstance(context, gevent.ssl.SSLContext)  # its sockets are gevent's
    assert context.verify_mode == ssl.CERT_REQUIRED and context.minimum_version >= ssl.TLSVersion.TLSv1_2
    adapter.close()
