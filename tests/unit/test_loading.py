"""Loading state's pieces without a server: the chunks, the words, the decision, and the stream's bookkeeping.

The stream is driven with a zero tick against a scripted fake router: each
tick asks the router for the queue position, and the script answers, grants
or fails the ticket at the tick it names. No sleeps, no sockets.
"""

from __future__ import annotations

import json
from typing import Callable

import pytest
from flask import Response

from app.config.model import ModelConfig
from app.observe.exchange import Exchange, Observers, Outcome
from app.relay.grants import GrantWait
from app.relay.loading import (
    DONE_EVENT, RULE, ChunkWriter, LoadingStream, Progress, closing_lines, describe_wait, error_event,
    opening_lines, serve, upstream_error_message, wants_loading_state,
)
from scheduler.errors import ClientGone, ConcurrencyLimited, StartFailed
from scheduler.router import Ticket
from scheduler.state import ProcessState

STARTING, READY, STOPPED, STOPPING = (ProcessState.STARTING, ProcessState.READY, ProcessState.STOPPED,
                                      ProcessState.STOPPING)


def events(raw: bytes) -> list[dict | str]:
    out: list[dict | str] = []
    for block in raw.decode().split("\n\n"):
        if block.startswith("data: "):
            data = block[6:]
            out.append(data if data == "[DONE]" else json.loads(data))
    return out


def reasoning(raw: bytes) -> str:
    return "".join(e["choices"][0]["delta"]["reasoning_content"] for e in events(raw)
                   if isinstance(e, dict) and "choices" in e and "reasoning_content" in e["choices"][0]["delta"])


# --------------------------------------------------------------------------- chunks and words


def test_chunks_are_complete_chat_completion_chunks_of_one_response():
    writer = ChunkWriter("qwen", chunk_id="chatcmpl-x", created=1700000000)
    first, second = (events(writer.reasoning(text))[0] for text in ("a\n", "."))
    assert first == {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1700000000, "model": "qwen",
                     "choices": [{"index": 0, "delta": {"role": "assistant", "reasoning_content": "a\n"},
                                  "finish_reason": None}]}
    assert second["choices"][0]["delta"] == {"reasoning_content": "."}  # the role only opens the stream
    assert second["id"] == first["id"] and second["created"] == first["created"]


def test_banner_lines_are_gos_so_clients_can_strip_them():
    assert opening_lines("qwen") == [RULE + "\n", "llama-swap loading model: qwen\n"]
    assert closing_lines(19.834) == ["\nDone! (19.83s)\n", RULE + "\n", " \n"]
    assert RULE == "━━━━━"


@pytest.mark.parametrize("state, position, expected", [
    (STOPPED, 3, "queued at position 3, waiting for running models to finish"),
    (STARTING, None, "starting qwen, waiting for it to become healthy"),
    (STOPPING, None, "waiting for qwen to finish stopping"),
    (READY, None, "qwen is ready, waiting for a free slot"),
    (STOPPED, None, "waiting for other models to stop"),
    (None, None, "waiting for other models to stop"),
])
def test_each_wait_is_described(state, position, expected):
    assert describe_wait("qwen", state, position) == expected


def test_progress_says_a_status_line_when_the_wait_changes_and_dots_otherwise():
    progress = Progress("qwen", remind_every=10)
    said = [progress.tick(0.75, STOPPED, 2), progress.tick(1.5, STOPPED, 2), progress.tick(2.25, STOPPED, 1),
            progress.tick(3.0, STARTING, None), progress.tick(3.75, STARTING, None),
            progress.tick(13.0, STARTING, None), progress.tick(13.75, STARTING, None)]
    assert said == [
        "\nqueued at position 2, waiting for running models to finish (0.8s)\n", ".",
        "\nqueued at position 1, waiting for running models to finish (2.2s)\n",
        "\nstarting qwen, waiting for it to become healthy (3.0s)\n", ".",
        "\nstarting qwen, waiting for it to become healthy (13.0s)\n",  # the reminder shows the time
        ".",
    ]


def test_error_event_is_the_openai_error_object_apps_errors_answer():
    (event,) = events(error_event(502, "model qwen failed to start"))
    assert event["error"] == {"message": "model qwen failed to start", "type": "server_error", "param": None,
                              "code": "bad_gateway"}
    assert events(error_event(429, "busy", "concurrency_limit"))[0]["error"]["code"] == "concurrency_limit"


@pytest.mark.parametrize("body, expected", [
    (b'{"error": {"code": 500, "message": "out of memory", "type": "server_error"}}', "out of memory"),
    (b'{"error": "context too long"}', "context too long"),
    (b"Internal Server Error", "upstream answered 500: Internal Server Error"),
    (b"", "upstream answered 500"),
])
def test_upstream_error_message_is_read_from_json_or_text(body, expected):
    assert upstream_error_message(500, body) == expected


# --------------------------------------------------------------------------- deciding


def model(flag: bool | None) -> ModelConfig:
    return ModelConfig(id="qwen", cmd=("x",), send_loading_state=flag)


STREAMED = {"model": "qwen", "stream": True}


@pytest.mark.parametrize("path, payload, flag, default, state, wanted", [
    ("/v1/chat/completions", STREAMED, None, True, STOPPED, True),
    ("/v/chat/completions", STREAMED, None, True, STARTING, True),
    ("/v1/chat/completions", STREAMED, None, True, READY, False),  # loaded: straight through
    ("/v1/chat/completions", STREAMED, None, False, STOPPED, False),  # off globally
    ("/v1/chat/completions", STREAMED, False, True, STOPPED, False),  # the model says no
    ("/v1/chat/completions", STREAMED, True, False, STOPPED, True),  # the model says yes
    ("/v1/chat/completions", {"model": "qwen"}, None, True, STOPPED, False),  # not streamed
    ("/v1/chat/completions", {"model": "qwen", "stream": "true"}, None, True, STOPPED, False),
    ("/v1/completions", STREAMED, None, True, STOPPED, False),  # only chat completions
    ("/v1/chat/completions", None, None, True, STOPPED, False),
])
def test_loading_state_is_wanted_only_for_a_streamed_chat_to_a_model_not_ready(path, payload, flag, default, state,
                                                                                wanted):
    assert wants_loading_state(path, payload, model(flag), default, state) is wanted


# --------------------------------------------------------------------------- the stream's bookkeeping


class FakeLease:
    model = "qwen"
    proxy_url = "http://upstream"

    def __init__(self) -> None:
        self.releases = 0

    def release(self) -> None:
        self.releases += 1


class ScriptedRouter:
    """Answers each tick's ``queue_position`` from a script; ``actions[n]`` runs at tick n."""

    def __init__(self, ticket: Ticket, actions: dict[int, Callable[[Ticket], None]] | None = None,
                 state: ProcessState = STARTING, position: int | None = None):
        self.ticket = ticket
        self.actions = actions or {}
        self.state = state
        self.position = position
        self.ticks = 0
        self.cancels = 0

    def submit(self, model: str, origin=None) -> Ticket:
        return self.ticket

    def cancel(self, ticket: Ticket) -> None:
        self.cancels += 1
        ticket.withdraw()

    def model_state(self, model: str) -> ProcessState:
        return self.state

    def queue_position(self, ticket: Ticket) -> int | None:
        self.ticks += 1
        action = self.actions.get(self.ticks)
        if action is not None:
            action(ticket)
        return self.position


UPSTREAM_SSE = b'data: {"choices":[{"index":0,"delta":{"content":"tok"}}]}\n\n' + DONE_EVENT


def upstream_sender(lease_seen: list, status: int = 200, body: bytes = UPSTREAM_SSE):
    """Stands in for ``app.relay.forward.forward``: the response owns the lease and releases it on close."""

    def send(lease: FakeLease) -> Response:
        lease_seen.append(lease)
        response = Response(iter([body]), status=status, direct_passthrough=True)
        response.call_on_close(lease.release)
        return response

    return send


def exchange() -> Exchange:
    return Observers().open("qwen", "POST", "/v1/chat/completions", began=0.0)


def make_stream(actions=None, *, send=None, **router_args) -> tuple[LoadingStream, ScriptedRouter, list]:
    ticket = Ticket(model="qwen")
    router = ScriptedRouter(ticket, actions, **router_args)
    seen: list = []
    stream = LoadingStream(GrantWait(router, "qwen", {}), exchange(), send or upstream_sender(seen), tick=0)
    return stream, router, seen


def test_progress_then_done_then_the_upstreams_bytes_and_the_lease_released_once():
    lease = FakeLease()
    stream, router, seen = make_stream({3: lambda t: t.grant(lease)})
    raw = b"".join(stream)
    stream.close()
    text = reasoning(raw)
    assert text.startswith(RULE + "\nllama-swap loading model: qwen\n\nstarting qwen, waiting for it")
    assert ".." in text and "\nDone! (" in text and text.endswith(RULE + "\n \n")
    assert raw.endswith(UPSTREAM_SSE)
    assert seen == [lease] and lease.releases == 1 and router.cancels == 0


def test_a_failed_load_ends_the_stream_with_an_error_event_and_done():
    stream, router, seen = make_stream({2: lambda t: t.fail(StartFailed("upstream exited with 1"))})
    raw = b"".join(stream)
    stream.close()
    *_, error, done = events(raw)
    assert "Unable to load model qwen after" in reasoning(raw) and "upstream exited with 1" in reasoning(raw)
    assert error["error"]["message"] == "upstream exited with 1" and error["error"]["type"] == "server_error"
    assert done == "[DONE]" and seen == []
    assert (stream._exchange.outcome, stream._exchange.status) == (Outcome.REFUSED, 502)


def test_an_upstream_error_after_the_headers_becomes_an_error_event_and_frees_the_lease():
    lease = FakeLease()
    seen: list = []
    send = upstream_sender(seen, status=500, body=b'{"error": {"message": "out of memory"}}')
    stream, router, _ = make_stream({1: lambda t: t.grant(lease)}, send=send)
    raw = b"".join(stream)
    stream.close()
    *_, error, done = events(raw)
    assert error["error"]["message"] == "out of memory" and done == "[DONE]"
    assert lease.releases == 1


def test_a_client_gone_while_waiting_cancels_the_ticket_once():
    stream, router, _ = make_stream(position=2)
    body = iter(stream)
    for _ in range(4):  # banner and two ticks
        next(body)
    body.close()  # what the WSGI server does when a write fails
    stream.close()
    stream.close()
    assert router.cancels == 1
    with pytest.raises(ClientGone):  # the ticket left the queue
        router.ticket.wait(0)
    assert (stream._exchange.outcome, stream._exchange.status) == (Outcome.REFUSED, 499)


def test_a_body_never_iterated_still_leaves_the_queue():
    stream, router, _ = make_stream()
    stream.close()
    assert router.cancels == 1


def test_a_grant_that_races_the_hang_up_is_released():
    lease = FakeLease()
    stream, router, seen = make_stream()
    router.ticket.grant(lease)  # granted, but the client is gone before the body runs
    stream.close()
    assert lease.releases == 1 and seen == []


def test_a_client_gone_while_the_upstream_streams_closes_it_once():
    lease = FakeLease()
    seen: list = []

    def send(lease: FakeLease) -> Response:
        seen.append(lease)
        response = Response(iter([b"data: a\n\n", b"data: b\n\n"]), direct_passthrough=True)
        response.call_on_close(lease.release)
        return response

    stream, router, _ = make_stream({1: lambda t: t.grant(lease)}, send=send)
    body = iter(stream)
    chunk = next(body)
    while chunk != b"data: a\n\n":
        chunk = next(body)
    body.close()
    stream.close()
    stream.close()
    assert lease.releases == 1 and router.cancels == 0


# --------------------------------------------------------------------------- the response


def test_the_wsgi_servers_close_reaches_the_stream_and_cancels_the_ticket():
    ticket = Ticket(model="qwen")
    router = ScriptedRouter(ticket)
    response = serve(router, "qwen", {}, exchange(), upstream_sender([]))
    assert response.status_code == 200 and response.mimetype == "text/event-stream"
    assert response.headers["X-Accel-Buffering"] == "no"
    body = response.get_app_iter({"REQUEST_METHOD": "POST"})  # what gunicorn iterates, then closes
    first = next(iter(body))
    assert reasoning(first) == RULE + "\n"
    body.close()  # e.g. a write to the gone client failed
    assert router.cancels == 1
    with pytest.raises(ClientGone):
        ticket.wait(0)


def test_a_refusal_at_once_is_raised_as_the_plain_error_it_is():
    ticket = Ticket(model="qwen")
    ticket.fail(ConcurrencyLimited("model 'qwen' is at its concurrency limit of 1"))
    with pytest.raises(ConcurrencyLimited):
        serve(ScriptedRouter(ticket), "qwen", {}, exchange(), upstream_sender([]))


def test_a_grant_at_once_is_sent_without_loading_state():
    ticket, lease, seen = Ticket(model="qwen"), FakeLease(), []
    ticket.grant(lease)
    response = serve(ScriptedRouter(ticket), "qwen", {}, exchange(), upstream_sender(seen))
    assert seen == [lease] and b"".join(response.response) == UPSTREAM_SSE
