"""The core end to end: real server, real simulated upstreams, over loopback.

Each test reads like what a user would see: what comes back, how many
processes were started, what is still running.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psutil
import pytest
import requests

from tests.helpers.server import fake_cmd, wait_for
from tests.helpers.upstream import running_fake_upstream


def chat(name: str, *, stream: bool = False, max_tokens: int | None = None) -> dict:
    body = {"model": name, "messages": [{"role": "user", "content": "hello"}], "stream": stream}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def models_config(tmp_path, models: dict[str, str], extra: str = "") -> str:
    lines = ["healthCheckTimeout: 15", extra, "models:"]
    for name, flags in models.items():
        lines += [f"  {name}:", f"    cmd: {fake_cmd(name, tmp_path, flags)}"]
    return "\n".join(lines) + "\n"


def sse_contents(raw: bytes) -> list[str]:
    """The delta texts of an OpenAI chat stream, in order."""
    out = []
    for line in raw.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            event = json.loads(line[6:])
            for choice in event.get("choices", []):
                text = choice.get("delta", {}).get("content")
                if text:
                    out.append(text)
    return out


def test_acbacb_burst_is_served_with_three_starts(llama_swap, tmp_path):
    flags = "--load-time 0.5 --tokens 4"
    server = llama_swap(models_config(tmp_path, {"A": flags, "B": flags, "C": flags}))

    def ask(name: str) -> tuple[str, int, str]:
        r = requests.post(server.url("/v1/chat/completions"), json=chat(name), timeout=30)
        return name, r.status_code, r.json().get("model", "")

    order = ["A", "C", "B", "A", "C", "B"]
    with ThreadPoolExecutor(len(order)) as pool:
        futures = []
        for name in order:  # all six within 200 ms
            futures.append(pool.submit(ask, name))
            time.sleep(0.03)
        results = [f.result() for f in futures]

    assert [(name, status) for name, status, _ in results] == [(n, 200) for n in order]
    assert all(served == name for name, _, served in results)
    assert {m: len(server.starts(m)) for m in "ABC"} == {"A": 1, "B": 1, "C": 1}


def test_stream_arrives_chunk_by_chunk_with_the_same_text_as_direct(llama_swap, tmp_path):
    flags = "--tokens 20 --token-delay 0.05"
    server = llama_swap(models_config(tmp_path, {"A": flags}))
    requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=30).raise_for_status()

    began = time.monotonic()
    first_chunk_at = None
    raw = b""
    with requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True),
                       stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["X-Accel-Buffering"] == "no"
        for chunk in r.iter_content(None):
            if first_chunk_at is None and b"tok0" in chunk:
                first_chunk_at = time.monotonic() - began
            raw += chunk
    total = time.monotonic() - began

    # 20 tokens 50 ms apart: the upstream sends its last token ~1 s in, and
    # the first token must already have reached us long before that.
    assert total >= 0.9
    assert first_chunk_at is not None and first_chunk_at < total - 0.5
    assert raw.rstrip().endswith(b"data: [DONE]")

    with running_fake_upstream("--model", "A", *flags.split()) as direct:
        direct_raw = requests.post(direct.url("/v1/chat/completions"), json=chat("A", stream=True),
                                   timeout=30).content
    assert sse_contents(raw) == sse_contents(direct_raw) == [f"tok{i} " for i in range(20)]


def test_a_streamed_answer_starts_when_the_upstream_answers_not_at_its_first_token(llama_swap, tmp_path):
    # The model thinks 0.6 s before each token: the response (status, headers)
    # must reach the client at once, as it does direct, not with the first token.
    server = llama_swap(models_config(tmp_path, {"A": "--tokens 2 --token-delay 0.6"}))
    assert requests.post(server.url("/v1/chat/completions"), json=chat("A", max_tokens=1),
                         timeout=15).status_code == 200  # loaded
    began = time.monotonic()
    with requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True, max_tokens=2),
                       stream=True, timeout=15) as r:
        headers_after = time.monotonic() - began
        assert r.status_code == 200 and r.headers["Content-Type"].startswith("text/event-stream")
        first = next(r.iter_content(None))
        first_after = time.monotonic() - began
    assert first.startswith(b"data: ")
    assert headers_after < 0.3 <= 0.55 <= first_after, (headers_after, first_after)


def test_request_arriving_during_ttl_unload_succeeds_every_time(llama_swap, tmp_path):
    # SIGTERM ignored and a 0.2 s unloadTimeout: every TTL unload spends 0.2 s
    # in "stopping", a window we aim each request at.
    config = f"""
healthCheckTimeout: 15
models:
  A:
    cmd: {fake_cmd("A", tmp_path, "--ignore-sigterm --tokens 2")}
    ttl: 0.05
    unloadTimeout: 0.2
"""
    server = llama_swap(config)
    session = requests.Session()
    for attempt in range(30):  # each round aims a request at the stopping window; the router unit tests cover the rest
        r = session.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=15)
        assert r.status_code == 200, (attempt, r.text)
        wait_for(lambda: server.state_of("A") == "stopping", timeout=5, interval=0.005,
                 what="the TTL unload to begin")
        r = session.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=15)
        assert r.status_code == 200, (attempt, r.text)
    assert len(server.starts("A")) >= 30


def test_unloading_during_a_swap_keeps_its_target_from_starting(llama_swap, tmp_path):
    # A ignores SIGTERM, so a swap to B spends unloadTimeout (1 s) stopping A:
    # an unload of everything in that window must also cover B.
    config = f"""
healthCheckTimeout: 15
models:
  A:
    cmd: {fake_cmd("A", tmp_path, "--ignore-sigterm --tokens 2")}
    unloadTimeout: 1
  B:
    cmd: {fake_cmd("B", tmp_path, "--tokens 2")}
"""
    server = llama_swap(config)
    assert requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=15).status_code == 200
    answers: list[requests.Response] = []
    waiter = threading.Thread(target=lambda: answers.append(
        requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=15)))
    waiter.start()
    wait_for(lambda: server.state_of("A") == "stopping", timeout=5, what="the swap to stop A")
    unloaded = requests.post(server.url("/api/models/unload"), timeout=15)
    waiter.join(timeout=15)
    assert unloaded.status_code == 200
    assert answers and answers[0].status_code == 503, answers and answers[0].text
    assert "unloaded" in answers[0].json()["error"]["message"]
    assert server.starts("B") == [], "B must not start once everything was unloaded"
    assert server.state_of("A") is None and server.state_of("B") is None
    # ... and the next request for B simply loads it.
    assert requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=15).status_code == 200


def test_a_model_slow_to_die_does_not_hold_up_requests_for_another(llama_swap, tmp_path):
    # A ignores SIGTERM: unloading it takes its whole unloadTimeout (5 s). B
    # runs beside it (a group that does not swap) and must keep its usual
    # latency meanwhile: the router never waits on a stop.
    config = f"""
healthCheckTimeout: 15
groups:
  pair:
    swap: false
    members: [A, B]
models:
  A:
    cmd: {fake_cmd("A", tmp_path, "--ignore-sigterm --tokens 2")}
    unloadTimeout: 5
  B:
    cmd: {fake_cmd("B", tmp_path, "--tokens 2")}
"""
    server = llama_swap(config)
    session = requests.Session()

    def ask_b() -> float:
        began = time.monotonic()
        r = session.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=15)
        assert r.status_code == 200, r.text
        return time.monotonic() - began

    assert session.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=15).status_code == 200
    ask_b()  # B loads
    usual = max(ask_b() for _ in range(5))
    unloading = threading.Thread(target=lambda: requests.post(server.url("/api/models/unload/A"), timeout=30))
    began = time.monotonic()
    unloading.start()
    wait_for(lambda: server.state_of("A") == "stopping", timeout=5, interval=0.005, what="A's unload to begin")
    during = [ask_b() for _ in range(5)]
    assert max(during) < max(0.25, 5 * usual), f"B took {during} during A's unload (usually {usual:.3f}s)"
    assert server.state_of("A") == "stopping", "A died early: the test proved nothing"
    unloading.join(timeout=30)
    assert time.monotonic() - began >= 4.5, "A's unloadTimeout was not waited out"
    assert server.state_of("A") is None and server.state_of("B") == "ready"


def test_idle_connections_to_a_model_are_closed_before_it_is_asked_to_stop(llama_swap, tmp_path):
    # Like llama-server, this upstream's exit waits (here 3 s) while a client
    # connection is open; the proxy's pooled keep-alive connection must be
    # gone by the time the upstream gets SIGTERM.
    server = llama_swap(models_config(tmp_path, {"A": "--linger 3 --tokens 2"}, extra="logToStdout: both"))
    session = requests.Session()
    for _ in range(3):  # a pooled keep-alive connection to A
        assert session.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=15).status_code == 200
    began = time.monotonic()
    assert requests.post(server.url("/api/models/unload"), timeout=15).status_code == 200
    took = time.monotonic() - began
    assert "still open after" not in server.log(), server.log()
    assert took < 2.5, f"unload took {took:.2f}s: the upstream waited on an open connection (linger 3 s)"


def test_client_hanging_up_while_queued_leaves_the_queue(llama_swap, tmp_path):
    server = llama_swap(models_config(tmp_path, {"A": "--tokens 30 --token-delay 0.05", "B": ""}))
    with requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True),
                       stream=True, timeout=30) as busy:
        chunks = busy.iter_content(None)
        next(chunks)  # A is now serving a 1.5 s stream
        # B must wait for A to drain; its client gives up while queued.
        sock = socket.create_connection(("127.0.0.1", server.port))
        body = json.dumps(chat("B")).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                     b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        wait_for(lambda: "B: queued" in server.log(), timeout=5, what="B to be queued")
        client_port = sock.getsockname()[1]
        sock.close()
        wait_for(lambda: "B: client went away while waiting" in server.log(), timeout=5,
                 what="the server to notice the hang-up")
        # ...and lets go of B's connection now, not at shutdown.
        (worker,) = psutil.Process(server.proc.pid).children()
        wait_for(lambda: all(c.raddr == () or c.raddr.port != client_port for c in worker.net_connections()),
                 timeout=5, what="the worker to close the departed client's connection")
        for _ in chunks:
            pass
    # A drained, and nobody is waiting for B any more: B is never started.
    r = requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=30)
    assert r.status_code == 200
    assert server.starts("B") == []
    assert server.state_of("A") == "ready"


def test_client_hanging_up_mid_stream_frees_its_model_at_once(llama_swap, tmp_path):
    server = llama_swap(models_config(tmp_path, {"A": "--tokens 200 --token-delay 0.1", "B": "--tokens 2"}))
    r = requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True), stream=True, timeout=30)
    next(r.iter_content(None))
    r.close()  # 20 s of stream left: hang up after the first chunk
    began = time.monotonic()
    r = requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=30)
    assert r.status_code == 200
    assert time.monotonic() - began < 3
    assert server.state_of("A") is None
    # The access log tells each story: A's answer cut short by the client, B's loaded for it.
    lines = server.log().splitlines()
    assert any(line.startswith("[INFO] A: POST /v1/chat/completions 200, ") and line.endswith("; client gone")
               for line in lines), server.log()
    assert any(line.startswith("[INFO] B: POST /v1/chat/completions 200, ") and "loading " in line
               for line in lines), server.log()


def test_client_hanging_up_while_the_model_thinks_frees_it_at_once(llama_swap, tmp_path):
    # A thinks 5 s before its first token; the client sees the headers, then
    # hangs up. A must be freed now (B evicts it), not when its token comes.
    server = llama_swap(models_config(tmp_path, {"A": "--tokens 3 --prompt-delay 5", "B": "--tokens 2"}))
    assert requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=15).status_code == 200
    r = requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True), stream=True, timeout=30)
    assert r.status_code == 200  # the headers, while A thinks
    r.close()
    began = time.monotonic()
    r = requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=30)
    assert r.status_code == 200
    assert time.monotonic() - began < 2.5, "A stayed busy until its next token"
    assert "reentrant call" not in server.log() and "Traceback" not in server.log(), server.log()


def test_sigkill_of_the_server_leaves_no_upstream_behind(llama_swap, tmp_path):
    server = llama_swap(models_config(tmp_path, {"A": "--ignore-sigterm", "B": ""},
                                      extra="routing:\n  router:\n    settings:\n      groups:\n"
                                            "        both: {swap: false, members: [A, B]}"))
    for name in ("A", "B"):
        assert requests.post(server.url("/v1/chat/completions"), json=chat(name), timeout=30).status_code == 200
    upstreams = server.upstream_processes()
    assert len(upstreams) == 2
    os.kill(server.proc.pid, signal.SIGKILL)
    server.proc.wait()
    gone, alive = psutil.wait_procs(upstreams, timeout=2)
    assert alive == []


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_sigterm_or_sigint_stops_every_upstream_before_the_server_exits(llama_swap, tmp_path, signum):
    server = llama_swap(models_config(tmp_path, {"A": ""}))
    assert requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=30).status_code == 200
    upstream = server.upstream_processes()
    assert len(upstream) == 1
    server.proc.send_signal(signum)
    server.proc.wait(timeout=20)
    assert not upstream[0].is_running()
    assert "A: stopped pid" in server.log()


def open_streams(server, count: int) -> list[requests.Response]:
    """``count`` chat streams to A, each read up to its first event (so each is in flight)."""
    streams = []
    for _ in range(count):
        r = requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True), stream=True, timeout=30)
        assert r.status_code == 200
        streams.append(r)
    return streams


def new_request_refused(server) -> bool:
    """A request that arrives during the drain: a 503 saying why, or no connection once the listener closed."""
    try:
        r = requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=10)
    except requests.ConnectionError:
        return True
    assert r.status_code == 503, r.text
    assert "shutting down" in r.json()["error"]["message"]
    return True


def test_sigterm_lets_the_streams_in_flight_finish_refuses_new_requests_and_exits_0(llama_swap, tmp_path):
    server = llama_swap(models_config(tmp_path, {"A": "--tokens 30 --token-delay 0.05"}))
    streams = [r.iter_content(None) for r in open_streams(server, 4)]
    firsts = [next(chunks) for chunks in streams]  # each answer has begun
    upstream = server.upstream_processes()
    server.proc.send_signal(signal.SIGTERM)
    wait_for(lambda: "draining: waiting for A (4 in flight" in server.log(), timeout=10, what="the drain")
    assert new_request_refused(server)
    for first, chunks in zip(firsts, streams):
        raw = first + b"".join(chunks)  # raises if the stream is cut
        assert raw.rstrip().endswith(b"data: [DONE]")
        assert len(sse_contents(raw)) == 30
    assert server.proc.wait(timeout=30) == 0
    assert not any(p.is_running() for p in upstream)
    assert "cut" not in server.log(), server.log()


def test_sigterm_cuts_what_is_still_in_after_the_grace(llama_swap, tmp_path, monkeypatch):
    monkeypatch.setenv("LLAMA_SWAP_SHUTDOWN_GRACE", "0.5")
    server = llama_swap(models_config(tmp_path, {"A": "--tokens 400 --token-delay 0.05"}))  # 20 s of tokens
    (stream,) = open_streams(server, 1)
    chunks = stream.iter_content(None)
    next(chunks)
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        for _ in chunks:
            pass
    assert time.monotonic() - began < 10, "cut at the grace, not at the stream's end"
    assert server.proc.wait(timeout=30) == 0
    assert "requests still in after the 0.5s shutdown grace are cut" in server.log(), server.log()
