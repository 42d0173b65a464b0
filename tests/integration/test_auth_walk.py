"""The auth walk: every route of the real app refuses a request without a key when ``apiKeys`` is set.

The routes are read from ``app.url_map`` of the app ``build_app`` builds
on the test's own config, so a route added later is walked too: if it
forgets the key check (or is added to ``app.auth.OPEN_PATHS`` without a
reason written down here), this test fails. Each rule's converters get a
sample value; every method of the rule is sent without a key (401
expected) and with one (anything but 401). ``OPTIONS`` is the CORS
preflight, answered before any key check because browsers never send
credentials with one (``app.auth``).

What stays open, and why (Go's llama-swap leaves the same open):
``/health`` and ``/wol-health`` for probes (Go's globalAuthPathSkips);
``/favicon.ico``; ``/`` and ``/upstream``, redirects to the UI; the
UI's static files (``/ui``, ``/ui/``, ``/ui/<file>``), so a browser can
load the page, which then gets the Basic prompt from the API it calls.

Then: a key, right or wrong, and a peer's key are never written to the
server's log or shown by ``/api/captures/<id>``.
"""

from __future__ import annotations

import base64
import textwrap

import pytest
import requests
from werkzeug.routing import Rule

from app.config import load_config_text
from app.runtime.factory import EXTENSION, build_app
from tests.helpers.raw_http import raw_status
from tests.helpers.server import fake_cmd, wait_for
from tests.helpers.upstream import free_port

KEY, WRONG_KEY, PEER_KEY = "sk-walk-3b9d07", "sk-guess-77aa10", "sk-peer-e51c2f"
OPEN_RULES = frozenset({"/health", "/wol-health", "/favicon.ico", "/", "/upstream", "/ui", "/ui/",
                        "/ui/<path:name>"})
# Sample values for the rules' variables: names that exist nowhere, so no model starts.
SAMPLES = {"path": "nothing-here/x", "default": "nothing-here"}
WEBSOCKET_HEADERS = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
                     "Sec-WebSocket-Key": base64.b64encode(b"0123456789abcdef").decode()}


def config_text(tmp_path) -> str:
    return textwrap.dedent(f"""
        healthCheckTimeout: 15
        apiKeys: [{KEY}]
        models:
          llama:
            cmd: {fake_cmd("llama", tmp_path, "--tokens 2")}
        peers:
          far:
            proxy: http://127.0.0.1:{free_port()}
            apiKey: {PEER_KEY}
            models: [distant]
        """)


def url_map_of(text: str) -> list[Rule]:
    """The rules of the app ``build_app`` builds on ``text`` (built here, closed again at once)."""
    app = build_app(config=load_config_text(text), watch=False)
    try:
        return list(app.url_map.iter_rules())
    finally:
        app.extensions[EXTENSION].observatory.close()
        app.extensions[EXTENSION].close()


def concrete(rule: Rule) -> str:
    """``rule``'s path with each variable filled by a sample value of its converter."""
    path = rule.rule
    for name, converter in rule._converters.items():  # werkzeug keeps them nowhere public
        kind = "path" if type(converter).__name__ == "PathConverter" else "default"
        path = path.replace(f"<{converter_spec(rule, name)}>", SAMPLES[kind])
    return path


def converter_spec(rule: Rule, name: str) -> str:
    start = rule.rule.index(f"{name}>")
    return rule.rule[rule.rule.rindex("<", 0, start) + 1:start] + name


@pytest.fixture
def secured(llama_swap, tmp_path):
    text = config_text(tmp_path)
    return llama_swap(text), url_map_of(text)


def test_every_route_but_the_open_ones_refuses_a_request_without_a_key(secured):
    server, rules = secured
    assert {rule.rule for rule in rules} >= OPEN_RULES  # the open list names real routes
    walked = 0
    for rule in rules:
        if rule.rule in OPEN_RULES:
            continue
        path = concrete(rule)
        headers = WEBSOCKET_HEADERS if rule.websocket else {}
        for method in sorted(rule.methods - {"OPTIONS"}):
            for wrong in ({}, {"Authorization": f"Bearer {WRONG_KEY}"}):
                status = raw_status(server.port, method, path, {**headers, **wrong})
                assert status == 401, f"{method} {path} ({rule.rule}) without a valid key: {status}"
            status = raw_status(server.port, method, path, {**headers, "Authorization": f"Bearer {KEY}"})
            assert status != 401, f"{method} {path} ({rule.rule}) refused its key"
            walked += 1
    assert walked > 60
    assert server.starts("llama") == []  # the samples name nothing: the walk started no model


def test_the_open_routes_need_no_key(secured):
    server, _ = secured
    for path in ("/health", "/wol-health", "/favicon.ico", "/", "/upstream", "/ui", "/ui/", "/ui/app.js"):
        assert raw_status(server.port, "GET", path) != 401, path


def test_keys_appear_in_neither_the_log_nor_a_capture(secured):
    server, _ = secured
    auth = {"Authorization": f"Bearer {KEY}"}
    chat = {"model": "llama", "messages": [{"role": "user", "content": "hi"}]}
    basic = "Basic " + base64.b64encode(f"me:{KEY}".encode()).decode()
    for headers in (auth, {"x-api-key": KEY}, {"Authorization": basic}):
        answer = requests.post(server.url("/v1/chat/completions"), json=chat, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
    peer = requests.post(server.url("/v1/chat/completions"), json={**chat, "model": "far/distant"}, headers=auth,
                         timeout=30)
    assert peer.status_code == 502  # the peer is down: the key it would have carried is still nobody's business
    assert requests.get(server.url("/running"), headers={"Authorization": f"Bearer {WRONG_KEY}"},
                        timeout=5).status_code == 401

    def records():
        page = requests.get(server.url("/api/metrics/activity"), params={"order": "asc"}, headers=auth,
                            timeout=5).json()
        return page["total"] >= 3 and page["data"]

    captured = 0
    for record in wait_for(records, timeout=10, what="the activity records"):
        if not record.get("has_capture"):
            continue
        capture = requests.get(server.url(f"/api/captures/{record['id']}"), headers=auth, timeout=5)
        assert capture.status_code == 200, capture.text
        for secret in (KEY, PEER_KEY, base64.b64encode(f"me:{KEY}".encode()).decode()):
            assert secret not in capture.text
        captured += 1
    assert captured >= 3
    log = server.wait_for_log("invalid or missing API key", "llama")  # the log did record these requests
    for secret in (KEY, WRONG_KEY, PEER_KEY):
        assert secret not in log
