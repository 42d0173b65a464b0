"""The request target: whatever form the client writes it in, only its path and query go upstream.

RFC 9112 §3.2.2: a server must accept the absolute form
(``POST http://host/v1/chat/completions``); its scheme and authority name
this server and never reach an upstream URL. Before the fix the whole
target was appended to the upstream's URL: a local model was asked for
``/http://host/v1/...``, and for a peer at ``http://192.168.1.23`` the
target ``a.evil.example://x/v1/...`` made the host
``192.168.1.23a.evil.example``, sent the peer's key.

The requests go out on a raw socket (``requests`` would rewrite the
target); the local model and the peers are recorders, which write down
the target and the ``Host`` they were sent.
"""

from __future__ import annotations

import json
import subprocess

import pytest

from tests.helpers.raw_http import raw_request
from tests.helpers.recorder import command as recorder_command, read_records
from tests.helpers.server import wait_for
from tests.helpers.upstream import REPO_ROOT, free_port, http_status

PEER_KEY = "sk-peer-0c94d2"

ODD_TARGETS = [
    "http://anything.example{path}",
    "HTTP://Anything.Example:9999{path}",
    "a.evil.example://x{path}",
    "http://user:pw@evil.example{path}",
    "http://anything.example{path}#fragment",
]


@pytest.fixture
def world(llama_swap, tmp_path):
    """A server with a local recorder model ``rec`` and two recorder peers, one behind a base path."""
    peers = {}
    for name in ("p", "hosted"):
        port = free_port()
        proc = subprocess.Popen(recorder_command(str(port), tmp_path / f"{name}.jsonl").split(), cwd=REPO_ROOT,
                                stdin=subprocess.DEVNULL)
        peers[name] = (port, proc)
    try:
        for port, _ in peers.values():
            wait_for(lambda port=port: http_status("127.0.0.1", port) == 200, 10, what=f"recorder on {port}")
        server = llama_swap(f"""
healthCheckTimeout: 15
models:
  rec:
    cmd: {recorder_command("${PORT}", tmp_path / "rec.jsonl")}
peers:
  p:
    proxy: http://127.0.0.1:{peers["p"][0]}
    apiKey: {PEER_KEY}
    models: [pm]
  hosted:
    proxy: http://127.0.0.1:{peers["hosted"][0]}/api/
    apiKey: {PEER_KEY}
    models: [hm]
""")
        yield server, tmp_path, {name: port for name, (port, _) in peers.items()}
    finally:
        for _, proc in peers.values():
            proc.terminate()
            proc.wait(5)


def post(server, target: str, model: str):
    return raw_request(server.port, "POST", target, {"Content-Type": "application/json"},
                       json.dumps({"model": model, "messages": []}).encode())


def last(record_file) -> dict:
    records = read_records(record_file)
    assert records, f"nothing reached {record_file.name}"
    return records[-1]


@pytest.mark.parametrize("form", ODD_TARGETS)
def test_an_absolute_form_target_sends_only_its_path_to_a_local_model(world, form):
    server, tmp_path, _ = world
    for path, upstream in (("/v1/chat/completions", "/v1/chat/completions"),
                           ("/v1/chat/completions?trace=1", "/v1/chat/completions?trace=1"),
                           ("/v/chat/completions", "/chat/completions")):
        answer = post(server, form.format(path=path), "rec")
        assert answer.status == 200, answer.body
        assert last(tmp_path / "rec.jsonl")["target"] == upstream


@pytest.mark.parametrize("form", ODD_TARGETS)
def test_an_absolute_form_target_never_changes_a_peers_host(world, form):
    server, tmp_path, ports = world
    for peer, model, base in (("p", "p/pm", ""), ("hosted", "hosted/hm", "/api")):
        answer = post(server, form.format(path="/v1/chat/completions"), model)
        assert answer.status == 200, answer.body
        seen = last(tmp_path / f"{peer}.jsonl")
        assert seen["headers"]["Host"] == f"127.0.0.1:{ports[peer]}"
        assert seen["target"] == base + "/v1/chat/completions"
        assert seen["headers"]["Authorization"] == f"Bearer {PEER_KEY}"


def test_an_absolute_form_target_reaches_the_upstream_passthrough_by_its_path(world):
    server, tmp_path, _ = world
    answer = post(server, "http://anything.example/upstream/rec/v1/chat/completions?x=1", "rec")
    assert answer.status == 200, answer.body
    assert last(tmp_path / "rec.jsonl")["target"] == "/v1/chat/completions?x=1"


def test_an_origin_form_target_is_still_sent_as_written(world):
    server, tmp_path, ports = world
    answer = post(server, "/v1/chat/completions?q=a%2Fb&x=%20", "p/pm")
    assert answer.status == 200, answer.body
    assert last(tmp_path / "p.jsonl")["target"] == "/v1/chat/completions?q=a%2Fb&x=%20"
    answer = post(server, "/v1/chat/completions?q=a%2Fb", "rec")
    assert answer.status == 200, answer.body
    assert last(tmp_path / "rec.jsonl")["target"] == "/v1/chat/completions?q=a%2Fb"
