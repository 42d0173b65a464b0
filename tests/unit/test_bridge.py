"""The thread bridge (``app.runtime.bridge``) and the core hub it runs on, driven as a threaded host drives them.

The test's own thread plays the host's request thread: it calls the bridge
with an environ and iterates the answer. The apps behind it are small WSGI
callables that run on the core hub (they sleep with gevent, wait on gevent
events): no sockets but a socketpair, no server.
"""

from __future__ import annotations

import io
import socket
import threading
import time

import gevent
import pytest
from gevent.event import Event

from app.relay.forward import StreamBroken
from app.relay.hangup import HANGUP_KEY, HangupSignal, HangupWatch, peer_closed
from app.runtime import bridge
from app.runtime.core_hub import CoreHub, core_hub
from tests.helpers.server import wait_for


@pytest.fixture(scope="module")
def core() -> CoreHub:
    return core_hub()


class Host:
    """What a host does with an answer: records ``start_response``, iterates the body on demand."""

    def __init__(self, app, core: CoreHub, body: bytes = b"", **environ):
        self.started: tuple | None = None
        self.environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/x", "wsgi.input": io.BytesIO(body), **environ}
        self.answer = bridge.Bridge(app, core)(self.environ, self.start_response)

    def start_response(self, status, headers, exc_info=None):
        self.started = (status, headers)
        return lambda data: self.write(data)

    def write(self, data: bytes) -> None:
        pass


def test_core_hub_runs_work_on_its_own_thread_and_hands_back_results_and_exceptions(core):
    assert not core.here
    assert core.call(lambda: threading.current_thread().name) == "llama-swap-core"
    assert core.call(lambda: core.here)
    with pytest.raises(KeyError, match="raised on the hub"):
        core.call(lambda: {}["raised on the hub"])
    with pytest.raises(TimeoutError):
        core.call(gevent.sleep, 5, timeout=0.05)
    ran = threading.Event()
    core.spawn(ran.set)
    assert ran.wait(5)
    assert core_hub() is core, "one core hub per process"


def test_the_body_is_read_by_the_host_thread_and_the_answer_comes_back_in_its_chunks(core):
    seen = {}
    client, _peer = socket.socketpair()

    def app(environ, start_response):
        stream = environ["wsgi.input"]
        seen["line"] = stream.readline()
        seen["rest"] = stream.read(-1)
        seen["thread"] = threading.current_thread().name
        seen["socket"] = "gunicorn.socket" in environ
        start_response("201 Created", [("X-A", "1")])
        return [b"one ", b"", b"two"]

    host = Host(app, core, b"first line\nthe rest", **{"gunicorn.socket": client})
    assert host.started == ("201 Created", [("X-A", "1")])
    assert list(host.answer) == [b"one ", b"", b"two"], "an empty chunk after the first is the host's to skip"
    assert seen == {"line": b"first line\n", "rest": b"the rest", "thread": "llama-swap-core", "socket": False}
    client.close()
    _peer.close()


def test_each_chunk_reaches_the_host_before_the_app_has_finished(core):
    after_first = Event()

    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"first"
        after_first.wait()
        yield b"second"

    host = Host(app, core)
    assert next(host.answer) == b"first", "the first chunk is not held back for the rest"
    core.post(after_first.set)
    assert next(host.answer) == b"second"
    with pytest.raises(StopIteration):
        next(host.answer)


def test_an_empty_first_chunk_sends_the_headers_at_once_through_the_hosts_write(core):
    written, thinking = [], Event()

    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        yield b""  # what the relay yields when the upstream's headers arrive before its first event
        thinking.wait()
        yield b"data: first"

    host = Host(app, core)
    host.write = written.append
    first = []
    iterating = threading.Thread(target=lambda: first.append(next(host.answer)))  # the host's thread
    iterating.start()
    wait_for(lambda: written == [b""], timeout=5, what="the headers to be written before the first event")
    assert not first
    core.post(thinking.set)
    iterating.join(5)
    assert first == [b"data: first"]


def test_a_client_that_reads_slowly_holds_the_app_to_the_window_nothing_piles_up(core):
    made = []

    def app(environ, start_response):
        start_response("200 OK", [])
        for i in range(100):
            made.append(i)
            yield b"x"

    host = Host(app, core)
    next(host.answer)
    wait_for(lambda: len(made) > bridge.WINDOW, timeout=5, what="the app to fill the window")
    time.sleep(0.1)  # not synchronisation: a window that let the app run on would have made all 100 by now
    assert len(made) <= bridge.WINDOW + 2
    assert len(list(host.answer)) == 99


def test_an_answer_cut_short_raises_in_the_host_thread_so_the_host_drops_the_connection(core):
    def app(environ, start_response):
        start_response("200 OK", [])
        yield b"partial"
        raise StreamBroken("upstream died")

    host = Host(app, core)
    assert next(host.answer) == b"partial"
    with pytest.raises(StreamBroken, match="upstream died"):
        next(host.answer)


def test_an_app_that_fails_before_answering_fails_in_the_host_thread(core):
    def app(environ, start_response):
        raise ValueError("broken app")

    with pytest.raises(ValueError, match="broken app"):
        Host(app, core)


def test_a_failed_read_of_the_host_stream_reaches_the_app_as_the_hosts_exception(core):
    class Dropped:
        def read(self, size=-1):
            raise ConnectionResetError("client gone mid-body")

    def app(environ, start_response):
        try:
            environ["wsgi.input"].read(10)
        except ConnectionResetError as exc:
            start_response("400 Bad Request", [])
            return [str(exc).encode()]
        start_response("200 OK", [])
        return [b"read"]

    host = Host(app, core, **{"wsgi.input": Dropped()})
    assert host.started[0] == "400 Bad Request"
    assert b"".join(host.answer) == b"client gone mid-body"


def test_a_host_that_stops_iterating_mid_stream_is_a_hang_up_the_relay_sees(core):
    closed, hung_up = Event(), Event()

    def app(environ, start_response):
        watch = HangupWatch(environ, hung_up.set)
        start_response("200 OK", [])
        try:
            while True:
                yield b"token"
                gevent.sleep(0.01)
        finally:
            watch.stop()
            closed.set()

    host = Host(app, core)
    assert next(host.answer) == b"token"
    host.answer.close()  # what a host does when its write to the client failed
    wait_for(lambda: core.call(closed.is_set), timeout=5, what="the app's body to be closed")
    assert core.call(hung_up.is_set), "the relay's hang-up watch saw the client go"


def test_a_client_gone_while_the_app_is_silent_is_noticed_within_a_poll(core):
    hung_up = Event()
    client_left = threading.Event()

    def app(environ, start_response):
        watch = HangupWatch(environ, hung_up.set)
        hung_up.wait()  # a long prompt: no headers yet
        watch.stop()
        start_response("200 OK", [])
        return [b"too late"]

    began = time.monotonic()
    threading.Timer(0.1, client_left.set).start()
    host = Host(app, core, **{"waitress.client_disconnected": client_left.is_set})
    assert time.monotonic() - began < 3.0, "noticed within a few polls (bound wide for a loaded machine)"
    assert host.started[0].startswith("499"), "ended quietly: the host has nobody to tell"
    assert list(host.answer) == []
    wait_for(lambda: core.call(hung_up.is_set), timeout=5, what="the hang-up watch to fire")


class TlsLike:
    """A client socket as TLS gives it: a real descriptor, but no ``recv`` with flags (no peek)."""

    def __init__(self, sock: socket.socket):
        self._sock = sock

    def fileno(self) -> int:
        return self._sock.fileno()

    def recv(self, size: int, flags: int = 0) -> bytes:
        if flags:
            raise ValueError("non-zero flags not allowed in calls to recv() on <class 'ssl.SSLSocket'>")
        return self._sock.recv(size)


@pytest.mark.parametrize("kind", ["plain", "tls", "with a timeout"])
def test_the_socket_probe_sees_a_closed_peer_and_not_a_quiet_or_pipelining_one(kind):
    ours, theirs = socket.socketpair()
    if kind == "with a timeout":
        ours.settimeout(5)  # a peek would wait for it; the probe must not
    try:
        probe = bridge.hangup_probe({"werkzeug.socket": TlsLike(ours) if kind == "tls" else ours})
        began = time.monotonic()
        assert probe() is False, "quiet"
        assert time.monotonic() - began < 1, "the probe never waits"
        theirs.sendall(b"GET / HTTP/1.1\r\n")
        assert probe() is False, "a pipelined request"
        theirs.close()
        assert probe() is True, "gone, its last bytes still unread"
    finally:
        ours.close()
    assert peer_closed(ours) is True, "a closed socket"
    assert bridge.hangup_probe({}) is None


def test_the_gevent_watch_notices_a_tls_client_that_leaves(core):
    ours, theirs = socket.socketpair()

    def watched() -> list:
        seen = []
        watch = HangupWatch({"gunicorn.socket": TlsLike(ours)}, lambda: seen.append("gone"))
        gevent.sleep(0.01)
        assert not seen, "still there"
        theirs.close()
        with gevent.Timeout(5):
            while not seen:
                gevent.sleep(0.005)
        watch.stop()
        return seen

    try:
        assert core.call(watched) == ["gone"]
    finally:
        ours.close()


def test_a_host_that_refuses_the_answer_frees_the_app(core):
    closed = Event()

    def app(environ, start_response):
        start_response("200 OK", [("Connection", "keep-alive")])
        try:
            while True:
                yield b"token"
                gevent.sleep(0.01)
        finally:
            closed.set()

    def refusing(status, headers, exc_info=None):
        raise AssertionError("Connection is a hop-by-hop header")  # what waitress raises for it

    environ = {"REQUEST_METHOD": "GET", "PATH_INFO": "/x", "wsgi.input": io.BytesIO()}
    with pytest.raises(AssertionError, match="hop-by-hop"):
        bridge.Bridge(app, core)(environ, refusing)
    wait_for(lambda: core.call(closed.is_set), timeout=5, what="the app's body to be closed")


def test_a_greenlet_exit_on_the_hub_never_reaches_the_hosts_thread(core):
    def app(environ, start_response):
        raise gevent.GreenletExit()

    with pytest.raises(RuntimeError, match="stopped on the core hub"):
        Host(app, core)


def test_a_watch_nobody_stopped_ends_with_its_request(core):
    watches = []

    def app(environ, start_response):
        watches.append(HangupWatch(environ, lambda: None))  # never stopped
        start_response("200 OK", [])
        return [b"done"]

    assert list(Host(app, core).answer) == [b"done"]
    wait_for(lambda: core.call(lambda: watches[0]._greenlet.dead), timeout=5, what="the watch to end")


def test_a_websocket_upgrade_is_refused_with_a_501(core):
    def app(environ, start_response):
        raise AssertionError("never reaches the app")

    host = Host(app, core, HTTP_UPGRADE="websocket")
    assert host.started[0].startswith("501")
    assert b"gevent host" in b"".join(host.answer)


def test_a_hang_up_event_in_the_environ_drives_the_watch_without_a_socket(core):
    def watched() -> bool:
        gone, seen = Event(), []
        watch = HangupWatch({HANGUP_KEY: HangupSignal(gone, Event())}, lambda: seen.append(True))
        gevent.sleep(0)
        assert not seen
        gone.set()
        gevent.sleep(0)
        watch.stop()
        return seen == [True]

    assert core.call(watched)
