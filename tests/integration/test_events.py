"""``/api/events`` read as a client reads it, and cancelling in-flight requests through ``/api/inflight``."""

from __future__ import annotations

import json
import threading
import time

import pytest
import requests

from tests.helpers.events import EventsClient, FeedMessage
from tests.helpers.server import fake_cmd, wait_for
from tests.helpers.ws_client import Client

INITIAL = ["logData", "logData", "modelStatus", "metrics", "uiConfig", "profileChanged", "inflight"]


def config(tmp_path, models: dict[str, str]) -> str:
    lines = ["healthCheckTimeout: 15", "models:"]
    for name, flags in models.items():
        lines += [f"  {name}:", f"    cmd: {fake_cmd(name, tmp_path, flags)}"]
    return "\n".join(lines) + "\n"


def chat(model: str, stream: bool = False) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}], "stream": stream}


def seq(message: FeedMessage) -> int:
    return int(message.id.rpartition("-")[2])


def states_of(messages: list[FeedMessage], model: str) -> list[str]:
    """The model's state in each modelStatus message, repeats folded."""
    states: list[str] = []
    for m in messages:
        if m.type == "modelStatus":
            state = next(r["state"] for r in m.data if r["id"] == model)
            if not states or states[-1] != state:
                states.append(state)
    return states


def inflight_rows(client: EventsClient, model: str) -> list[dict]:
    return [m.data["request"] for m in client.of_type("inflight")
            if m.data["operation"] == "upsert" and m.data["request"]["model"] == model]


def test_a_client_sees_the_initial_payload_then_a_model_start_serve_and_stop_in_order(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path, {"A": "--tokens 3 --load-time 0.6"}))
    with EventsClient(server.url("/api/events")) as feed:
        feed.wait_for(lambda ms: len(ms) >= len(INITIAL), "the initial payload")
        assert [m.type for m in feed.messages[:len(INITIAL)]] == INITIAL
        status = feed.messages[2].data
        assert status == [{"id": "A", "name": "", "description": "", "state": "stopped", "unlisted": False,
                           "peerID": ""}]
        assert feed.messages[3].data == []  # no activity yet
        assert feed.messages[4].data == {"activity": {"session_id": ["X-Session-ID", "X-Litellm-Session-Id"]}}
        assert feed.messages[5].data == {"active": None}
        assert feed.messages[6].data == {"operation": "snapshot", "requests": [], "total": 0}

        r = requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=30,
                          headers={"Authorization": "Bearer secret-key", "X-Session-Id": "s-1"})
        assert r.status_code == 200
        assert requests.post(server.url("/api/models/unload"), timeout=30).status_code == 200
        feed.wait_for(lambda ms: states_of(ms, "A")[-1:] == ["stopped"] and len(states_of(ms, "A")) > 1,
                      "A to be reported stopped again")
        live = feed.messages[len(INITIAL):]
        assert states_of(feed.messages, "A") == ["stopped", "starting", "ready", "stopping", "stopped"]
        # Every live message has its own id, increasing.
        assert [seq(m) for m in live] == sorted({seq(m) for m in live})

        # The request in flight (it waits for A to load): shown while it waited, upserted when its
        # answer's headers came, then removed.
        rows = inflight_rows(feed, "A")
        assert rows[0]["req_path"] == "/v1/chat/completions" and rows[0]["method"] == "POST"
        assert rows[0]["req_headers"]["Authorization"] == "[REDACTED]"
        assert rows[0]["req_headers"]["X-Session-Id"] == "s-1"
        assert rows[0]["resp_headers"] == {} and rows[-1]["resp_headers"]["Content-Type"].startswith(
            "application/json")
        removed = [m for m in feed.of_type("inflight") if m.data["operation"] == "remove"]
        assert [m.data["id"] for m in removed] == [rows[0]["id"]]
        upserts = [m for m in feed.of_type("inflight") if m.data["operation"] == "upsert"]
        assert seq(upserts[-1]) < seq(removed[0])

        # Its log lines: the upstream's own output and the proxy's access line.
        feed.wait_for(lambda ms: any(m.type == "logData" and m.data["source"] == "proxy"
                                     and "A: POST /v1/chat/completions 200" in m.data["data"] for m in ms),
                      "the access line as logData")
        assert any(m.data["source"] == "upstream" and m.data["data"] for m in live if m.type == "logData")
        # Its activity record, announced by id once stored: the REST API has it.
        feed.wait_for(lambda ms: any(m.type == "activity" for m in ms), "the activity message")
        (activity,) = feed.of_type("activity")
        page = requests.get(server.url("/api/metrics/activity"), timeout=5).json()
        assert [(r["id"], r["model"], r["req_path"]) for r in page["data"]] == [
            (activity.data["id"], "A", "/v1/chat/completions")]
        assert seq(removed[0]) < seq(activity)


def test_a_client_reconnecting_with_its_last_event_id_gets_only_what_it_missed(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path, {"A": "--tokens 3"}))
    with EventsClient(server.url("/api/events")) as first:
        first.wait_for(lambda ms: len(ms) >= len(INITIAL), "the initial payload")
        seen = first.last_id
    # While nobody listens: A starts, serves and is unloaded.
    assert requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=30).status_code == 200
    assert requests.post(server.url("/api/models/unload"), timeout=30).status_code == 200
    with EventsClient(server.url("/api/events"), last_event_id=seen) as again:
        again.wait_for(lambda ms: states_of(ms, "A")[-1:] == ["stopped"], "the missed messages")
        types = [m.type for m in again.messages]
        assert "uiConfig" not in types, "a replay, not the initial payload again"
        assert states_of(again.messages, "A") == ["starting", "ready", "stopping", "stopped"]
        assert seq(again.messages[0]) == seq_of(seen) + 1
    # An id from another server life (or too old to replay) gets a full resync.
    with EventsClient(server.url("/api/events"), last_event_id="0-12") as stranger:
        stranger.wait_for(lambda ms: len(ms) >= len(INITIAL), "the initial payload")
        assert [m.type for m in stranger.messages[:len(INITIAL)]] == INITIAL


def seq_of(event_id: str) -> int:
    return int(event_id.rpartition("-")[2])


def test_the_same_feed_over_a_websocket(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path, {"A": "--tokens 3"}))
    ws = Client.connect(server.url("/api/events/ws").replace("http://", "ws://"))
    try:
        frames = [json.loads(ws.receive(timeout=10)) for _ in INITIAL]
        assert [f["type"] for f in frames] == INITIAL
        assert frames[2]["data"][0]["id"] == "A"  # data is the document itself here, not text
        assert requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=30).status_code == 200
        live = []
        deadline = time.monotonic() + 10
        while not any(f["type"] == "activity" for f in live):
            assert time.monotonic() < deadline, live
            frame = ws.receive(timeout=1)
            if frame is not None:
                live.append(json.loads(frame))
        assert seq_of(live[-1]["id"]) > seq_of(live[0]["id"])
    finally:
        ws.close()


def test_cancelling_a_queued_request_takes_it_out_of_the_queue(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path, {"A": "--tokens 40 --token-delay 0.05", "B": "--tokens 2"}))
    with EventsClient(server.url("/api/events")) as feed, \
            requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True), stream=True,
                          timeout=30) as busy:
        chunks = busy.iter_content(None)
        next(chunks)  # A streams for 2 s; B must wait for it
        answer: dict = {}
        waiter = threading.Thread(target=lambda: answer.update(
            r=requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=30)))
        waiter.start()
        feed.wait_for(lambda ms: inflight_rows(feed, "B"), "B's request in flight")
        wait_for(lambda: "B: queued" in server.log(), timeout=5, what="B to be queued")
        began = time.monotonic()
        r = requests.post(server.url(f"/api/inflight/{inflight_rows(feed, 'B')[0]['id']}/cancel"), timeout=5)
        assert (r.status_code, r.json()) == (200, {"msg": "ok"})
        waiter.join(timeout=5)
        assert time.monotonic() - began < 2, "the cancel waited for A's stream"
        assert answer["r"].status_code == 499
        assert answer["r"].json()["error"]["message"] == "request cancelled while waiting for model B"
        for _ in chunks:
            pass
    assert server.starts("B") == []
    wait_for(lambda: "B: POST /v1/chat/completions 499" in server.log(), timeout=5, what="B's access line")
    assert "; cancelled" in next(line for line in server.log().splitlines() if "B: POST" in line)
    assert requests.post(server.url("/api/inflight/999/cancel"), timeout=5).status_code == 404


def test_cancelling_a_streaming_request_cuts_it_and_frees_its_model(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path, {"A": "--tokens 400 --token-delay 0.05", "B": "--tokens 2"}))
    with EventsClient(server.url("/api/events")) as feed:
        r = requests.post(server.url("/v1/chat/completions"), json=chat("A", stream=True), stream=True,
                          timeout=30)
        chunks = r.iter_content(None)
        next(chunks)
        feed.wait_for(lambda ms: inflight_rows(feed, "A"), "A's request in flight")
        request_id = inflight_rows(feed, "A")[0]["id"]
        # Progress: the row's byte count moves while the stream flows.
        feed.wait_for(lambda ms: any(row["resp_bytes"] > 0 for row in inflight_rows(feed, "A")),
                      "a progress upsert")
        assert requests.post(server.url(f"/api/inflight/{request_id}/cancel"), timeout=5).status_code == 200
        began = time.monotonic()
        with pytest.raises(requests.exceptions.ChunkedEncodingError):  # cut, so it reads as cut
            for _ in chunks:  # the stream ends now, not after 20 s
                assert time.monotonic() - began < 3
        r.close()
        feed.wait_for(lambda ms: any(m.type == "inflight" and m.data["operation"] == "remove"
                                     and m.data["id"] == request_id for m in ms), "the row removed")
    # The lease was released: B evicts A at once.
    began = time.monotonic()
    assert requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=30).status_code == 200
    assert time.monotonic() - began < 3
    line = next(line for line in server.log().splitlines() if "A: POST /v1/chat/completions 200" in line)
    assert line.endswith("; cancelled"), line


def test_cancelling_a_request_the_model_is_still_answering_ends_it_at_once(llama_swap, tmp_path):
    # A non-streamed answer sends nothing until it is whole: the cancel must cut the wait for it.
    server = llama_swap(config(tmp_path, {"A": "--tokens 2 --prompt-delay 20", "B": "--tokens 2"}))
    assert requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=30).status_code == 200
    with EventsClient(server.url("/api/events")) as feed:
        answer: dict = {}
        waiter = threading.Thread(target=lambda: answer.update(
            r=requests.post(server.url("/v1/chat/completions"), json=chat("A"), timeout=60)))
        waiter.start()
        feed.wait_for(lambda ms: inflight_rows(feed, "A"), "A's request in flight")
        wait_for(lambda: server.state_of("A") == "ready", timeout=10, what="A to answer (slowly)")
        began = time.monotonic()
        r = requests.post(server.url(f"/api/inflight/{inflight_rows(feed, 'A')[0]['id']}/cancel"), timeout=5)
        assert r.status_code == 200
        waiter.join(timeout=10)
        assert time.monotonic() - began < 3, "the cancel waited for the answer"
    assert answer["r"].status_code == 499
    assert answer["r"].json()["error"]["message"] == "request cancelled while model A was answering"
    # Its lease is back: B evicts A at once.
    began = time.monotonic()
    assert requests.post(server.url("/v1/chat/completions"), json=chat("B"), timeout=30).status_code == 200
    assert time.monotonic() - began < 5
