"""maxWait end to end: steady traffic to one model no longer starves another.

Four clients keep model A busy: each sends its next request as soon as the
last one is answered, and each request takes ~800 ms, so with the clients
200 ms apart a request for A arrives every ~200 ms and A is never idle: only
a stall of the test process longer than ~600 ms (three clients' turns) could
leave A without a request in flight, which a loaded CI machine gave the first
version of this test (200 ms requests, 50 ms apart). One
request for B (no groups: one model at a time) needs A gone. With llama-swap's
FIFO (``maxWait: 0``) it waits as long as the traffic lasts; with
``maxWait: 2`` new requests for A queue behind it after 2 s, A drains, and B
is served.
"""

from __future__ import annotations

import threading
import time

import requests

from tests.helpers.server import fake_cmd, wait_for

A_FLAGS = "--tokens 4 --token-delay 0.2"  # ~800 ms a request
B_LOAD = 0.5
CLIENTS = 4
STAGGER = 0.2  # seconds between the clients' first requests
A_DRAIN = 0.9  # the longest an A request in flight can still take, with margin


def config(tmp_path, max_wait: float) -> str:
    return f"""
healthCheckTimeout: 15
routing:
  scheduler:
    settings:
      fifo:
        maxWait: {max_wait}
models:
  A:
    cmd: {fake_cmd("A", tmp_path, A_FLAGS)}
  B:
    cmd: {fake_cmd("B", tmp_path, f"--tokens 1 --load-time {B_LOAD}")}
"""


def chat(server, model: str, session=requests) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    return session.post(server.url("/v1/chat/completions"), json=body, timeout=30)


class SteadyTraffic:
    """Closed-loop clients for one model, started ``STAGGER`` apart (so their
    requests never all end together); each stops at ``stop()`` or after 30 s."""

    def __init__(self, server, model: str) -> None:
        self.server, self.model = server, model
        self._stop = threading.Event()
        self.answers: list[tuple[float, int]] = []  # (when, HTTP status)
        self._threads = [threading.Thread(target=self._client, args=(i * STAGGER,), daemon=True)
                         for i in range(CLIENTS)]

    def __enter__(self) -> "SteadyTraffic":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)
        assert not any(t.is_alive() for t in self._threads), "a traffic client is stuck"

    def _client(self, start_delay: float) -> None:
        session = requests.Session()
        if self._stop.wait(start_delay):  # pacing the start, not synchronising
            return
        give_up = time.monotonic() + 30
        while not self._stop.is_set() and time.monotonic() < give_up:
            status = chat(self.server, self.model, session).status_code
            self.answers.append((time.monotonic(), status))

    def served_after(self, moment: float) -> int:
        return sum(1 for when, status in self.answers if when > moment and status == 200)


class OneRequest:
    """A request sent from its own thread; ``done`` is set when it is answered."""

    def __init__(self, server, model: str) -> None:
        self.done = threading.Event()
        self.status: int | None = None
        self.sent_at = time.monotonic()
        self.answered_at: float | None = None
        self._thread = threading.Thread(target=self._send, args=(server, model), daemon=True)
        self._thread.start()

    def _send(self, server, model: str) -> None:
        try:
            self.status = chat(server, model).status_code
        finally:
            self.answered_at = time.monotonic()
            self.done.set()

    def join(self) -> None:
        self._thread.join(timeout=30)
        assert not self._thread.is_alive()


def start_busy_a(llama_swap, tmp_path, max_wait: float):
    server = llama_swap(config(tmp_path, max_wait))
    # Load A before the clients start, so they do not all join one swap and
    # then move in lockstep (lockstep clients would let A drain between rounds).
    assert chat(server, "A").status_code == 200
    return server


def test_max_wait_serves_b_despite_steady_traffic_to_a(llama_swap, tmp_path):
    server = start_busy_a(llama_swap, tmp_path, max_wait=2)
    with SteadyTraffic(server, "A") as traffic:
        wait_for(lambda: traffic.served_after(0) >= 2 * CLIENTS, timeout=10, what="A's traffic to flow")
        b = OneRequest(server, "B")
        assert b.done.wait(timeout=2 + A_DRAIN + B_LOAD + 1 + 5), "B was never served"
        waited = b.answered_at - b.sent_at
        # The queue carries on: A is swapped back in and its clients served again.
        wait_for(lambda: traffic.served_after(b.answered_at) >= CLIENTS, timeout=10,
                 what="A's traffic to resume after B")
    b.join()

    assert b.status == 200
    assert 2 <= waited < 2 + A_DRAIN + B_LOAD + 1, f"B waited {waited:.2f}s"
    server.wait_for_log("B: waited 2.0s (maxWait 2s); holding new requests for A until it drains")
    assert {status for _, status in traffic.answers} == {200}, "A's clients queue, never refused"
    assert len(server.starts("B")) == 1 and len(server.starts("A")) == 2


def test_without_max_wait_b_waits_as_long_as_a_is_busy(llama_swap, tmp_path):
    server = start_busy_a(llama_swap, tmp_path, max_wait=0)
    traffic = SteadyTraffic(server, "A").__enter__()
    try:
        wait_for(lambda: traffic.served_after(0) >= 2 * CLIENTS, timeout=10, what="A's traffic to flow")
        b = OneRequest(server, "B")
        # Watch for 4 s (twice the bound above): B is still waiting, A still served.
        assert not b.done.wait(timeout=4), "B was served while A was busy"
        assert traffic.served_after(b.sent_at + 3) >= 1, "A's traffic went on the whole time"
        assert server.starts("B") == []
    finally:
        traffic.stop()
    stopped_at = time.monotonic()
    assert b.done.wait(timeout=A_DRAIN + B_LOAD + 5), "B not served once A's traffic stopped"
    b.join()
    assert b.status == 200
    assert b.answered_at - stopped_at < A_DRAIN + B_LOAD + 1
    assert "holding new requests" not in server.log()
