"""Streams and bodies under faults: what a client sees when the upstream, the operator or the client itself
breaks an answer, and how bodies of every framing flow.

A cut answer must read as cut: the client's read raises (the connection is
closed without the chunked body's terminating chunk), never a clean end that
looks complete.
"""

from __future__ import annotations

import json
import resource
import socket
import time
from typing import Iterator

import psutil
import pytest
import requests

from tests.helpers.server import fake_cmd, wait_for


CHAT = "/v1/chat/completions"


def chat(*, stream: bool = True) -> dict:
    return {"model": "A", "messages": [{"role": "user", "content": "hello"}], "stream": stream}


def model_a(tmp_path, flags: str, extra: str = "") -> str:
    """A config with one model, ``A``, served by the simulator with ``flags``."""
    return f"healthCheckTimeout: 15\n{extra}\nmodels:\n  A:\n    cmd: {fake_cmd('A', tmp_path, flags)}\n"


def read_until_broken(chunks: Iterator[bytes]) -> bytes:
    """The body read so far when reading it raised; fails if it ended cleanly."""
    got = b""
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.exceptions.ConnectionError)):
        for chunk in chunks:
            got += chunk
    return got


# --------------------------------------------------------------------------- a cut answer reads as cut


@pytest.mark.parametrize("framing", ["", "--length-delimited"], ids=["chunked", "content-length"])
def test_an_upstream_dying_mid_stream_breaks_the_clients_stream(llama_swap, tmp_path, framing):
    server = llama_swap(model_a(tmp_path, f"--tokens 10 --exit-mid-stream 3 {framing}"))
    with requests.post(server.url(CHAT), json=chat(), stream=True, timeout=30) as r:
        assert r.status_code == 200
        assert ("Content-Length" in r.headers) == bool(framing)  # passed on: the client knows it is short
        # (byte by byte: a read of more than what came before the cut raises without what it had)
        began = time.monotonic()
        got = read_until_broken(r.iter_content(1 if framing else None))
        assert time.monotonic() - began < 5, "the client waited for the rest (read timeout) instead of a cut"
    assert got.count(b"data: ") == 3 and b"[DONE]" not in got
    wait_for(lambda: "A: stream from upstream ended early" in server.log(), timeout=5, what="the log line")
    assert "Traceback" not in server.log(), server.log()


def test_an_upstream_dying_mid_stream_on_a_loading_state_stream_sends_an_error_then_breaks(llama_swap, tmp_path):
    server = llama_swap(model_a(tmp_path, "--load-time 0.3 --tokens 10 --exit-mid-stream 3",
                                      extra="sendLoadingState: true"))
    with requests.post(server.url(CHAT), json=chat(), stream=True, timeout=30) as r:
        assert r.status_code == 200
        got = read_until_broken(r.iter_content(None))
    events = [line[6:] for line in got.decode().splitlines() if line.startswith("data: ")]
    assert "llama-swap loading model: A" in got.decode()
    assert "[DONE]" not in events
    error = json.loads(events[-1])["error"]
    assert "ended early" in error["message"]
    assert "Traceback" not in server.log(), server.log()


def test_unloading_while_streams_run_breaks_them(llama_swap, tmp_path):
    server = llama_swap(model_a(tmp_path, "--tokens 400 --token-delay 0.05"))
    streams = [requests.post(server.url(CHAT), json=chat(), stream=True, timeout=30)
               for _ in range(2)]
    readers = []
    for r in streams:
        assert r.status_code == 200
        readers.append(r.iter_content(None))  # kept: a dropped reader closes its connection
        next(readers[-1])
    assert requests.post(server.url("/api/models/unload"), timeout=30).status_code == 200
    for r, chunks in zip(streams, readers):
        got = read_until_broken(chunks)
        r.close()
        assert b"[DONE]" not in got
    assert server.state_of("A") is None


# --------------------------------------------------------------------------- every body streams as it arrives


@pytest.mark.parametrize("framing", ["--close-delimited", "--length-delimited"], ids=["close-delimited",
                                                                                    "content-length"])
def test_a_body_without_chunked_encoding_streams_part_by_part(llama_swap, tmp_path, framing):
    # No chunked encoding: the body ends when the upstream closes the connection (an old SSE server), or at
    # its Content-Length. Either way its first event is sent 1 s in, the rest 1 s later.
    server = llama_swap(model_a(tmp_path, f"{framing} --tokens 2 --token-delay 1"))
    assert requests.post(server.url(CHAT), json=chat(stream=False), timeout=30).status_code == 200
    began = time.monotonic()
    with requests.post(server.url(CHAT), json=chat(), stream=True, timeout=30) as r:
        headers_at = time.monotonic() - began
        chunks = r.iter_content(None if framing == "--close-delimited" else 1)
        first = b""
        while b"\n\n" not in first:
            first += next(chunks)
        first_at = time.monotonic() - began
        rest = b"".join(chunks)
        ended_at = time.monotonic() - began
    assert first.startswith(b"data: ") and b"tok0" in first
    assert ended_at - first_at > 0.6, (f"the first event came at {first_at:.2f}s, with the rest "
                                       f"(at {ended_at:.2f}s): the body was read whole first")
    assert (first + rest).endswith(b"data: [DONE]\n\n")
    if framing == "--close-delimited":  # a stream's headers go out before its first event
        assert headers_at < 0.7, f"the headers waited {headers_at:.2f}s for the body"
    else:  # the length is passed on, the headers go with the first part
        assert headers_at < ended_at - 0.6, f"the headers came at {headers_at:.2f}s, with the whole body"
        assert int(r.headers["Content-Length"]) == len(first + rest)


# --------------------------------------------------------------------------- a client gone is noticed, whatever the upstream does


def two_models(tmp_path, a_flags: str, extra: str = "") -> str:
    """``A`` (``a_flags``) and a plain ``B``; one runs at a time, so B waits for A's lease."""
    return (model_a(tmp_path, a_flags, extra)
            + f"  B:\n    cmd: {fake_cmd('B', tmp_path, '--tokens 2')}\n")


def send_raw(server, body: dict) -> socket.socket:
    """POST ``body`` to the chat endpoint on a raw socket (the caller hangs up by closing it)."""
    data = json.dumps(body).encode()
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(data), data))
    return sock


def upstream_connections(server, model: str) -> list:
    """The worker's open connections to ``model``'s upstream."""
    (worker,) = psutil.Process(server.proc.pid).children()
    (upstream,) = [p for p in server.upstream_processes() if f"--model {model} " in " ".join(p.cmdline())]
    ports = {c.laddr.port for c in upstream.net_connections() if c.status == psutil.CONN_LISTEN}
    return [c for c in worker.net_connections() if c.raddr and c.raddr.port in ports
            and c.status == psutil.CONN_ESTABLISHED]


@pytest.mark.parametrize("stream, flags, extra", [
    (True, "", ""), (True, "--close-delimited", ""), (False, "", ""), (True, "", "sendLoadingState: true")],
    ids=["silent-after-headers", "close-delimited", "no-headers-yet", "loading-state"])
def test_a_client_hanging_up_while_the_upstream_is_silent_frees_the_model_within_a_second(
        llama_swap, tmp_path, stream, flags, extra):
    # A thinks for 30 s before its first token: streamed, its headers are out
    # and then nothing; not streamed, not even its headers come.
    server = llama_swap(two_models(tmp_path, f"--tokens 3 --prompt-delay 30 {flags}", extra))
    assert requests.post(server.url(CHAT), json=chat(stream=False) | {"model": "B"}, timeout=15).ok
    sock = send_raw(server, chat(stream=stream))
    wait_for(lambda: server.state_of("A") == "ready" and upstream_connections(server, "A"), timeout=10,
             what="A to be thinking")
    if stream:
        assert sock.recv(65536).startswith(b"HTTP/1.1 200")
    sock.close()
    began = time.monotonic()
    wait_for(lambda: not upstream_connections(server, "A"), timeout=5, what="the upstream request closed")
    assert time.monotonic() - began < 1.0, "the hang-up took more than a second to reach the upstream"
    # A's lease is back: B evicts it at once.
    assert requests.post(server.url(CHAT), json=chat(stream=False) | {"model": "B"}, timeout=15).ok
    assert time.monotonic() - began < 3.0
    assert "Traceback" not in server.log() and "reentrant" not in server.log(), server.log()


# --------------------------------------------------------------------------- request bodies: limits and bad framing


def raw_exchange(server, head: bytes, body_parts=(), *, half_close: bool = False,
                 target: bytes = b"/v1/chat/completions", content_type: bytes = b"application/json") -> tuple[int, bytes]:
    """Send a hand-framed request; the status and body of the answer."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=60) as sock:
        sock.sendall(b"POST %b HTTP/1.1\r\nHost: x\r\nContent-Type: %b\r\n%b\r\n" % (target, content_type, head))
        for part in body_parts:
            sock.sendall(part)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        answer = b""
        while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < content_length(answer):
            data = sock.recv(65536)
            if not data:
                break
            answer += data
    head_out, _, body = answer.partition(b"\r\n\r\n")
    return int(head_out.split(b" ", 2)[1]), body


def content_length(answer: bytes) -> int:
    for line in answer.partition(b"\r\n\r\n")[0].split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value)
    return 0


def peak_rss(process: psutil.Process) -> int:
    """The most memory ``process`` has held at once (Linux's ``VmHWM``), in bytes."""
    with open(f"/proc/{process.pid}/status") as status:
        (line,) = [line for line in status if line.startswith("VmHWM:")]
    return int(line.split()[1]) * 1024


def test_a_chunked_body_over_the_limit_is_refused_without_being_read_whole(llama_swap, tmp_path):
    server = llama_swap(model_a(tmp_path, ""))
    (worker,) = psutil.Process(server.proc.pid).children()
    before = worker.memory_info().rss
    megabyte = b"x" * (1 << 20)
    chunk = b"%x\r\n%b\r\n" % (len(megabyte), megabyte)
    parts = [chunk] * 250 + [b"1\r\nx\r\n", b"0\r\n\r\n"]  # 250 MB and one byte
    status, body = raw_exchange(server, b"Transfer-Encoding: chunked\r\n", parts)
    assert status == 413, body
    assert "250 MB" in json.loads(body)["error"]["message"]
    # Memory stays bounded: what was read up to the limit, held once (it was 925 MB when the body was
    # read whole and forwarded), and given back once the request was refused.
    grew = (peak_rss(worker) - before) >> 20
    assert grew < 250 + 70, f"the worker grew by {grew} MB reading a body refused at 250 MB"
    wait_for(lambda: worker.memory_info().rss - before < 50 << 20, timeout=5, what="the body's memory given back")
    assert requests.post(server.url(CHAT), json=chat(stream=False), timeout=15).status_code == 200


@pytest.mark.parametrize("head, parts, message", [
    (b"Transfer-Encoding: chunked\r\n", [b"zz\r\n{}\r\n0\r\n\r\n"], "could not be read"),
    (b"Content-Length: 200\r\n", [b'{"model": "A", "messages": []}'], "ended after 30 of its 200 bytes"),
    (b"Content-Length: 200000\r\n", [b'{"model": "A", "x": ' + b"[" * 100000 + b"]" * 100000 + b"}"],
     "nested too deeply"),
], ids=["malformed-chunk", "shorter-than-content-length", "deeply-nested-json"])
def test_a_malformed_body_is_a_400_and_the_next_request_works(llama_swap, tmp_path, head, parts, message):
    server = llama_swap(model_a(tmp_path, ""))
    status, body = raw_exchange(server, head, parts, half_close=True)
    assert status == 400, body
    assert message in json.loads(body)["error"]["message"]
    assert requests.post(server.url(CHAT), json=chat(stream=False), timeout=15).status_code == 200
    assert "Traceback" not in server.log(), server.log()


def test_a_malformed_chunk_in_an_upload_is_a_400(llama_swap, tmp_path):
    server = llama_swap(model_a(tmp_path, ""))
    status, body = raw_exchange(server, b"Transfer-Encoding: chunked\r\n", [b"zz\r\n--b\r\n0\r\n\r\n"],
                                target=b"/v1/audio/transcriptions", content_type=b"multipart/form-data; boundary=b")
    assert status == 400, body
    assert "could not be read" in json.loads(body)["error"]["message"]


def enough_files_for(count: int) -> None:
    """Raise this process's open-file limit to ``count`` where it is lower (CI's default may be 1024)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < count:
        if hard != resource.RLIM_INFINITY and hard < count:
            pytest.skip(f"needs {count} open files, the hard limit is {hard}")
        resource.setrlimit(resource.RLIMIT_NOFILE, (count, hard))


def test_bodies_that_stall_are_refused_with_a_408_and_a_thousand_of_them_block_nothing(llama_swap, tmp_path,
                                                                                       monkeypatch):
    monkeypatch.setenv("LLAMA_SWAP_BODY_TIMEOUT", "1")
    enough_files_for(1000 + 200)  # this process and the server (which inherits the limit) hold one each
    server = llama_swap(model_a(tmp_path, ""))
    head = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 100\r\n\r\n{\"model\": \"A\"")  # 14 of its 100 bytes, then nothing
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=30) for _ in range(1000)]
    try:
        for sock in stalled:
            sock.sendall(head)
        # While they stall, the server answers everyone else.
        assert requests.get(server.url("/health"), timeout=5).status_code == 200
        assert requests.post(server.url(CHAT), json=chat(stream=False), timeout=15).status_code == 200
        # Each stalled request is refused once its body has been silent for the timeout, and let go.
        for sock in stalled[:20] + stalled[-20:]:
            answer = b""
            while data := sock.recv(65536):
                answer += data
            assert answer.startswith(b"HTTP/1.1 408"), answer
            assert b"nothing received for 1s" in answer, answer
    finally:
        for sock in stalled:
            sock.close()
    assert server.starts("A") and len(server.starts("A")) == 1  # the stalled requests started nothing more
    assert "Traceback" not in server.log(), server.log()


def worker_connections_on(server) -> int:
    """How many client connections the server's worker holds open on its port."""
    (worker,) = psutil.Process(server.proc.pid).children()
    return sum(1 for c in worker.net_connections("tcp")
               if c.laddr.port == server.port and c.status == psutil.CONN_ESTABLISHED)


def answer_on(sock: socket.socket) -> bytes:
    """One whole answer with a Content-Length read from ``sock`` (which stays open)."""
    answer = b""
    while b"\r\n\r\n" not in answer or len(answer.partition(b"\r\n\r\n")[2]) < content_length(answer):
        data = sock.recv(65536)
        assert data, f"closed after {answer!r}"
        answer += data
    return answer


def started_under_a_soft_limit_of_1024(start):
    """What ``start()`` returns, run with this process's soft open-files limit at a service's default
    (systemd's 1,024) for the server to inherit; the limit is put back after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))
    try:
        return start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_thousand_stalled_heads_and_two_thousand_idle_connections_delay_no_request(llama_swap, tmp_path):
    enough_files_for(3000 + 200)  # the hard limit allows it: the server raises its soft limit to it, as Go does
    server = started_under_a_soft_limit_of_1024(lambda: llama_swap(model_a(tmp_path, "")))
    assert requests.post(server.url(CHAT), json=chat(stream=False), timeout=15).status_code == 200  # A is up
    idle = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(2000)]
    stalled = [socket.create_connection(("127.0.0.1", server.port), timeout=10) for _ in range(1000)]
    try:
        for sock in idle:  # all sent before any is read: the server answers them side by side
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        for sock in idle:
            assert answer_on(sock).startswith(b"HTTP/1.1 200")  # ...and keeps the connection for the next
        for n, sock in enumerate(stalled):  # half stop in the request line, half in the headers
            sock.sendall(b"GET /heal" if n % 2 else b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Ty")
        wait_for(lambda: worker_connections_on(server) >= 3000, timeout=10, what="the worker to hold all 3,000")

        began = time.monotonic()
        assert requests.get(server.url("/health"), timeout=5).status_code == 200
        health_took = time.monotonic() - began
        began = time.monotonic()
        assert requests.post(server.url(CHAT), json=chat(stream=False), timeout=15).status_code == 200
        chat_took = time.monotonic() - began
        assert health_took < 1.0 and chat_took < 1.0, (
            f"/health took {health_took:.2f}s and a chat completion {chat_took:.2f}s behind 3,000 idle connections")

        # They were held all along: a stalled head has had no answer, an idle connection still serves.
        for sock in stalled[:20] + stalled[-20:]:
            sock.setblocking(False)
            with pytest.raises(BlockingIOError):
                sock.recv(1)
        idle[0].sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert answer_on(idle[0]).startswith(b"HTTP/1.1 200")
    finally:
        for sock in idle + stalled:
            sock.close()
    assert "Traceback" not in server.log(), server.log()


def test_an_upload_that_stalls_while_its_model_loads_is_a_408_without_a_traceback(llama_swap, tmp_path,
                                                                                  monkeypatch):
    # The hang-up watch peeks at the client's socket while the model loads; the upload's relay then
    # waits on the same socket: only one may, and neither must fail for it.
    monkeypatch.setenv("LLAMA_SWAP_BODY_TIMEOUT", "1")
    server = llama_swap(model_a(tmp_path, "--load-time 0.5"))
    head = (b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\n"
            b"Content-Type: multipart/form-data; boundary=b\r\nContent-Length: 300000\r\n\r\n"
            b'--b\r\nContent-Disposition: form-data; name="model"\r\n\r\nA\r\n'
            b'--b\r\nContent-Disposition: form-data; name="file"; filename="a.wav"\r\n\r\n'
            + b"x" * 150_000)  # more than the first read takes: the model is known, the rest never comes
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head)  # ...and then nothing
        answer = b""
        while data := sock.recv(65536):
            answer += data
    assert answer.startswith(b"HTTP/1.1 408") or answer == b"", answer
    wait_for(lambda: "POST /v1/audio/transcriptions" in server.log(), timeout=10, what="the access line")
    assert "Traceback" not in server.log() and "ConcurrentObjectUseError" not in server.log(), server.log()
    assert requests.post(server.url(CHAT), json=chat(stream=False), timeout=15).status_code == 200
