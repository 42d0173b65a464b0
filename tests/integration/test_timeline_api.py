"""``/api/timeline`` and the feed's ``timeline`` messages: why a request waited, as a user would look it up."""

from __future__ import annotations

import threading

import requests

from tests.helpers.events import EventsClient
from tests.helpers.server import fake_cmd, wait_for


def chat(server, model: str) -> requests.Response:
    return requests.post(server.url("/v1/chat/completions"), timeout=30,
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def test_a_swap_is_on_the_timeline_with_the_request_that_caused_it_and_the_queue_behind_it(llama_swap, tmp_path):
    server = llama_swap("healthCheckTimeout: 15\nmodels:\n"
                        f"  alpha:\n    cmd: {fake_cmd('alpha', tmp_path, '--tokens 2')}\n"
                        f"  beta:\n    cmd: {fake_cmd('beta', tmp_path, '--tokens 2 --load-time 1.0')}\n")
    with EventsClient(server.url("/api/events")) as feed:
        assert chat(server, "alpha").status_code == 200
        # Two requests for beta while it loads (1 s): both wait, the first one caused the swap.
        answers: list[int] = []
        waiters = [threading.Thread(target=lambda: answers.append(chat(server, "beta").status_code))
                   for _ in range(2)]
        for waiter in waiters:
            waiter.start()
        for waiter in waiters:
            waiter.join(30)
        assert answers == [200, 200]
        feed.wait_for(lambda ms: any(m.data["kind"] == "swap" and m.data["entry"]["model"] == "beta"
                                     and m.data["entry"]["ended"] for m in ms if m.type == "timeline"),
                      "the feed to tell beta's swap ended")

    timeline = requests.get(server.url("/api/timeline"), timeout=10).json()
    first, second = timeline["swaps"]
    assert (first["model"], first["evict"], first["error"]) == ("alpha", [], None)
    assert (second["model"], second["evict"], second["error"]) == ("beta", ["alpha"], None)
    assert second["seconds"] >= 1.0 and second["ended"] > second["began"]
    cause = second["cause"]
    assert (cause["by"], cause["method"], cause["path"], cause["client"]) == (
        "request", "POST", "/v1/chat/completions", "127.0.0.1")
    assert int(cause["id"]) > int(first["cause"]["id"])  # in-flight ids: the later request caused it

    lanes: dict[str, list[str]] = {}
    for state in timeline["states"]:
        lanes.setdefault(state["model"], []).append(state["state"])
    assert lanes["alpha"] == ["starting", "ready", "stopping", "stopped"]
    assert lanes["beta"] == ["starting", "ready"]
    assert max(point["models"].get("beta", 0) for point in timeline["queue"]) == 2  # both waited for the load
    wait_for(lambda: requests.get(server.url("/api/timeline"), timeout=10).json()["queue"][-1]["waiting"] == 0,
             timeout=5, what="the queue depth to fall back to 0")
