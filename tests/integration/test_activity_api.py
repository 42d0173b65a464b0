"""Activity records and captures against the real server and the simulated upstream.

The token counts a record shows are the ones the upstream reported (read
from the very answer the client got); a file store keeps them across a
restart; a capture never shows the client's API key.
"""

from __future__ import annotations

import base64
import json

import requests

from tests.helpers.server import fake_cmd, wait_for

KEY = "sk-activity-5e1d"
PROMPT = [{"role": "user", "content": "one two three four"}]


def config(tmp_path, extra: str = "") -> str:
    return f"""
healthCheckTimeout: 15
{extra}
models:
  llm:
    cmd: {fake_cmd("llm", tmp_path, "--tokens 5")}
"""


def activity(server, headers: dict | None = None, **params) -> dict:
    response = requests.get(server.url("/api/metrics/activity"), params=params, headers=headers, timeout=5)
    assert response.status_code == 200, response.text
    return response.json()


def records_when(server, count: int, headers: dict | None = None) -> list[dict]:
    """The records, oldest first, once there are ``count``."""
    page = wait_for(lambda: (p := activity(server, headers, order="asc")) and p["total"] >= count and p,
                    timeout=10, what=f"{count} activity records")
    return page["data"]


def sse_events(response: requests.Response) -> list[dict]:
    return [json.loads(line[5:]) for line in response.text.splitlines()
            if line.startswith("data:") and line[5:].strip() != "[DONE]"]


def test_records_carry_the_tokens_the_upstream_reported_streamed_or_not(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path))
    plain = requests.post(server.url("/v1/chat/completions"), timeout=30,
                          json={"model": "llm", "messages": PROMPT, "max_tokens": 7})
    streamed = requests.post(server.url("/v1/chat/completions"), timeout=30,
                             json={"model": "llm", "messages": PROMPT, "max_tokens": 9, "stream": True})
    anthropic = requests.post(server.url("/v1/messages"), timeout=30,
                              json={"model": "llm", "messages": PROMPT, "max_tokens": 11, "stream": True})
    assert plain.status_code == streamed.status_code == anthropic.status_code == 200

    first, second, third = records_when(server, 3)
    usage = plain.json()["usage"]
    assert (first["tokens"]["input_tokens"], first["tokens"]["output_tokens"]) == \
        (usage["prompt_tokens"], usage["completion_tokens"]) == (4, 7)
    assert first["tokens"]["tokens_per_second"] == plain.json()["timings"]["predicted_per_second"]
    assert first["load_ms"] > 0 and first["queue_ms"] >= first["load_ms"]  # the first request started llm
    assert first["req_path"] == "/v1/chat/completions" and first["resp_status_code"] == 200

    [stream_usage] = [e["usage"] for e in sse_events(streamed) if e.get("usage")]
    assert (second["tokens"]["input_tokens"], second["tokens"]["output_tokens"]) == \
        (stream_usage["prompt_tokens"], stream_usage["completion_tokens"]) == (4, 9)
    assert second["resp_content_type"].startswith("text/event-stream")
    assert second["load_ms"] == 0 and second["ttfb_ms"] is not None

    events = sse_events(anthropic)
    sent_input = next(e["message"]["usage"]["input_tokens"] for e in events if e["type"] == "message_start")
    sent_output = next(e["usage"]["output_tokens"] for e in events if e["type"] == "message_delta")
    assert (third["tokens"]["input_tokens"], third["tokens"]["output_tokens"]) == (sent_input, sent_output) \
        == (4, 11)
    assert third["has_capture"] is True

    stats = requests.get(server.url("/api/metrics/stats"), timeout=5).json()
    assert (stats["total_requests"], stats["total_output_tokens"]) == (3, 27)
    assert stats["gen_histogram"]["bins"] and "binSize" in stats["gen_histogram"]
    assert [e["id"] for e in requests.get(server.url("/api/metrics"), timeout=5).json()] == \
        [first["id"], second["id"], third["id"]]


def test_a_file_store_keeps_the_activity_across_a_restart(llama_swap, tmp_path):
    store = f"store:\n  path: {tmp_path / 'activity.db'}"
    server = llama_swap(config(tmp_path, store))
    requests.post(server.url("/v1/completions"), json={"model": "llm", "prompt": "a b", "max_tokens": 3},
                  timeout=30).raise_for_status()
    [before] = records_when(server, 1)
    server.stop()

    again = llama_swap(config(tmp_path, store))
    [after] = records_when(again, 1)
    assert after == {**before, "has_capture": False}  # captures live in memory only
    assert (after["tokens"]["input_tokens"], after["tokens"]["output_tokens"]) == (2, 3)
    requests.post(again.url("/v1/completions"), json={"model": "llm", "prompt": "c", "max_tokens": 1},
                  timeout=30).raise_for_status()
    assert [r["id"] for r in records_when(again, 2)] == [before["id"], before["id"] + 1]


def test_a_capture_shows_the_api_key_redacted_and_bad_ids_are_refused(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path, f"apiKeys: [{KEY}]"))
    auth = {"Authorization": f"Bearer {KEY}"}
    answer = requests.post(server.url("/v1/chat/completions"), headers={**auth, "X-Trace": "t-1"}, timeout=30,
                           json={"model": "llm", "messages": PROMPT})
    assert answer.status_code == 200, answer.text
    [entry] = records_when(server, 1, auth)
    assert entry["has_capture"] is True

    response = requests.get(server.url(f"/api/captures/{entry['id']}"), headers=auth, timeout=5)
    assert response.status_code == 200, response.text
    capture = response.json()
    assert KEY not in response.text
    assert capture["req_headers"]["Authorization"] == "[REDACTED]" and capture["req_headers"]["X-Trace"] == "t-1"
    assert json.loads(base64.b64decode(capture["req_body"]))["messages"] == PROMPT
    assert base64.b64decode(capture["resp_body"]) == answer.content
    assert capture["req_path"] == "/v1/chat/completions" and "Content-Encoding" not in capture["resp_headers"]

    bad = requests.get(server.url("/api/captures/abc"), headers=auth, timeout=5)
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"
    assert requests.get(server.url("/api/captures/987654"), headers=auth, timeout=5).status_code == 404
    assert requests.get(server.url(f"/api/captures/{entry['id']}"), timeout=5).status_code == 401
    for params in ({"limit": 0}, {"limit": 1000}, {"sort": "nope"}, {"order": "up"}, {"page": "x"},
                   {"min_id": 3, "max_id": 2}, {"start": "yesterday"},
                   {"start": "2026-12-02T00:00:00Z", "end": "2026-12-01T00:00:00Z"}):
        refused = requests.get(server.url("/api/metrics/activity"), params=params, headers=auth, timeout=5)
        assert refused.status_code == 400, params
        assert refused.json()["error"]["type"] == "invalid_request_error"
    for params in ({"sort": "s" * 5000}, {"status": "9" * 5000}, {"page": "x" * 5000}, {"start": "t" * 5000}):
        refused = requests.get(server.url("/api/metrics/activity"), params=params, headers=auth, timeout=5)
        assert refused.status_code == 400 and len(refused.json()["error"]["message"]) < 400, params  # echo capped
