"""The small HTTP edges, against the real server: CONNECT, a huge URL, Vary, a huge model name.

Each was found by a hostile client (issue 11): ``CONNECT`` answered 404
(and a 405 lost its ``Allow``), a 100 KB URL got a connection reset
instead of its 414, ``/v1/models`` echoed ``Origin`` without telling caches
that it varies on it, and a 1 MB unknown model name came back whole in the
error.
"""

from __future__ import annotations

import json

import pytest
import requests

from tests.helpers.raw_http import raw_request
from tests.helpers.server import fake_cmd

ORIGIN = "http://chat.example"


@pytest.fixture
def server(llama_swap, tmp_path):
    return llama_swap(f"""
healthCheckTimeout: 15
models:
  llama:
    cmd: {fake_cmd("llama", tmp_path, "--tokens 2")}
""")


def test_connect_is_405_naming_the_methods_the_path_allows(server):
    answer = raw_request(server.port, "CONNECT", "/v1/chat/completions")
    assert answer.status == 405
    assert set(answer.headers["allow"].split(", ")) == {"POST", "OPTIONS"}  # OPTIONS: a CORS preflight
    assert json.loads(answer.body)["error"]["code"] == "invalid_request"  # Go's code for a 4xx it has no name for
    tunnel = raw_request(server.port, "CONNECT", "example.com:443")  # authority form: no resource here
    assert tunnel.status == 405 and tunnel.headers["allow"] == ""
    assert requests.get(server.url("/health"), timeout=5).text == "OK"


def test_a_405_says_which_methods_are_allowed(server):
    answer = requests.delete(server.url("/v1/chat/completions"), timeout=5)
    assert answer.status_code == 405 and set(answer.headers["Allow"].split(", ")) == {"POST", "OPTIONS"}
    assert set(requests.put(server.url("/v1/models"), timeout=5).headers["Allow"].split(", ")) >= {"GET"}


@pytest.mark.parametrize("size", [9_000, 100_000])
def test_a_huge_url_is_a_414_not_a_reset(server, size):
    answer = raw_request(server.port, "GET", "/v1/models?q=" + "a" * size)
    assert answer.status == 414
    response = requests.get(server.url("/v1/models"), params={"q": "a" * size}, timeout=10)
    assert response.status_code == 414
    assert requests.get(server.url("/health"), timeout=5).text == "OK"


def test_the_model_listing_says_it_varies_on_origin(server):
    with_origin = requests.get(server.url("/v1/models"), headers={"Origin": ORIGIN}, timeout=5)
    assert with_origin.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Origin" in with_origin.headers["Vary"]
    without = requests.get(server.url("/v1/models"), timeout=5)
    assert "Access-Control-Allow-Origin" not in without.headers
    assert "Origin" in without.headers["Vary"]  # a cache must not hand this one to a browser either


def test_an_unknown_model_name_is_echoed_only_in_part(server):
    name = "x" * 1_000_000
    for path in ("/v1/chat/completions", "/v1/messages"):
        answer = requests.post(server.url(path), json={"model": name, "messages": []}, timeout=30)
        assert answer.status_code == 404
        assert len(answer.content) < 1000
        assert "x" * 200 + "…" in answer.json()["error"]["message"]
    ok = requests.post(server.url("/v1/chat/completions"), json={"model": "llama", "messages": []}, timeout=30)
    assert ok.status_code == 200
