"""API keys and CORS as llama-swap does them: key extraction, comparison, and the Flask hooks."""

from __future__ import annotations

import base64
from types import SimpleNamespace

import pytest
from flask import Flask, jsonify, request

from app import auth
from app.config import Config
from app.relay.forward import upstream_headers

KEYS = ("sk-one", "sk-two")


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@pytest.fixture
def make_client():
    def make(keys: tuple[str, ...] = KEYS):
        app = Flask(__name__)
        app.extensions["llama_swap"] = SimpleNamespace(config=Config(api_keys=keys))
        auth.install(app)

        @app.post("/v1/chat/completions")
        def chat():  # answers what the proxy would forward upstream
            return jsonify(upstream_headers(request.environ))

        @app.get("/v1/models")
        def models():
            return jsonify({"object": "list", "data": []})

        @app.get("/health")
        def health():
            return "OK"

        @app.get("/ui/<path:name>")
        def ui(name):
            return name

        return app.test_client()

    return make


# -- extraction and comparison ------------------------------------------------

@pytest.mark.parametrize("headers, key", [
    ({"Authorization": "Bearer sk-one"}, b"sk-one"),
    ({"x-api-key": "sk-two"}, b"sk-two"),
    ({"Authorization": basic("anyone", "sk-one")}, b"sk-one"),
    ({"Authorization": basic("", "pass:with:colons")}, b"pass:with:colons"),
    ({"Authorization": "Basic !!!not-base64"}, b""),
    ({"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()}, b""),
    ({"Authorization": "bearer sk-one"}, b""),  # the scheme is case-sensitive in llama-swap
    ({}, b""),
])
def test_a_key_is_read_from_basic_bearer_or_x_api_key(headers, key):
    assert auth.extract_key(headers) == key


def test_basic_wins_over_bearer_and_bearer_over_x_api_key_like_llama_swap():
    # A wrong key in the preferred place is not rescued by a right one elsewhere.
    assert auth.extract_key({"Authorization": "Bearer wrong", "x-api-key": "sk-one"}) == b"wrong"
    assert auth.extract_key({"Authorization": "Bearer ", "x-api-key": "sk-one"}) == b"sk-one"


def test_a_key_is_valid_only_if_it_equals_a_configured_one():
    assert auth.key_is_valid(b"sk-one", KEYS)
    assert auth.key_is_valid(b"sk-two", KEYS)
    assert not auth.key_is_valid(b"sk-on", KEYS)
    assert not auth.key_is_valid(b"sk-one ", KEYS)
    assert not auth.key_is_valid(b"", KEYS)
    assert not auth.key_is_valid(b"", ("",))


def test_a_non_ascii_key_matches_its_utf8_bytes():
    key = "sk-clé"
    assert auth.key_is_valid(key.encode(), (key,))
    # As WSGI hands it over: the UTF-8 bytes decoded as latin-1.
    assert auth.extract_key({"x-api-key": key.encode().decode("latin-1")}) == key.encode()


def test_request_header_names_outside_the_token_grammar_are_dropped():
    assert auth.sanitize_request_headers("content-type, x-api-key") == "content-type, x-api-key"
    assert auth.sanitize_request_headers(" a , b\r\nInjected: 1 ,, c ") == "a, c"


@pytest.mark.parametrize("path, protected", [
    ("/v1/chat/completions", True), ("/v1/models", True), ("/running", True), ("/unload", True),
    ("/api/models/unload", True), ("/logs/stream", True), ("/upstream/llama/v1/models", True),
    ("/sdapi/v1/txt2img", True), ("/props", True), ("/no/such/route", True),
    ("/health", False), ("/", False), ("/ui", False), ("/ui/models", False),
    ("/favicon.ico", False), ("/metrics", True), ("/upstream", False),
])
def test_which_routes_need_a_key(path, protected):
    assert auth.needs_key(path) is protected


# -- the hooks ----------------------------------------------------------------

def test_no_keys_configured_means_everything_is_open(make_client):
    client = make_client(keys=())
    r = client.post("/v1/chat/completions", headers={"Authorization": "Bearer whatever"})
    assert r.status_code == 200
    assert r.json["Authorization"] == "Bearer whatever"  # not ours to strip


def test_a_missing_or_wrong_key_is_an_openai_401_with_a_basic_challenge(make_client):
    client = make_client()
    for headers in ({}, {"Authorization": "Bearer sk-three"}, {"x-api-key": "nope"}):
        r = client.post("/v1/chat/completions", headers=headers)
        assert r.status_code == 401
        assert r.headers["WWW-Authenticate"] == 'Basic realm="llama-swap"'
        assert r.json["error"] == {"message": "unauthorized: invalid or missing API key",
                                   "type": "authentication_error", "param": None, "code": "unauthorized"}


def test_an_accepted_key_is_not_forwarded_upstream(make_client):
    client = make_client()
    for headers in ({"Authorization": "Bearer sk-one"}, {"x-api-key": "sk-two"},
                    {"Authorization": basic("me", "sk-one")}):
        r = client.post("/v1/chat/completions", headers={**headers, "X-Other": "kept"})
        assert r.status_code == 200
        forwarded = {name.lower() for name in r.json}
        assert "authorization" not in forwarded and "x-api-key" not in forwarded
        assert r.json["X-Other"] == "kept"


def test_open_routes_need_no_key(make_client):
    client = make_client()
    assert client.get("/health").status_code == 200
    assert client.get("/ui/index.html").status_code == 200


def test_a_preflight_is_answered_without_a_key(make_client):
    client = make_client()
    r = client.options("/v1/chat/completions", headers={
        "Origin": "http://app.example", "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type, authorization"})
    assert r.status_code == 204
    assert r.data == b""
    assert r.headers["Access-Control-Allow-Origin"] == "*"
    assert r.headers["Access-Control-Allow-Methods"] == "GET, POST, PUT, PATCH, DELETE, OPTIONS"
    assert r.headers["Access-Control-Allow-Headers"] == "content-type, authorization"
    assert r.headers["Access-Control-Max-Age"] == "86400"


def test_a_preflight_without_requested_headers_gets_the_default_list(make_client):
    r = make_client().options("/anything/at/all")
    assert r.status_code == 204
    assert r.headers["Access-Control-Allow-Headers"] == "Content-Type, Authorization, Accept, X-Requested-With"


def test_the_model_listing_echoes_the_origin_and_other_responses_do_not(make_client):
    client = make_client()
    origin = {"Origin": "http://app.example"}
    listing = client.get("/v1/models", headers={**origin, "x-api-key": "sk-one"})
    assert listing.headers["Access-Control-Allow-Origin"] == "http://app.example"
    assert "Access-Control-Allow-Origin" not in client.get("/v1/models", headers={"x-api-key": "sk-one"}).headers
    assert "Access-Control-Allow-Origin" not in client.get("/v1/models", headers=origin).headers  # the 401
    assert "Access-Control-Allow-Origin" not in client.get("/health", headers=origin).headers
