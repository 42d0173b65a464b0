"""Profiles (``/api/profiles``, pins) and selectors (warm, pin, spillover) through the real server.

One server for the module. The simulated upstreams answer with their own
name as ``model`` and echo the request as ``received``, so each test sees
which model served it and what name reached it.
"""

from __future__ import annotations

from typing import Any

import pytest
import requests

from tests.helpers.server import LlamaSwapServer, fake_cmd, module_server, wait_for


def config_text(workdir) -> str:
    def cmd(model: str, flags: str = "") -> str:
        return fake_cmd(model, workdir, f"--echo-request --tokens 2 {flags}")

    return f"""
healthCheckTimeout: 15
models:
  a:
    cmd: {cmd("a")}
  b:
    cmd: {cmd("b")}
    filters:
      setParamsByID:
        "b:high": {{reasoning_effort: high}}
  s1:
    cmd: {cmd("s1", "--token-delay 0.05")}
  s2:
    cmd: {cmd("s2", "--token-delay 0.05")}
profiles:
  coding:
    description: code work
    pins:
      llm: "b:high"
      vision: ~
      picked: warm-ab
  writing:
    pins:
      llm: a
selectors:
  warm-ab:
    strategy: warm
    targets: [a, b]
    name: Whatever is warm
    description: a or b, whichever is loaded
    metadata: {{purpose: chat}}
  pin-b:
    strategy: pin
    targets: [b, a]
    unlisted: true
  spill:
    strategy: spillover
    targets: [s1, s2]
    settings: {{spillover: 1}}
routing:
  router:
    settings:
      groups:
        pair: {{swap: true, exclusive: false, members: [a, b]}}
        spills: {{swap: false, exclusive: false, members: [s1, s2]}}
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("profiles")
    yield from module_server(workdir, config_text(workdir))


@pytest.fixture
def fresh(server: LlamaSwapServer) -> LlamaSwapServer:
    """The module's server with no profile active and no model running."""
    activate(server, None)
    assert requests.post(server.url("/api/models/unload"), timeout=30).status_code == 200
    return server


def chat(server: LlamaSwapServer, model: str) -> requests.Response:
    return requests.post(server.url("/v1/chat/completions"), timeout=30,
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


def served_by(server: LlamaSwapServer, model: str) -> tuple[str, dict[str, Any]]:
    """Which upstream answered a chat for ``model``, and the body that reached it."""
    r = chat(server, model)
    assert r.status_code == 200, r.text
    return r.json()["model"], r.json()["received"]


def activate(server: LlamaSwapServer, profile: str | None) -> requests.Response:
    return requests.put(server.url("/api/profiles/active"), json={"profile": profile}, timeout=5)


def listed_ids(server: LlamaSwapServer) -> list[str]:
    return [m["id"] for m in requests.get(server.url("/v1/models"), timeout=5).json()["data"]]


# -- profiles ------------------------------------------------------------------

def test_profiles_are_listed_with_none_active_at_start(fresh: LlamaSwapServer) -> None:
    body = requests.get(fresh.url("/api/profiles"), timeout=5).json()
    assert body["active"] is None
    assert body["profiles"] == [
        {"id": "coding", "name": "coding", "description": "code work", "active": False,
         "pins": {"llm": "b:high", "vision": None, "picked": "warm-ab"}},
        {"id": "writing", "name": "writing", "description": "", "active": False, "pins": {"llm": "a"}},
    ]


def test_a_pin_redirects_its_name_only_while_its_profile_is_active(fresh: LlamaSwapServer) -> None:
    assert chat(fresh, "llm").status_code == 404, "no profile active: llm names nothing"

    r = activate(fresh, "coding")
    assert r.status_code == 200 and r.json()["active"] == "coding"
    model, received = served_by(fresh, "llm")
    assert model == "b"
    assert received["model"] == "b:high", "the upstream sees the pin's target as the name"
    assert received["reasoning_effort"] == "high", "the target's setParamsByID applies"

    assert activate(fresh, "writing").status_code == 200
    assert served_by(fresh, "llm")[0] == "a", "switching profiles takes effect on the next request"

    assert activate(fresh, None).json()["active"] is None
    assert chat(fresh, "llm").status_code == 404


def test_a_pin_to_nothing_disables_the_name(fresh: LlamaSwapServer) -> None:
    activate(fresh, "coding")
    r = chat(fresh, "vision")
    assert r.status_code == 404
    assert "disabled by the active profile coding" in r.json()["error"]["message"]
    assert "vision" not in listed_ids(fresh)


def test_the_active_profiles_pins_are_listed(fresh: LlamaSwapServer) -> None:
    assert "llm" not in listed_ids(fresh)
    activate(fresh, "coding")
    ids = listed_ids(fresh)
    assert "llm" in ids and "picked" in ids
    assert ids == sorted(ids)


def test_a_bad_profile_switch_is_refused_and_changes_nothing(fresh: LlamaSwapServer) -> None:
    activate(fresh, "writing")
    r = activate(fresh, "nope")
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    r = activate(fresh, "n" * 1_000_000)  # echoed at most 200 characters long
    assert r.status_code == 404 and r.json()["error"]["message"].startswith("profile " + "n" * 200 + "… not found")
    r = requests.put(fresh.url("/api/profiles/active"), data="not json", timeout=5)
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert requests.get(fresh.url("/api/profiles"), timeout=5).json()["active"] == "writing"


# -- selectors -------------------------------------------------------------------

def test_warm_cold_starts_the_first_target_then_prefers_what_is_loaded(fresh: LlamaSwapServer) -> None:
    assert served_by(fresh, "warm-ab")[0] == "a", "nothing loaded: the first target"
    assert served_by(fresh, "b")[0] == "b"  # swaps a out
    starts_of_a = len(fresh.starts("a"))
    model, received = served_by(fresh, "warm-ab")
    assert model == "b", "b is the one loaded now"
    assert received["model"] == "b"
    assert len(fresh.starts("a")) == starts_of_a, "no swap back to a"


def test_a_profile_pin_may_target_a_selector(fresh: LlamaSwapServer) -> None:
    served_by(fresh, "b")
    activate(fresh, "coding")
    assert served_by(fresh, "picked")[0] == "b"


def test_pin_always_uses_the_first_target_and_unlisted_selectors_are_hidden(fresh: LlamaSwapServer) -> None:
    served_by(fresh, "a")
    assert served_by(fresh, "pin-b")[0] == "b"
    ids = listed_ids(fresh)
    assert "pin-b" not in ids and "warm-ab" in ids


def test_a_listed_selector_carries_its_name_description_and_metadata(fresh: LlamaSwapServer) -> None:
    records = requests.get(fresh.url("/v1/models"), timeout=5).json()["data"]
    (record,) = [r for r in records if r["id"] == "warm-ab"]
    assert record["name"] == "Whatever is warm"
    assert record["description"] == "a or b, whichever is loaded"
    assert record["meta"]["llamaswap"]["purpose"] == "chat"
    assert record["meta"]["llamaswap"]["targets"] == ["a", "b"]


def test_spillover_starts_the_next_target_once_the_first_is_full(fresh: LlamaSwapServer) -> None:
    # Hold s1 with a streamed answer that is still being written.
    held = requests.post(fresh.url("/v1/chat/completions"), stream=True, timeout=30, json={
        "model": "spill", "stream": True, "max_tokens": 200,
        "messages": [{"role": "user", "content": "long"}]})
    try:
        assert held.status_code == 200
        # Keep the line iterator: dropping it closes the connection, a hang-up
        # the proxy notices (and frees s1 for).
        lines = held.iter_lines()
        first = next(line for line in lines if line.startswith(b"data: "))
        assert b'"model":"s1"' in first.replace(b" ", b"")
        assert served_by(fresh, "spill")[0] == "s2", "s1 holds its one reserved request"
    finally:
        held.close()
    wait_for(lambda: served_by(fresh, "spill")[0] == "s1", timeout=10,
             what="s1 to take spill traffic again once its request ended")


def test_a_profile_switch_sent_as_curl_sends_it_is_accepted(fresh: LlamaSwapServer) -> None:
    # curl -X PUT .../api/profiles/active -d '{"profile": "coding"}' sends a form content type
    r = requests.put(fresh.url("/api/profiles/active"), data='{"profile": "coding"}',
                     headers={"Content-Type": "application/x-www-form-urlencoded"}, timeout=5)
    assert r.status_code == 200 and r.json()["active"] == "coding"


def test_a_request_a_selector_routed_says_so_in_its_activity_record(fresh: LlamaSwapServer) -> None:
    assert chat(fresh, "pin-b").status_code == 200
    assert chat(fresh, "b").status_code == 200
    records = requests.get(fresh.url("/api/metrics/activity"), params={"limit": 2}, timeout=5).json()["data"]
    by_selector, direct = records[1], records[0]  # newest first
    assert (by_selector["model"], by_selector.get("metadata")) == ("b", {"selector": "pin-b"})
    assert direct["model"] == "b" and "metadata" not in direct
