"""Integration tests for ``simulator``, run as a real child process."""

from __future__ import annotations

import hashlib
import http.client
import json
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.helpers.upstream import FakeUpstream, spawn_fake_upstream, start_fake_upstream


@pytest.fixture
def launch() -> Iterator[Any]:
    """Start fake upstreams for one test; everything started is killed afterwards."""
    started: list[FakeUpstream] = []

    def _launch(*flags: str, wait: bool = True) -> FakeUpstream:
        up = start_fake_upstream(*flags, wait=wait)
        started.append(up)
        return up

    try:
        yield _launch
    finally:
        for up in started:
            up.kill()


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    """One default upstream shared by the read-only tests of this module."""
    up = start_fake_upstream("--model", "shared-model", "--tokens", "4")
    try:
        yield up
    finally:
        up.kill()


def request(up: FakeUpstream, method: str, path: str, body: Any = None,
            conn: http.client.HTTPConnection | None = None) -> tuple[int, dict[str, str], bytes]:
    own = conn is None
    conn = conn or http.client.HTTPConnection(up.host, up.port, timeout=5)
    try:
        data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        conn.request(method, path, body=data, headers=headers)
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        if own:
            conn.close()


def post_json(up: FakeUpstream, path: str, body: Any) -> tuple[int, Any]:
    status, _, raw = request(up, "POST", path, body)
    return status, json.loads(raw)


def sse_events(raw: bytes) -> list[str]:
    """The ``data:`` payloads of an SSE body, in order."""
    events = [block for block in raw.decode().split("\n\n") if block]
    assert all(e.startswith("data: ") for e in events), events
    return [e[len("data: "):] for e in events]


def wait_until(predicate: Any, timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return False


# --------------------------------------------------------------------------- lifecycle


def test_health_is_503_while_loading_then_200(launch: Any) -> None:
    up = launch("--load-time", "1.0", wait=False)
    assert wait_until(lambda: up.health() is not None), up.output()
    status, _, raw = request(up, "GET", "/health")
    assert status == 503
    assert json.loads(raw) == {"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}}
    status, _, _ = request(up, "POST", "/v1/chat/completions", {"messages": []})
    assert status == 503
    up.wait_healthy(timeout=5)
    status, _, raw = request(up, "GET", "/health")
    assert (status, json.loads(raw)) == (200, {"status": "ok"})
    assert "main: model loaded" in up.output()


def test_never_healthy(launch: Any) -> None:
    up = launch("--never-healthy", wait=False)
    assert wait_until(lambda: up.health() is not None)
    assert up.health() == 503


def test_crash_after_one_completion(launch: Any) -> None:
    up = launch("--crash-after", "1")
    status, body = post_json(up, "/v1/chat/completions", {"messages": [{"role": "user", "content": "hi"}]})
    assert status == 200 and body["choices"][0]["message"]["content"]
    assert up.wait_exit(timeout=5) == 1


def test_sigterm_exits_zero(launch: Any) -> None:
    up = launch()
    up.signal(signal.SIGTERM)
    assert up.wait_exit(timeout=5) == 0
    assert wait_until(lambda: "received SIGTERM" in up.output())


def test_ignore_sigterm_survives_until_sigkill(launch: Any) -> None:
    up = launch("--ignore-sigterm")
    up.signal(signal.SIGTERM)
    with pytest.raises(subprocess.TimeoutExpired):
        up.wait_exit(timeout=0.3)
    assert up.health() == 200
    up.signal(signal.SIGKILL)
    assert up.wait_exit(timeout=5) == -signal.SIGKILL


def test_starts_file_gets_one_pid_per_start(launch: Any, tmp_path: Path) -> None:
    starts = tmp_path / "starts.txt"
    first = launch("--starts-file", str(starts))
    second = launch("--starts-file", str(starts))
    assert starts.read_text().splitlines() == [str(first.pid), str(second.pid)]


def test_exit_after_start_exits_3_while_loading(launch: Any) -> None:
    up = launch("--exit-after-start", "0.2", "--load-time", "30", wait=False)
    assert up.wait_exit(timeout=5) == 3


def test_ipv6_loopback(launch: Any) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        up = spawn_fake_upstream(host="::1")
    except OSError:
        pytest.skip("::1 unavailable")
    try:
        try:
            up.wait_healthy(timeout=5)
        except RuntimeError:
            pytest.skip("cannot bind ::1 here")
        assert "http://[::1]:" in up.output()
    finally:
        up.kill()


# --------------------------------------------------------------------------- responses


def test_chat_completion_shape(upstream: FakeUpstream) -> None:
    status, body = post_json(upstream, "/v1/chat/completions",
                             {"messages": [{"role": "user", "content": "one two three"}]})
    assert status == 200
    assert body["object"] == "chat.completion"
    assert body["model"] == "shared-model"
    assert isinstance(body["id"], str) and isinstance(body["created"], int)
    assert body["choices"] == [{"index": 0, "finish_reason": "stop",
                                "message": {"role": "assistant", "content": "tok0 tok1 tok2 tok3 "}}]
    assert body["usage"] == {"prompt_tokens": 3, "completion_tokens": 4, "total_tokens": 7}
    assert set(body["timings"]) == {"prompt_n", "prompt_ms", "prompt_per_second", "predicted_n",
                                    "predicted_ms", "predicted_per_second", "cache_n"}


def test_max_tokens_controls_token_count(upstream: FakeUpstream) -> None:
    _, body = post_json(upstream, "/v1/chat/completions", {"messages": [], "max_tokens": 7})
    assert body["choices"][0]["message"]["content"] == "".join(f"tok{i} " for i in range(7))
    assert body["usage"]["completion_tokens"] == 7
    _, body = post_json(upstream, "/completion", {"prompt": "x", "n_predict": 2})
    assert body["content"] == "tok0 tok1 " and body["tokens_predicted"] == 2 and body["stop"] is True


def test_streamed_chat_is_sse_ending_with_usage_and_done(upstream: FakeUpstream) -> None:
    status, headers, raw = request(upstream, "POST", "/v1/chat/completions",
                                   {"messages": [{"role": "user", "content": "hi"}], "stream": True,
                                    "max_tokens": 3})
    assert status == 200
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["transfer-encoding"] == "chunked"
    events = sse_events(raw)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    tokens = [c["choices"][0]["delta"]["content"] for c in chunks[:3]]
    assert tokens == ["tok0 ", "tok1 ", "tok2 "]
    assert chunks[3]["choices"] == [{"index": 0, "delta": {}, "finish_reason": "stop"}]
    assert chunks[4]["choices"] == []
    assert chunks[4]["usage"]["completion_tokens"] == 3
    assert chunks[4]["timings"]["predicted_n"] == 3


def test_streamed_text_and_native_completions(upstream: FakeUpstream) -> None:
    _, _, raw = request(upstream, "POST", "/v1/completions", {"prompt": "p", "stream": True, "max_tokens": 2})
    events = sse_events(raw)
    assert [json.loads(e)["choices"][0]["text"] for e in events[:2]] == ["tok0 ", "tok1 "]
    assert events[-1] == "[DONE]"
    _, _, raw = request(upstream, "POST", "/completion", {"prompt": "p", "stream": True, "n_predict": 2})
    events = [json.loads(e) for e in sse_events(raw)]
    assert events[:2] == [{"content": "tok0 ", "stop": False}, {"content": "tok1 ", "stop": False}]
    assert events[-1]["stop"] is True and "timings" in events[-1]


def test_embeddings_models_props(upstream: FakeUpstream) -> None:
    _, body = post_json(upstream, "/v1/embeddings", {"input": ["a b", "c"]})
    assert [d["index"] for d in body["data"]] == [0, 1]
    assert all(len(d["embedding"]) == 8 for d in body["data"])
    _, again = post_json(upstream, "/v1/embeddings", {"input": "a b"})
    assert again["data"][0]["embedding"] == body["data"][0]["embedding"]
    for path in ("/v1/models", "/models"):
        status, _, raw = request(upstream, "GET", path)
        assert status == 200 and json.loads(raw)["data"][0]["id"] == "shared-model"
    status, _, raw = request(upstream, "GET", "/props")
    assert status == 200 and json.loads(raw)["total_slots"] == 1


def test_echo_errors_and_keep_alive(upstream: FakeUpstream) -> None:
    conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=5)
    try:
        status, _, raw = request(upstream, "POST", "/v1/echo?x=1", b"raw body", conn=conn)
        echoed = json.loads(raw)
        assert (status, echoed["method"], echoed["path"], echoed["body"]) == (200, "POST", "/v1/echo?x=1", "raw body")
        assert echoed["headers"]["Content-Type"] == "application/json"
        status, _, raw = request(upstream, "GET", "/v1/echo", conn=conn)
        assert (status, json.loads(raw)["body"]) == (200, "")
        assert request(upstream, "GET", "/nope", conn=conn)[0] == 404
        assert request(upstream, "POST", "/v1/chat/completions", b"not json", conn=conn)[0] == 400
        sock = conn.sock
        assert request(upstream, "GET", "/health", conn=conn)[0] == 200
        assert conn.sock is sock  # still the same keep-alive connection
    finally:
        conn.close()


def test_chunked_request_body(upstream: FakeUpstream) -> None:
    conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=5)
    try:
        conn.request("POST", "/v1/echo", body=iter([b"hel", b"lo"]), encode_chunked=True,
                     headers={"Transfer-Encoding": "chunked"})
        resp = conn.getresponse()
        assert json.loads(resp.read())["body"] == "hello"
        assert request(upstream, "GET", "/health", conn=conn)[0] == 200
    finally:
        conn.close()


def test_client_disconnect_mid_stream_is_quiet(launch: Any) -> None:
    up = launch("--token-delay", "0.01")
    with socket.create_connection((up.host, up.port), timeout=5) as sock:
        body = json.dumps({"messages": [], "stream": True, "max_tokens": 200}).encode()
        sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%b"
                     % (len(body), body))
        assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    assert wait_until(lambda: "disconnected mid-stream" in up.output())
    assert up.health() == 200
    assert "Traceback" not in up.output()


def test_split_writes_serves_the_same_bytes(launch: Any) -> None:
    up = launch("--split-writes", "--tokens", "4")
    status, body = post_json(up, "/v1/chat/completions", {"messages": []})
    assert status == 200 and body["choices"][0]["message"]["content"] == "tok0 tok1 tok2 tok3 "


# --------------------------------------------------------------------------- the other APIs (simulator.apis)


def multipart_body(fields: dict[str, str], files: dict[str, tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "fakeboundary42"
    out = b""
    for name, value in fields.items():
        out += f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
    for name, (filename, content) in files.items():
        out += (f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                f"Content-Type: application/octet-stream\r\n\r\n").encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def test_anthropic_messages_json_and_stream_name_the_model_received(upstream: FakeUpstream) -> None:
    status, body = post_json(upstream, "/v1/messages", {"model": "claude-x", "max_tokens": 2,
                                                         "messages": [{"role": "user", "content": "a b"}]})
    assert status == 200
    assert (body["type"], body["model"], body["content"]) == ("message", "claude-x",
                                                                [{"type": "text", "text": "tok0 tok1 "}])
    assert body["usage"] == {"input_tokens": 2, "output_tokens": 2} and body["stop_reason"] == "max_tokens"
    _, headers, raw = request(upstream, "POST", "/v1/messages", {"model": "m", "max_tokens": 2, "stream": True,
                                                                   "messages": []})
    assert headers["content-type"].startswith("text/event-stream")
    events = [block.split("\n") for block in raw.decode().split("\n\n") if block]
    assert [e[0] for e in events] == ["event: message_start", "event: content_block_start",
                                      "event: content_block_delta", "event: content_block_delta",
                                      "event: content_block_stop", "event: message_delta", "event: message_stop"]
    assert json.loads(events[2][1][len("data: "):])["delta"] == {"type": "text_delta", "text": "tok0 "}
    assert post_json(upstream, "/v1/messages/count_tokens",
                     {"model": "m", "messages": [{"role": "user", "content": "one two"}]})[1]["input_tokens"] == 2


def test_responses_json_and_stream(upstream: FakeUpstream) -> None:
    _, body = post_json(upstream, "/v1/responses", {"model": "r", "input": "hi", "max_output_tokens": 2})
    assert body["model"] == "r" and body["output"][0]["content"][0]["text"] == "tok0 tok1 "
    _, _, raw = request(upstream, "POST", "/v1/responses", {"model": "r", "input": "hi", "stream": True})
    assert raw.startswith(b"event: response.created") and b"event: response.completed" in raw


def test_uploads_are_described_so_a_proxy_can_be_checked(upstream: FakeUpstream) -> None:
    content = bytes(range(256)) * 100
    body, content_type = multipart_body({"model": "whisper", "language": "fr"}, {"file": ("a.wav", content)})
    conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=5)
    try:
        conn.request("POST", "/v1/audio/transcriptions", body=body, headers={"Content-Type": content_type})
        answer = json.loads(conn.getresponse().read())
    finally:
        conn.close()
    assert answer["model"] == "whisper" and answer["fields"] == {"model": "whisper", "language": "fr"}
    assert answer["file"] == {"filename": "a.wav", "size": len(content),
                              "sha256": hashlib.sha256(content).hexdigest()}
    assert answer["text"] == f"transcribed {len(content)} bytes of a.wav with whisper"


def test_audio_images_rerank_sdapi_and_tasks(upstream: FakeUpstream) -> None:
    status, headers, raw = request(upstream, "POST", "/v1/audio/speech", {"model": "tts", "input": "hi"})
    assert (status, headers["content-type"], headers["x-received-model"]) == (200, "audio/mpeg", "tts")
    assert raw.startswith(b"ID3")
    assert json.loads(request(upstream, "GET", "/v1/audio/voices?model=tts")[2])["model"] == "tts"
    _, body = post_json(upstream, "/v1/images/generations", {"model": "sd", "prompt": "x", "n": 2})
    assert body["model"] == "sd" and len(body["data"]) == 2
    _, body = post_json(upstream, "/v1/rerank", {"model": "rr", "query": "cat", "documents": ["dog", "a cat"]})
    assert [r["index"] for r in body["results"]] == [1, 0] and body["model"] == "rr"
    _, body = post_json(upstream, "/sdapi/v1/txt2img", {"model": "sd", "prompt": "x"})
    assert json.loads(body["info"])["model"] == "sd" and len(body["images"]) == 1
    assert json.loads(request(upstream, "GET", "/sdapi/v1/loras?model=sd")[2])[0]["model"] == "sd"
    _, body = post_json(upstream, "/v1/tasks/run", {"model": "ac", "task": "tts"})
    assert (body["model"], body["path"], body["task"]) == ("ac", "/v1/tasks/run", "tts")
    _, body = post_json(upstream, "/infill", {"input_prefix": "x", "n_predict": 1})
    assert body["content"] == "tok0 "
    assert json.loads(request(upstream, "GET", "/props?model=x")[2])["query"] == {"model": "x"}


def test_echo_request_puts_the_request_in_completion_answers(launch: Any) -> None:
    up = launch("--echo-request", "--tokens", "1")
    _, body = post_json(up, "/v1/chat/completions", {"model": "m", "messages": [], "top_k": 5})
    assert body["received"] == {"model": "m", "messages": [], "top_k": 5}


def test_exit_mid_stream_cuts_the_chunked_body(launch: Any) -> None:
    up = launch("--exit-mid-stream", "2", "--tokens", "5")
    conn = http.client.HTTPConnection(up.host, up.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({"stream": True, "messages": []}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.getheader("Transfer-Encoding") == "chunked"
    with pytest.raises(http.client.IncompleteRead) as cut:
        resp.read()
    assert cut.value.partial.count(b"data: ") == 2
    assert up.wait_exit(timeout=5) == 1


def test_close_delimited_streams_end_with_the_connection(launch: Any) -> None:
    up = launch("--close-delimited", "--tokens", "2")
    status, headers, raw = request(up, "POST", "/v1/chat/completions", {"stream": True, "messages": []})
    assert status == 200
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert headers["connection"] == "close"
    assert sse_events(raw)[-1] == "[DONE]"


def test_length_delimited_streams_tell_their_length(launch: Any) -> None:
    up = launch("--length-delimited", "--tokens", "2")
    status, headers, raw = request(up, "POST", "/v1/chat/completions", {"stream": True, "messages": []})
    assert status == 200
    assert "transfer-encoding" not in headers and int(headers["content-length"]) == len(raw)
    assert headers["connection"] == "keep-alive"
    events = sse_events(raw)
    assert json.loads(events[0])["choices"][0]["delta"]["content"] == "tok0 " and events[-1] == "[DONE]"


def test_length_delimited_stream_cut_mid_stream_ends_short_of_its_length(launch: Any) -> None:
    up = launch("--length-delimited", "--exit-mid-stream", "2", "--tokens", "5")
    conn = http.client.HTTPConnection(up.host, up.port, timeout=5)
    conn.request("POST", "/v1/chat/completions", body=json.dumps({"stream": True, "messages": []}),
                 headers={"Content-Type": "application/json"})
    resp = conn.getresponse()
    assert resp.status == 200 and int(resp.getheader("Content-Length")) > 0
    with pytest.raises(http.client.IncompleteRead) as cut:
        resp.read()
    assert cut.value.partial.count(b"data: ") == 2
    assert up.wait_exit(timeout=5) == 1
