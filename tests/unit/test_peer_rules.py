"""Peers, the pure rules: which names reach a peer, and what the peer is sent (``app.naming.peers``, ``app.relay.peer``)."""

from __future__ import annotations

import io
import json
import textwrap

import pytest

from app.config import load_config_text
from app.naming.listing import model_records
from app.naming.peers import lookup
from app.relay.body import Incoming, MultipartUpload
from app.relay.grants import PeerTraffic
from app.relay.peer import outgoing_to_peer, peer_headers, peer_url, with_query_model
from scheduler.errors import ModelNotFound

CONFIG = load_config_text(textwrap.dedent("""
    models:
      local:
        cmd: server --port ${PORT}
        aliases: [shared-alias]
      org/llama:
        cmd: server --port ${PORT}
    peers:
      box:
        proxy: http://127.0.0.1:9/api/
        apiKey: sk-box
        models: [remote-only, shared, local, shared-alias, vendor/model-7b]
        filters:
          stripParams: "temperature, model"
          setParams:
            provider: {zdr: true}
            model: not-this
        timeouts:
          responseHeader: 5
      other:
        proxy: http://127.0.0.1:10
        models: [shared, box/remote-only]
      orgs:
        proxy: http://127.0.0.1:11
        models: [llama]
      a:
        proxy: http://127.0.0.1:12
        models: [b/c]
"""))


def where(name: str) -> str | None:
    target = lookup(CONFIG, name)
    return None if target is None else f"{target.peer_id} | {target.model}"


# -- which names reach a peer ------------------------------------------------------

@pytest.mark.parametrize("name, expected", [
    ("box/remote-only", "box | remote-only"),
    ("remote-only", "box | remote-only"),  # bare: only box lists it
    ("box/shared", "box | shared"),
    ("other/shared", "other | shared"),
    ("box/vendor/model-7b", "box | vendor/model-7b"),  # a model id with slashes
    ("vendor/model-7b", "box | vendor/model-7b"),
    ("a/b/c", "a | b/c"),
    ("box/local", "box | local"),  # qualified, a peer's model may share a local name
])
def test_peer_models_are_found_qualified_or_by_a_bare_name_one_peer_lists(name: str, expected: str) -> None:
    assert where(name) == expected


@pytest.mark.parametrize("name", ["local", "shared-alias", "org/llama"])
def test_local_models_and_aliases_always_win(name: str) -> None:
    assert where(name) is None, "a local model id, an alias, or a local id that looks qualified"


def test_a_qualified_name_wins_over_the_same_text_listed_bare() -> None:
    assert where("box/remote-only") == "box | remote-only", "not other's model 'box/remote-only'"
    assert where("other/box/remote-only") == "other | box/remote-only"


@pytest.mark.parametrize("name", ["nothing", "box/nothing", "nobox/remote-only", "box/", "box"])
def test_names_no_peer_lists_are_not_peer_models(name: str) -> None:
    assert where(name) is None


def test_a_bare_name_two_peers_list_is_a_404_naming_the_choices() -> None:
    with pytest.raises(ModelNotFound, match=r"box/shared or other/shared"):
        lookup(CONFIG, "shared")


# -- what the peer is sent -------------------------------------------------------

CLIENT_ENVIRON = {
    "HTTP_AUTHORIZATION": "Bearer sk-ours", "HTTP_X_API_KEY": "sk-ours", "HTTP_X_TRACE": "t-1",
    "HTTP_HOST": "us:8080", "CONTENT_TYPE": "application/json", "CONTENT_LENGTH": "12",
    "HTTP_ACCEPT_ENCODING": "gzip",
}


def test_the_peers_key_replaces_the_clients_credentials() -> None:
    headers = peer_headers(CLIENT_ENVIRON, "sk-box")
    assert headers == {"Authorization": "Bearer sk-box", "x-api-key": "sk-box",
                       "X-Trace": "t-1", "Content-Type": "application/json"}


def test_without_a_peer_key_no_credentials_are_sent_at_all() -> None:
    headers = peer_headers(CLIENT_ENVIRON, "")
    assert {name.lower() for name in headers} == {"x-trace", "content-type"}


def peer_body(incoming: Incoming, target):
    return outgoing_to_peer(target, incoming, {}, "POST", "/v1/chat/completions").body


def json_incoming(payload: dict) -> Incoming:
    raw = json.dumps(payload).encode()
    return Incoming(payload["model"], payload=payload, raw=raw)


def test_the_body_names_the_peers_model_and_the_peers_filters_apply() -> None:
    incoming = json_incoming({"model": "box/remote-only", "temperature": 0.2, "messages": []})
    body = json.loads(peer_body(incoming, lookup(CONFIG, "box/remote-only")))
    assert body == {"model": "remote-only", "messages": [], "provider": {"zdr": True}}


def test_a_body_that_needs_no_change_goes_byte_for_byte() -> None:
    raw = b'{"model":  "llama", "n": 1}'
    incoming = Incoming("llama", payload=json.loads(raw), raw=raw)
    assert peer_body(incoming, lookup(CONFIG, "llama")) is raw, "orgs has no filters, the name is its own"


def test_an_upload_names_the_peers_model_in_its_form_field() -> None:
    boundary = "XyZ"
    data = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nbox/remote-only\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n\r\n"
            f"RIFF....\r\n--{boundary}--\r\n").encode()
    upload = MultipartUpload.read(io.BytesIO(data), f"multipart/form-data; boundary={boundary}", len(data))
    body = peer_body(Incoming(upload.model, upload=upload), lookup(CONFIG, "box/remote-only"))
    sent = b"".join(body)
    assert sent == data.replace(b"box/remote-only", b"remote-only")
    assert len(body) == len(sent)


@pytest.mark.parametrize("path, requested, expected", [
    ("/props?model=box/remote-only", "box/remote-only", "/props?model=remote-only"),
    ("/props?model=box%2Fremote-only&x=a%2Fb", "box/remote-only", "/props?model=remote-only&x=a%2Fb"),
    ("/props?x=1&model=remote-only", "remote-only", "/props?x=1&model=remote-only"),  # already its name
    ("/props?model=other&x=box/remote-only", "box/remote-only", "/props?model=other&x=box/remote-only"),
    ("/props", "box/remote-only", "/props"),
])
def test_a_query_route_names_the_peers_model(path: str, requested: str, expected: str) -> None:
    assert with_query_model(path, requested, "remote-only") == expected


# -- listing, traffic, config defaults ----------------------------------------------

def test_peer_models_are_listed_qualified_with_their_peer() -> None:
    records = {r["id"]: r for r in model_records(CONFIG, 7)}
    assert records["box/vendor/model-7b"] == {
        "id": "box/vendor/model-7b", "object": "model", "created": 7, "owned_by": "llama-swap",
        "name": "box: vendor/model-7b", "meta": {"llamaswap": {"type": "peer", "peerID": "box"}},
        "status": {"value": "unloaded"}}
    assert "remote-only" not in records, "only the qualified name is listed"
    ids = [r["id"] for r in model_records(CONFIG, 7)]
    assert ids == sorted(ids) and {"local", "org/llama", "other/shared", "a/b/c"} <= set(ids)


def test_requests_in_flight_are_counted_per_peer_model_and_released_once() -> None:
    traffic = PeerTraffic()
    target = lookup(CONFIG, "box/shared")
    first, second = (traffic.begin(target.peer_id, target.model, peer_url(target.peer.proxy)) for _ in "12")
    assert (first.proxy_url, first.model) == ("http://127.0.0.1:9/api", "box/shared")
    assert traffic.load("box", "shared") == 2 and traffic.load("other", "shared") == 0
    first.release()
    first.release()
    assert traffic.load("box", "shared") == 1
    second.release()
    assert traffic.load("box", "shared") == 0


def test_peer_timeouts_default_as_in_go_and_can_be_set() -> None:
    box, other = CONFIG.peers["box"].timeouts, CONFIG.peers["other"].timeouts
    assert (other.connect, other.response_header, other.tls_handshake, other.idle_conn) == (30, 60, 10, 90)
    assert (box.connect, box.response_header) == (30, 5)
