"""What llama-swap's own web UI reads from the server, field by field (the browser check: tests/browser/test_go_ui.py).

Two builds read two dialects. The newest (``ui/``) reads ``/api/events``
(``modelStatus``, ``logData``, ``activity``, ``inflight`` operations,
``uiConfig``, ``profileChanged``) and pages everything else over REST. The
seed's (``ui-svelte/`` at 02e015fa) fills its Activity page only from the
feed's ``metrics`` messages (the records kept, then each new one) and its
"waiting" count from ``inflight``'s ``total``.
"""

from __future__ import annotations

import threading

import requests

from tests.helpers.events import EventsClient
from tests.helpers.server import fake_cmd, hang_up

# The fields each UI's TypeScript types read (ui/src/lib/types.ts, ui-svelte/src/lib/types.ts).
ACTIVITY_ENTRY = {"id": int, "timestamp": str, "model": str, "req_path": str, "resp_content_type": str,
                  "resp_status_code": int, "tokens": dict, "duration_ms": int, "has_capture": bool}
TOKENS = {"cache_tokens": int, "draft_tokens": int, "draft_acc_tokens": int, "input_tokens": int,
          "output_tokens": int, "prompt_per_second": float, "tokens_per_second": float}
HISTOGRAM = {"bins": list, "min": float, "max": float, "binSize": float, "p99": float, "p95": float, "p50": float}
SYS_STAT = {"timestamp": str, "cpu_util_per_core": list, "mem_total_mb": int, "mem_used_mb": int,
            "mem_free_mb": int, "swap_total_mb": int, "swap_used_mb": int, "load_avg_1": float,
            "load_avg_5": float, "load_avg_15": float, "net_io": list}


def config(tmp_path) -> str:
    return ("healthCheckTimeout: 15\nmodels:\n"
            f"  A:\n    cmd: {fake_cmd('A', tmp_path, '--tokens 3')}\n"
            f"  S:\n    cmd: {fake_cmd('S', tmp_path, '--tokens 40 --token-delay 0.02')}\n"
            "profiles:\n  coding:\n    description: code work\n    pins: {llm: A}\n")


def chat(server, model: str, stream: bool = False) -> requests.Response:
    return requests.post(server.url("/v1/chat/completions"), timeout=30,
                         json={"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})


def assert_shape(value: dict, fields: dict[str, type], what: str) -> None:
    missing = {name for name in fields if name not in value}
    assert not missing, f"{what} lacks {sorted(missing)}: {value}"
    wrong = {name: type(value[name]).__name__ for name, kind in fields.items()
             if not isinstance(value[name], kind) or (kind is int and isinstance(value[name], bool))}
    assert not wrong, f"{what}: wrong types {wrong}: {value}"


def metrics_ids(feed: EventsClient) -> list[int]:
    return [entry["id"] for message in feed.of_type("metrics") for entry in message.data]


def test_the_seeds_ui_gets_each_activity_record_once_in_the_feed_and_the_in_flight_total(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path))
    assert chat(server, "A").status_code == 200
    with EventsClient(server.url("/api/events")) as feed:
        feed.wait_for(lambda ms: len(ms) >= 7, "the initial payload")
        first = feed.messages[3]
        assert first.type == "metrics" and isinstance(first.data, list)  # after modelStatus, as the seed's Go sent it
        snapshot = feed.messages[6]
        assert (snapshot.type, snapshot.data["operation"], snapshot.data["total"]) == ("inflight", "snapshot", 0)
        # Record 1 comes once: in the first list, or live when the client connected before it was told.
        feed.wait_for(lambda ms: metrics_ids(feed) == [1], "record 1")

        streamed = chat_in_flight(server)
        feed.wait_for(lambda ms: any(m.type == "inflight" and m.data.get("total") == 1 for m in ms),
                      "the streamed request counted in flight")
        streamed.join(timeout=30)
        feed.wait_for(lambda ms: metrics_ids(feed) == [1, 2], "record 2, once")
        last_inflight = feed.of_type("inflight")[-1].data
        assert (last_inflight["operation"], last_inflight["total"]) == ("remove", 0)

        entries = [entry for message in feed.of_type("metrics") for entry in message.data]
        for entry in entries:
            assert_shape(entry, ACTIVITY_ENTRY, "an activity entry")
            assert_shape(entry["tokens"], TOKENS, "its tokens")
        assert [(e["model"], e["resp_status_code"], e["has_capture"]) for e in entries] == [
            ("A", 200, True), ("S", 200, True)]


def chat_in_flight(server) -> threading.Thread:
    def run():
        response = chat(server, "S", stream=True)
        assert response.status_code == 200
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_the_uis_load_button_loads_the_model_and_gets_its_page(llama_swap, tmp_path):
    """Both builds load a model with a GET of ``/upstream/<model>/`` and report an error unless it is 2xx."""
    server = llama_swap(config(tmp_path))
    response = requests.get(server.url("/upstream/A/?_=1765000000000"), timeout=30)
    assert response.status_code == 200 and response.headers["Content-Type"].startswith("text/html")
    assert server.state_of("A") == "ready"


def test_every_rest_answer_the_newest_ui_reads_has_its_fields(llama_swap, tmp_path):
    server = llama_swap(config(tmp_path))
    assert chat(server, "A").status_code == 200

    page = requests.get(server.url("/api/metrics/activity?model=A&page=1&limit=25&sort=id&order=desc"),
                        timeout=5).json()
    assert_shape(page, {"data": list, "page": int, "limit": int, "total": int, "total_pages": int}, "a page")
    [entry] = page["data"]
    assert_shape(entry, ACTIVITY_ENTRY, "an activity entry")
    assert_shape(entry["tokens"], TOKENS, "its tokens")

    stats = requests.get(server.url("/api/metrics/stats?model=A"), timeout=5).json()
    assert_shape(stats, {"total_requests": int, "total_input_tokens": int, "total_output_tokens": int,
                         "total_cache_tokens": int, "prompt_histogram": dict, "gen_histogram": dict}, "stats")
    assert_shape(stats["gen_histogram"], HISTOGRAM, "a histogram")

    capture = requests.get(server.url(f"/api/captures/{entry['id']}"), timeout=5).json()
    assert_shape(capture, {"id": int, "req_path": str, "req_headers": dict, "req_body": str, "resp_headers": dict,
                           "resp_body": str}, "a capture")

    performance = requests.get(server.url("/api/performance"), timeout=5).json()
    assert performance["enabled"] is True  # the sidebar shows Performance only then
    assert isinstance(performance["gpu_stats"], list)
    assert_shape(performance["sys_stats"][0], SYS_STAT, "a system sample")

    hardware = requests.get(server.url("/api/hardware"), timeout=5).json()
    assert_shape(hardware, {"schema_version": int, "captured_at": str, "capture": dict, "architecture": dict,
                            "operating_system": dict, "environment": dict, "cpu": dict, "memory": dict,
                            "accelerators": list}, "the hardware snapshot")
    assert_shape(hardware["memory"], {"capacity_bytes": int}, "its memory")

    version = requests.get(server.url("/api/version"), timeout=5).json()
    assert_shape(version, {"version": str, "commit": str, "build_date": str}, "the version")

    profiles = requests.get(server.url("/api/profiles"), timeout=5).json()
    assert profiles["active"] is None
    assert_shape(profiles["profiles"][0], {"id": str, "description": str, "pins": dict}, "a profile")
    switched = requests.put(server.url("/api/profiles/active"), json={"name": "coding"}, timeout=5)  # as the UI asks
    assert switched.status_code == 200 and switched.json()["active"] == "coding"

    log = requests.get(server.url("/logs/stream/A"), stream=True, timeout=10)  # a model page's Logs tab
    try:
        assert log.status_code == 200
        assert b"loading model 'A'" in next(log.iter_content(None))
    finally:
        hang_up(log)
