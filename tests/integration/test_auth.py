"""API keys and CORS against the real server, as a curl user, an SDK and a browser see them."""

from __future__ import annotations

import base64

import pytest
import requests

from tests.helpers.recorder import command as recorder_command, read_records
from tests.helpers.server import fake_cmd

KEYS = ("sk-one-7f3a9c", "sk-two-b81e42")
ORIGIN = "http://chat.example"

def config_for(tmp_path, *, keys: tuple[str, ...] = KEYS) -> str:
    key_lines = "".join(f"\n  - {key}" for key in keys)
    return f"""
healthCheckTimeout: 15
{"apiKeys:" + key_lines if keys else ""}
models:
  llama:
    cmd: {fake_cmd("llama", tmp_path, "--tokens 3")}
  recorder:
    cmd: {recorder_command("${PORT}", tmp_path / "recorded.jsonl")}
"""


def chat(model: str = "llama") -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def assert_unauthorized(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["WWW-Authenticate"] == 'Basic realm="llama-swap"'
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json()["error"] == {
        "message": "unauthorized: invalid or missing API key", "type": "authentication_error",
        "param": None, "code": "unauthorized"}


@pytest.fixture
def secured(llama_swap, tmp_path):
    return llama_swap(config_for(tmp_path))


def test_protected_routes_answer_401_without_a_key_or_with_a_wrong_one(secured):
    for wrong in ({}, bearer("sk-three"), {"x-api-key": "sk-one"}, bearer(KEYS[0] + "x")):
        assert_unauthorized(requests.post(secured.url("/v1/chat/completions"), json=chat(),
                                          headers=wrong, timeout=5))
        assert_unauthorized(requests.get(secured.url("/v1/models"), headers=wrong, timeout=5))
        assert_unauthorized(requests.get(secured.url("/running"), headers=wrong, timeout=5))
        assert_unauthorized(requests.post(secured.url("/api/models/unload"), headers=wrong, timeout=5))
        assert_unauthorized(requests.get(secured.url("/unload"), headers=wrong, timeout=5))
    assert secured.starts("llama") == []  # a rejected request never reaches the scheduler


def test_a_key_is_accepted_as_bearer_x_api_key_or_basic_password(secured):
    r = requests.post(secured.url("/v1/chat/completions"), json=chat(), headers=bearer(KEYS[1]), timeout=30)
    assert r.status_code == 200 and r.json()["model"] == "llama"
    r = requests.get(secured.url("/v1/models"), headers={"x-api-key": KEYS[0]}, timeout=5)
    assert r.status_code == 200 and [m["id"] for m in r.json()["data"]] == ["llama", "recorder"]
    r = requests.get(secured.url("/running"), auth=("anyone", KEYS[1]), timeout=5)
    assert r.status_code == 200 and [m["model"] for m in r.json()["running"]] == ["llama"]
    r = requests.post(secured.url("/api/models/unload"), headers=bearer(KEYS[0]), timeout=30)
    assert r.status_code == 200


def test_health_the_root_and_the_ui_need_no_key(secured):
    assert requests.get(secured.url("/health"), timeout=5).text == "OK"
    root = requests.get(secured.url("/"), allow_redirects=False, timeout=5)
    assert root.status_code == 302 and root.headers["Location"] == "ui/"
    assert requests.get(secured.url("/ui"), timeout=5).status_code == 200


def test_a_cors_preflight_is_answered_without_a_key(secured):
    r = requests.options(secured.url("/v1/chat/completions"), timeout=5, headers={
        "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,authorization,x-stainless-os"})
    assert r.status_code == 204
    assert r.content == b""
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    assert r.headers["Access-Control-Allow-Headers"] == "content-type, authorization, x-stainless-os"
    assert r.headers["Access-Control-Max-Age"] == "86400"
    assert "WWW-Authenticate" not in r.headers


def test_the_model_listing_echoes_the_browsers_origin(secured):
    r = requests.get(secured.url("/v1/models"), headers={"Origin": ORIGIN, **bearer(KEYS[0])}, timeout=5)
    assert r.status_code == 200
    assert r.headers["Access-Control-Allow-Origin"] == ORIGIN
    plain = requests.get(secured.url("/v1/models"), headers=bearer(KEYS[0]), timeout=5)
    assert "Access-Control-Allow-Origin" not in plain.headers


def test_an_accepted_key_is_neither_forwarded_upstream_nor_logged(secured, tmp_path):
    for headers in (bearer(KEYS[0]), {"x-api-key": KEYS[1]},
                    {"Authorization": "Basic " + base64.b64encode(f"me:{KEYS[0]}".encode()).decode()}):
        r = requests.post(secured.url("/v1/chat/completions"), json=chat("recorder"),
                          headers={**headers, "X-Trace": "kept"}, timeout=30)
        assert r.status_code == 200, r.text
    assert_unauthorized(requests.get(secured.url("/running"), headers=bearer("sk-wrong-guess"), timeout=5))
    recorded = read_records(tmp_path / "recorded.jsonl")
    assert len(recorded) == 3
    for headers in (record["headers"] for record in recorded):
        names = {name.lower() for name in headers}
        assert "authorization" not in names and "x-api-key" not in names
        assert headers["X-Trace"] == "kept"
    log = secured.wait_for_log("invalid or missing API key")  # the rejection is logged ...
    for secret in (*KEYS, "sk-wrong-guess"):
        assert secret not in log  # ... but no key, right or wrong, ever is


def test_without_api_keys_everything_is_open_and_headers_pass_through(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path, keys=()))
    assert requests.get(server.url("/v1/models"), timeout=5).status_code == 200
    assert requests.get(server.url("/running"), timeout=5).status_code == 200
    r = requests.post(server.url("/v1/chat/completions"), json=chat("recorder"),
                      headers=bearer("sk-for-the-upstream"), timeout=30)
    assert r.status_code == 200
    (recorded,) = read_records(tmp_path / "recorded.jsonl")  # written before the answer was sent
    assert recorded["headers"]["Authorization"] == "Bearer sk-for-the-upstream"
