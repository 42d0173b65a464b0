"""Peers end to end: two instances of this server, each a peer of the other, each with its own key.

``A`` serves ``alpha`` and knows ``B`` as peer ``b`` (and again as ``hasty``,
with a short response-header timeout); ``B`` serves ``beta``, ``slow`` and
``spy`` and knows ``A`` as peer ``a``. Each peer entry carries the other's
API key. Requests go to one instance by ``peer/model`` or by a bare name and
come back from the other's simulated upstream (``--echo-request`` shows the
body that reached it). ``spy`` and the "hosted API" peer are recorders that
write down every request's headers, so the tests see which key reached whom.
"""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.helpers.server import LlamaSwapServer, fake_cmd, processes_under, wait_for
from tests.helpers.recorder import command as recorder_command, read_records
from tests.helpers.upstream import REPO_ROOT, free_port, free_port_block, http_status

KEY_A, KEY_B, KEY_HOSTED = "sk-a-6d1f0e", "sk-b-93c7aa", "sk-hosted-44e0b1"
CHAT = {"messages": [{"role": "user", "content": "hello there"}]}

def config_a(workdir: Path, b: LlamaSwapServer, hosted_port: int, down_port: int) -> str:
    return f"""
healthCheckTimeout: 15
startPort: {free_port_block(4)}
apiKeys: [{KEY_A}]
models:
  alpha:
    cmd: {fake_cmd("alpha", workdir, "--echo-request --tokens 3")}
peers:
  b:
    proxy: {b.base_url}
    apiKey: {KEY_B}
    models: [beta, spy, slow]
    filters:
      stripParams: "temperature"
      setParams:
        top_k: 7
  hasty:
    proxy: {b.base_url}/
    apiKey: {KEY_B}
    models: [slow]
    timeouts:
      responseHeader: 1.5
  hosted:
    proxy: http://127.0.0.1:{hosted_port}/api/
    apiKey: {KEY_HOSTED}
    models: [vendor/gpt-x]
  down:
    proxy: http://127.0.0.1:{down_port}
    models: [ghost]
"""


def config_b(workdir: Path, a: LlamaSwapServer) -> str:
    return f"""
healthCheckTimeout: 15
startPort: {free_port_block(8)}
apiKeys: [{KEY_B}]
models:
  beta:
    cmd: {fake_cmd("beta", workdir, "--echo-request --tokens 3")}
  slow:
    cmd: {fake_cmd("slow", workdir, "--tokens 3 --token-delay 0.3")}
  spy:
    cmd: {recorder_command("${PORT}", workdir / "spy.jsonl")}
groups:
  all:
    swap: false
    exclusive: false
    members: [beta, slow, spy]
peers:
  a:
    proxy: {a.base_url}
    apiKey: {KEY_A}
    models: [alpha]
"""


class Recorder:
    """The recorder script as a stand-alone server (a "hosted API" peer) on ``port``."""

    def __init__(self, port: int, record: Path):
        self.port, self.record = port, record
        self.proc = subprocess.Popen(recorder_command(str(port), record).split(), cwd=REPO_ROOT,
                                     stdin=subprocess.DEVNULL)
        wait_for(lambda: http_status("127.0.0.1", port) == 200, 10, what=f"recorder on {port}")

    def requests(self) -> list[dict[str, Any]]:
        return read_records(self.record)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(5)


@pytest.fixture(scope="module")
def net(tmp_path_factory):
    root = tmp_path_factory.mktemp("peers")
    (root / "a").mkdir()
    (root / "b").mkdir()
    a, b = LlamaSwapServer(root / "a", ""), LlamaSwapServer(root / "b", "")
    down_port = free_port()
    hosted = Recorder(free_port(), root / "hosted.jsonl")
    a.config_path.write_text(config_a(root / "a", b, hosted.port, down_port))
    b.config_path.write_text(config_b(root / "b", a))
    try:
        a.start()
        b.start()
        yield {"a": a, "b": b, "hosted": hosted, "down_port": down_port, "root": root}
    finally:
        for server in (a, b):
            server.stop()
        hosted.stop()
        wait_for(lambda: not processes_under(str(root)), timeout=5, what="every process of the module to exit")


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def chat(server: LlamaSwapServer, key: str, model: str, **extra: Any) -> requests.Response:
    return requests.post(server.url("/v1/chat/completions"), json={"model": model, **CHAT, **extra},
                         headers=bearer(key), timeout=30)


def assert_openai_error(response: requests.Response, status: int, code: str, *words: str) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["type"] in ("invalid_request_error", "server_error")
    for word in words:
        assert word in error["message"]


# --------------------------------------------------------------------------- routing


@pytest.mark.parametrize("name", ["b/beta", "beta"])
def test_a_reaches_b_by_qualified_and_by_bare_name_with_bs_key(net, name):
    r = chat(net["a"], KEY_A, name)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "beta"
    assert r.json()["received"]["model"] == "beta", "the peer is sent its own name for the model"


@pytest.mark.parametrize("name", ["a/alpha", "alpha"])
def test_b_reaches_a_the_same_way_with_as_key(net, name):
    r = chat(net["b"], KEY_B, name)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "alpha" and r.json()["received"]["model"] == "alpha"


def test_a_streamed_chat_comes_back_from_the_peer_event_by_event(net):
    with requests.post(net["a"].url("/v1/chat/completions"), headers=bearer(KEY_A), stream=True, timeout=30,
                       json={"model": "b/slow", **CHAT, "stream": True}) as r:
        assert r.status_code == 200, r.text
        assert r.headers["Content-Type"].startswith("text/event-stream")
        assert r.headers["X-Accel-Buffering"] == "no"
        arrivals = [(time.monotonic(), line) for line in r.iter_lines() if line.startswith(b"data: ")]
    assert arrivals[-1][1] == b"data: [DONE]"
    tokens = [json.loads(line[6:])["choices"][0]["delta"].get("content")
              for _, line in arrivals[:-1] if json.loads(line[6:])["choices"]]
    assert [t for t in tokens if t] == ["tok0 ", "tok1 ", "tok2 "]
    assert arrivals[-1][0] - arrivals[0][0] >= 0.4, "tokens 0.3 s apart arrive apart, not buffered"


def test_the_peers_filters_apply_and_model_is_protected(net):
    r = chat(net["a"], KEY_A, "b/beta", temperature=0.5, top_p=0.9)
    assert r.status_code == 200, r.text
    assert r.json()["received"] == {"model": "beta", **CHAT, "top_p": 0.9, "top_k": 7}
    r = chat(net["b"], KEY_B, "alpha", temperature=0.5)  # a's entry has no filters
    assert r.json()["received"] == {"model": "alpha", **CHAT, "temperature": 0.5}


def test_uploads_and_query_routes_name_the_peers_model(net):
    files = {"model": (None, "b/beta"), "file": ("a.wav", b"RIFF" + bytes(4000))}
    r = requests.post(net["a"].url("/v1/audio/transcriptions"), files=files, headers=bearer(KEY_A), timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "beta" and r.json()["file"]["size"] == 4004
    r = requests.get(net["a"].url("/v1/audio/voices"), params={"model": "b/beta"}, headers=bearer(KEY_A),
                     timeout=30)
    assert r.status_code == 200, r.text
    assert r.json()["model"] == "beta"


# --------------------------------------------------------------------------- keys


def test_each_key_reaches_only_its_peer(net):
    r = chat(net["a"], KEY_A, "b/spy")  # A → B (with B's key) → B's recorder upstream
    assert r.status_code == 200, r.text
    r = requests.post(net["a"].url("/v1/chat/completions"), json={"model": "vendor/gpt-x", **CHAT},
                      headers={"x-api-key": KEY_A, "X-Trace": "kept"}, timeout=30)
    assert r.status_code == 200, r.text
    spied = [json.loads(line) for line in (net["root"] / "b" / "spy.jsonl").read_text().splitlines()]
    assert spied and all(not {"authorization", "x-api-key"} & {h.lower() for h in s["headers"]} for s in spied), \
        "B accepted its key and kept it from its upstream"
    hosted = net["hosted"].requests()[-1]
    assert hosted["path"] == "/api/v1/chat/completions", "the path as sent, after the peer's base URL"
    assert hosted["body"] == {"model": "vendor/gpt-x", **CHAT}
    headers = {name.lower(): value for name, value in hosted["headers"].items()}
    assert headers["authorization"] == f"Bearer {KEY_HOSTED}" and headers["x-api-key"] == KEY_HOSTED
    assert headers["x-trace"] == "kept"
    everything = json.dumps(spied) + json.dumps(net["hosted"].requests()) + net["a"].log() + net["b"].log()
    assert KEY_A not in everything and KEY_B not in everything and KEY_HOSTED not in net["a"].log()


def test_a_peer_still_needs_our_own_key(net):
    r = requests.post(net["a"].url("/v1/chat/completions"), json={"model": "b/beta", **CHAT},
                      headers=bearer(KEY_B), timeout=30)
    assert r.status_code == 401, "B's key is not A's"


# --------------------------------------------------------------------------- listing and errors


def test_the_listing_shows_peer_models_by_qualified_name(net):
    data = requests.get(net["a"].url("/v1/models"), headers=bearer(KEY_A), timeout=5).json()["data"]
    ids = [record["id"] for record in data]
    assert ids == sorted(ids)
    assert ids == ["alpha", "b/beta", "b/slow", "b/spy", "down/ghost", "hasty/slow", "hosted/vendor/gpt-x"]
    beta = data[1]
    assert beta["name"] == "b: beta" and beta["meta"] == {"llamaswap": {"type": "peer", "peerID": "b"}}
    assert beta["object"] == "model" and beta["owned_by"] == "llama-swap"


def test_unknown_and_ambiguous_peer_names_are_openai_shaped_404s(net):
    assert_openai_error(chat(net["a"], KEY_A, "b/nothing"), 404, "not_found", "b/nothing")
    assert_openai_error(chat(net["a"], KEY_A, "slow"), 404, "not_found", "b/slow or hasty/slow")


def test_an_unreachable_peer_is_a_502_and_the_next_request_works(net):
    assert_openai_error(chat(net["a"], KEY_A, "down/ghost"), 502, "bad_gateway", "down/ghost")
    assert chat(net["a"], KEY_A, "b/beta").status_code == 200
    revived = Recorder(net["down_port"], net["root"] / "revived.jsonl")
    try:
        r = chat(net["a"], KEY_A, "ghost")
        assert r.status_code == 200 and r.json()["model"] == "ghost"
        headers = {name.lower() for name in revived.requests()[0]["headers"]}
        assert "authorization" not in headers and "x-api-key" not in headers, "no peer key: no key at all"
    finally:
        revived.stop()


def test_a_peers_response_header_timeout_applies_to_that_peer_only(net):
    began = time.monotonic()
    r = chat(net["a"], KEY_A, "hasty/slow", max_tokens=10)  # 3 s before the upstream answers
    assert_openai_error(r, 502, "bad_gateway", "timed out")
    assert time.monotonic() - began < 2.9
    r = chat(net["a"], KEY_A, "b/slow", max_tokens=6)  # 1.8 s: b has the default 60 s
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 6
    with requests.post(net["a"].url("/v1/chat/completions"), headers=bearer(KEY_A), stream=True, timeout=30,
                       json={"model": "hasty/slow", **CHAT, "stream": True, "max_tokens": 4}) as streamed:
        assert streamed.status_code == 200  # headers came in time; a slow stream is not cut off
        assert streamed.content.rstrip().endswith(b"data: [DONE]")
