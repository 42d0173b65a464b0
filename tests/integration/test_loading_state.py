"""Loading state end to end: what a streaming chat client sees while its model loads.

One server for the module (global ``sendLoadingState: true``), each test with
models of its own: the ``all`` group never swaps, so one test's models do
not disturb another's; ``pair`` swaps, for the queue. A second, small server
has the global flag off. Loads are about a second; nothing sleeps to
synchronise: every wait is a read of the stream or a poll with a deadline.
"""

from __future__ import annotations

import http.client
import json
import threading
from typing import Iterator

import openai
import pytest
import requests

from tests.helpers.server import LlamaSwapServer, fake_cmd, module_server, wait_for
from tests.helpers.upstream import free_port_block

BANNER = "━━━━━\nllama-swap loading model: "
TOKENS = ["tok0 ", "tok1 ", "tok2 "]


def chat(model: str, stream: bool = True) -> dict:
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}


def sse_events(response: requests.Response) -> Iterator[dict | str]:
    """Each ``data:`` event of a streamed response as it arrives (``"[DONE]"`` as a string)."""
    for line in response.iter_lines(decode_unicode=True):
        if line.startswith("data: "):
            data = line[6:]
            yield data if data == "[DONE]" else json.loads(data)


def reasoning_of(events: list) -> str:
    return "".join(e["choices"][0]["delta"].get("reasoning_content", "") for e in events
                   if isinstance(e, dict) and e.get("choices"))


def content_of(events: list) -> list[str]:
    return [e["choices"][0]["delta"]["content"] for e in events
            if isinstance(e, dict) and e.get("choices") and e["choices"][0]["delta"].get("content")]


def stream_chat(server: LlamaSwapServer, model: str) -> tuple[requests.Response, list]:
    response = requests.post(server.url("/v1/chat/completions"), json=chat(model), timeout=30)
    return response, list(sse_events(response)) if response.ok else []


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("loading")

    def cmd(model: str, flags: str = "--load-time 0.3") -> str:
        return fake_cmd(model, workdir, f"--tokens 3 {flags}")

    yield from module_server(workdir, f"""
healthCheckTimeout: 15
startPort: {free_port_block(10)}
sendLoadingState: true
models:
  cold:
    cmd: {cmd("cold", "--load-time 1.8")}
  plain:
    cmd: {cmd("plain")}
  quiet:
    cmd: {cmd("quiet")}
    sendLoadingState: false
  dying:
    cmd: {cmd("dying", "--load-time 30 --exit-after-start 0.4")}
  single:
    cmd: {cmd("single", "--load-time 1")}
    concurrencyLimit: 1
  sdk:
    cmd: {cmd("sdk", "--load-time 1")}
  busy:
    cmd: {cmd("busy", "--load-time 0.2 --tokens 30 --token-delay 0.06")}
  waiting:
    cmd: {cmd("waiting")}
  leaver:
    cmd: {cmd("leaver")}
groups:
  all: {{swap: false, exclusive: false, members: [cold, plain, quiet, dying, single, sdk]}}
  pair: {{swap: true, exclusive: false, members: [busy, waiting, leaver]}}
""")


@pytest.fixture(scope="module")
def server_off(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("loading-off")
    yield from module_server(workdir, f"""
healthCheckTimeout: 15
startPort: {free_port_block(2)}
models:
  loud:
    cmd: {fake_cmd("loud", workdir, "--tokens 3 --load-time 0.3")}
    sendLoadingState: true
  other:
    cmd: {fake_cmd("other", workdir, "--tokens 3 --load-time 0.3")}
groups:
  all: {{swap: false, exclusive: false, members: [loud, other]}}
""")


def test_a_cold_model_streams_its_loading_state_then_the_answer_in_one_response(server):
    response, events = stream_chat(server, "cold")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/event-stream")
    thinking = reasoning_of(events)
    assert thinking.startswith(BANNER + "cold\n")
    assert "\nstarting cold, waiting for it to become healthy (" in thinking
    assert "." in thinking.split("healthy (", 1)[1].split("Done!")[0]  # a dot per tick
    assert "\nDone! (" in thinking and thinking.endswith("━━━━━\n \n")
    assert content_of(events) == TOKENS and events[-1] == "[DONE]"
    first_token = next(i for i, e in enumerate(events) if isinstance(e, dict) and e["choices"]
                       and e["choices"][0]["delta"].get("content"))
    assert all("reasoning_content" in e["choices"][0]["delta"] for e in events[:first_token])
    assert all(e["object"] == "chat.completion.chunk" and e["choices"][0]["index"] == 0
               and e["choices"][0]["finish_reason"] is None and e["id"] and e["created"] and e["model"] == "cold"
               for e in events[:first_token])

    response, events = stream_chat(server, "cold")  # loaded now: straight through
    assert reasoning_of(events) == "" and content_of(events) == TOKENS and events[-1] == "[DONE]"


def test_a_request_that_is_not_streamed_gets_no_loading_state(server):
    response = requests.post(server.url("/v1/chat/completions"), json=chat("plain", stream=False), timeout=30)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["choices"][0]["message"]["content"] == "".join(TOKENS)


def test_a_model_that_turns_it_off_overrides_the_global_on(server):
    response, events = stream_chat(server, "quiet")
    assert response.status_code == 200
    assert reasoning_of(events) == "" and content_of(events) == TOKENS


def test_a_model_that_turns_it_on_overrides_the_global_off(server_off):
    _, events = stream_chat(server_off, "loud")
    assert reasoning_of(events).startswith(BANNER + "loud\n") and content_of(events) == TOKENS
    _, events = stream_chat(server_off, "other")
    assert reasoning_of(events) == "" and content_of(events) == TOKENS


def test_a_failed_load_ends_the_stream_with_an_error_and_the_next_request_works(server):
    response, events = stream_chat(server, "dying")

    assert response.status_code == 200  # the headers went out before the load failed
    assert "Unable to load model dying after " in reasoning_of(events)
    error = events[-2]["error"]
    assert "dying" in error["message"] and error["type"] == "server_error" and error["code"] == "bad_gateway"
    assert events[-1] == "[DONE]"

    response = requests.post(server.url("/v1/chat/completions"), json=chat("dying", stream=False), timeout=30)
    assert response.status_code == 502  # no loading state, so a plain error
    response, events = stream_chat(server, "plain")
    assert response.status_code == 200 and content_of(events) == TOKENS


def test_a_refusal_at_once_keeps_its_http_status(server):
    with requests.post(server.url("/v1/chat/completions"), json=chat("single"), stream=True, timeout=30) as first:
        events = sse_events(first)
        assert reasoning_of([next(events)]).startswith("━━━━━")  # loading, and holding the only slot
        second = requests.post(server.url("/v1/chat/completions"), json=chat("single"), timeout=30)
        assert second.status_code == 429
        assert second.headers["Content-Type"].startswith("application/json")
        assert content_of(list(events)) == TOKENS


def test_a_queued_request_shows_its_place_in_the_queue(server):
    busy_events: list = []
    busy_serving = threading.Event()

    def ask_busy() -> None:
        with requests.post(server.url("/v1/chat/completions"), json=chat("busy"), stream=True, timeout=30) as r:
            for event in sse_events(r):
                busy_events.append(event)
                if content_of([event]):
                    busy_serving.set()

    busy = threading.Thread(target=ask_busy)
    busy.start()
    try:
        assert busy_serving.wait(15), "busy never started streaming"
        response, events = stream_chat(server, "waiting")
    finally:
        busy.join(30)

    thinking = reasoning_of(events)
    assert thinking.startswith(BANNER + "waiting\n")
    assert "\nqueued at position 1, waiting for running models to finish (" in thinking
    assert content_of(events) == TOKENS and events[-1] == "[DONE]"
    assert len(content_of(busy_events)) == 30 and busy_events[-1] == "[DONE]"  # not cut short by the swap


def test_a_client_that_hangs_up_while_queued_leaves_the_queue(server):
    busy_serving = threading.Event()
    busy_events: list = []

    def ask_busy() -> None:
        with requests.post(server.url("/v1/chat/completions"), json=chat("busy"), stream=True, timeout=30) as r:
            for event in sse_events(r):
                busy_events.append(event)
                if content_of([event]):
                    busy_serving.set()

    busy = threading.Thread(target=ask_busy)
    busy.start()
    try:
        assert busy_serving.wait(15), "busy never started streaming"
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("POST", "/v1/chat/completions", json.dumps(chat("leaver")),
                     {"Content-Type": "application/json"})
        response = conn.getresponse()
        assert response.status == 200
        received = b""
        while b"llama-swap loading model: leaver" not in received:  # the banner's second chunk
            chunk = response.read1(4096)
            assert chunk, f"the stream ended before the banner: {received!r}"
            received += chunk
        response.close()
        conn.close()  # gone while queued behind busy
        wait_for(lambda: "leaver: client went away while waiting" in server.log(), timeout=10,
                 what="the server to notice the hang-up")
    finally:
        busy.join(30)

    assert busy_events[-1] == "[DONE]"
    response = requests.post(server.url("/v1/chat/completions"), json={**chat("busy"), "max_tokens": 2}, timeout=30)
    events = list(sse_events(response))  # still loaded: the leaver never evicted it
    assert reasoning_of(events) == "" and content_of(events) == TOKENS[:2]
    assert server.starts("leaver") == []


def test_the_openai_sdk_streams_through_loading_state(server):
    with openai.OpenAI(base_url=server.url("/v1"), api_key="x", max_retries=0, timeout=30) as client:
        stream = client.chat.completions.create(model="sdk", messages=[{"role": "user", "content": "hi"}],
                                                stream=True)
        chunks = list(stream)
        thinking = "".join(getattr(c.choices[0].delta, "reasoning_content", None) or "" for c in chunks if c.choices)
        content = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
        assert thinking.startswith(BANNER + "sdk\n") and "Done! (" in thinking
        assert content == TOKENS

        with pytest.raises(openai.APIError, match="dying"):
            for _ in client.chat.completions.create(model="dying", stream=True,
                                                    messages=[{"role": "user", "content": "hi"}]):
                pass
