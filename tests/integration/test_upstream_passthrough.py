"""``/upstream/<model>/<path>`` as a client sees it: methods, bodies, raw paths, redirects, websockets."""

from __future__ import annotations

import base64
import sys
import threading

import pytest
import requests
import simple_websocket

from tests.helpers.server import fake_cmd, wait_for
from tests.helpers.upstream import free_port_block
from tests.helpers.events import EventsClient
from tests.helpers.ws_client import Client

RAW_QUERY_PATH = "/v1/echo?x=a%2Fb&y=%20"
ODD_TEXT = "naïve café — ✓ 日本語 \U0001f999 \t\"quotes\" & <tags>"


def config(text: str) -> str:
    """``text`` with its own ``startPort``: the default 5800 may be held by an upstream of a concurrent
    run, whose health check would then pass for our model while another process answers it."""
    return f"startPort: {free_port_block(4)}\n" + text


def ws_echo_cmd(name: str, workdir) -> str:
    return f"{sys.executable} -m tests.helpers.ws_echo --port ${{PORT}} --starts-file {workdir}/starts-{name}"


def load(server, name: str) -> int:
    """Ask for ``name`` through the passthrough (a counted request: it swaps models like any other)."""
    return requests.get(server.url(f"/upstream/{name}/v1/echo"), timeout=30).status_code


def connect(server, path: str, **kwargs) -> Client:
    return Client.connect(f"ws://127.0.0.1:{server.port}{path}", **kwargs)


def close(ws: simple_websocket.Client) -> None:
    try:
        ws.close()
    except simple_websocket.ConnectionClosed:
        pass  # the server closed it first


def closed_by_server(ws: simple_websocket.Client) -> bool:
    try:
        ws.receive(timeout=0)
    except simple_websocket.ConnectionClosed:
        return True
    return False


def test_every_method_reaches_the_upstream_with_its_body_and_raw_query(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  echo:
    cmd: {ws_echo_cmd("echo", tmp_path)}
  fake:
    cmd: {fake_cmd("fake", tmp_path)}
"""))
    body = ODD_TEXT.encode("utf-8") + b"\x00\xff\xfe raw bytes"
    for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
        response = requests.request(method, server.url("/upstream/echo" + RAW_QUERY_PATH), data=body, timeout=30)
        assert response.status_code == 200, response.text
        seen = response.json()
        assert (seen["method"], seen["path"]) == (method, RAW_QUERY_PATH)
        assert base64.b64decode(seen["body_base64"]) == body
        assert seen["headers"]["Content-Length"] == str(len(body))

    head = requests.head(server.url("/upstream/echo/v1/echo"), timeout=30)
    assert head.status_code == 200 and head.content == b""

    # A body of unknown length stays one: relayed chunked, every byte intact.
    chunks = [b"first ", ODD_TEXT.encode(), b"\xff last"]
    seen = requests.post(server.url("/upstream/echo/v1/echo"), data=iter(chunks), timeout=30).json()
    assert base64.b64decode(seen["body_base64"]) == b"".join(chunks)
    assert seen["headers"]["Transfer-Encoding"] == "chunked"

    # The simulated llama-server, too (its echo answers GET and POST).
    for method in ("GET", "POST"):
        seen = requests.request(method, server.url("/upstream/fake" + RAW_QUERY_PATH),
                                data=ODD_TEXT.encode(), timeout=30).json()
        assert (seen["method"], seen["path"], seen["body"]) == (method, RAW_QUERY_PATH, ODD_TEXT)

    wait_for(lambda: "fake: POST /v1/echo?x=a%2Fb&y=%20 200," in server.log(), timeout=5,
             what=f"the passthrough's log line\n{server.log()}")
    assert len(server.starts("echo")) == 1 and len(server.starts("fake")) == 1


def test_a_model_id_with_a_slash_is_found_by_its_longest_prefix(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  author:
    cmd: {fake_cmd("author", tmp_path)}
  author/model:
    cmd: {fake_cmd("author-model", tmp_path)}
    aliases: [nick]
"""))
    for prefix in ("/upstream/author/model", "/upstream/author%2Fmodel", "/upstream/nick"):
        seen = requests.get(server.url(prefix + RAW_QUERY_PATH), timeout=30).json()
        assert seen["path"] == RAW_QUERY_PATH, prefix
    assert len(server.starts("author-model")) == 1 and server.starts("author") == []

    seen = requests.get(server.url("/upstream/author/v1/echo"), timeout=30).json()
    assert seen["path"] == "/v1/echo"
    assert len(server.starts("author")) == 1


def test_a_bare_model_path_redirects_to_its_slash_and_unknown_models_are_404(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  author/model:
    cmd: {fake_cmd("author-model", tmp_path)}
"""))
    url = server.url("/upstream/author/model?a=%2F1")
    get = requests.get(url, allow_redirects=False, timeout=5)
    post = requests.post(url, data=b"kept", allow_redirects=False, timeout=5)
    assert (get.status_code, get.headers["Location"]) == (301, "/upstream/author/model/?a=%2F1")
    assert (post.status_code, post.headers["Location"]) == (308, "/upstream/author/model/?a=%2F1")
    index = requests.get(server.url("/upstream"), allow_redirects=False, timeout=5)
    assert (index.status_code, index.headers["Location"]) == (302, "ui/models")

    for path in ("/upstream/nobody/v1/echo", "/upstream/", "/upstream/author/v1/echo"):
        response = requests.get(server.url(path), timeout=5)
        assert response.status_code == 404, path
        assert response.json()["error"]["code"] == "not_found"
    assert server.starts("author-model") == []


def test_an_ignored_path_never_starts_the_model_but_is_served_while_it_runs(llama_swap, tmp_path):
    server = llama_swap(config(f"""
upstream:
  ignorePaths: ['.*\\.js$']
models:
  echo:
    cmd: {ws_echo_cmd("echo", tmp_path)}
"""))
    refused = requests.get(server.url("/upstream/echo/static/app.js"), timeout=5)
    assert refused.status_code == 409
    assert refused.json()["error"]["message"] == "model echo is not loaded; path matches upstream.ignorePaths"
    assert server.starts("echo") == [] and server.state_of("echo") is None

    assert requests.get(server.url("/upstream/echo/index.html"), timeout=30).status_code == 200
    served = requests.get(server.url("/upstream/echo/static/app.js?v=2"), timeout=5)
    assert served.status_code == 200 and served.json()["path"] == "/static/app.js?v=2"
    assert len(server.starts("echo")) == 1


def test_an_ignored_path_does_not_hold_its_model_in_flight(llama_swap, tmp_path):
    server = llama_swap(config(f"""
upstream:
  ignorePaths: ['^/ws$']
models:
  echo:
    cmd: {ws_echo_cmd("echo", tmp_path)}
  fake:
    cmd: {fake_cmd("fake", tmp_path)}
"""))
    assert requests.get(server.url("/upstream/echo/"), timeout=30).status_code == 200
    ws = connect(server, "/upstream/echo/ws")
    try:
        assert ws.receive(timeout=5) == "open:/ws"
        # Nothing counts this socket: the swap to "fake" goes ahead at once.
        assert load(server, "fake") == 200
        assert server.state_of("echo") is None
        wait_for(lambda: closed_by_server(ws), timeout=5, what="the socket to close with its model")
    finally:
        close(ws)


def test_a_websocket_loads_its_model_and_echoes_text_and_binary(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  ws-model:
    cmd: {ws_echo_cmd("ws-model", tmp_path)}
"""))
    ws = connect(server, "/upstream/ws-model/anything?q=%20", subprotocols=["echo.v1"])
    try:
        assert ws.subprotocol == "echo.v1"
        assert ws.receive(timeout=5) == "open:/anything?q=%20"
        ws.send("héllo ✓")
        assert ws.receive(timeout=5) == "echo:héllo ✓"
        ws.send(b"\x00\x01\xff")
        assert ws.receive(timeout=5) == b"echo:\x00\x01\xff"
        assert server.state_of("ws-model") == "ready" and len(server.starts("ws-model")) == 1
        ws.send("bye")  # the upstream closes; its code reaches the client
        with pytest.raises(simple_websocket.ConnectionClosed) as closed:
            ws.receive(timeout=5)
        assert (closed.value.reason, closed.value.message) == (4001, "bye")
    finally:
        close(ws)
    wait_for(lambda: "ws-model: GET /anything?q=%20 101," in server.log(), timeout=5,
             what=f"the websocket's log line\n{server.log()}")


def test_a_websocket_holds_its_model_until_the_client_closes_it(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  ws-model:
    cmd: {ws_echo_cmd("ws-model", tmp_path)}
  fake:
    cmd: {fake_cmd("fake", tmp_path)}
"""))
    ws = connect(server, "/upstream/ws-model/")
    answers: list[int] = []
    swap = threading.Thread(target=lambda: answers.append(load(server, "fake")))
    try:
        assert ws.receive(timeout=5) == "open:/"
        swap.start()
        swap.join(timeout=0.5)  # must not finish: ws-model is in flight
        assert swap.is_alive() and server.state_of("ws-model") == "ready"
    finally:
        close(ws)
    swap.join(timeout=15)
    assert answers == [200] and server.state_of("ws-model") is None


def test_ignore_websockets_neither_starts_a_stopped_model_nor_holds_a_running_one(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  comfy:
    cmd: {ws_echo_cmd("comfy", tmp_path)}
    compat:
      ignoreWebsockets: true
  fake:
    cmd: {fake_cmd("fake", tmp_path)}
"""))
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        connect(server, "/upstream/comfy/ws")
    assert refused.value.status_code == 409
    assert server.starts("comfy") == [] and server.state_of("comfy") is None

    assert requests.get(server.url("/upstream/comfy/"), timeout=30).status_code == 200  # HTTP may load it
    ws = connect(server, "/upstream/comfy/ws")
    try:
        assert ws.receive(timeout=5) == "open:/ws"
        ws.send("ping")
        assert ws.receive(timeout=5) == "echo:ping"
        assert load(server, "fake") == 200  # not held back by the open socket
        assert server.state_of("comfy") is None
        wait_for(lambda: closed_by_server(ws), timeout=5, what="the socket to close with its model")
    finally:
        close(ws)
    assert len(server.starts("comfy")) == 1


def test_the_comfyui_page_socket_is_relayed_only_while_comfyui_auto_runs(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  comfyui_auto:
    cmd: {ws_echo_cmd("comfyui_auto", tmp_path)}
"""))
    with pytest.raises(simple_websocket.ConnectionError) as refused:
        connect(server, "/comfyui/ws?clientId=7")
    assert refused.value.status_code == 409
    assert server.starts("comfyui_auto") == []

    assert requests.get(server.url("/comfyui/"), timeout=30).status_code == 200  # the page loads it
    ws = connect(server, "/comfyui/ws?clientId=7")
    try:
        assert ws.receive(timeout=5) == "open:/ws?clientId=7", "the /comfyui prefix is cut"
        ws.send("status?")
        assert ws.receive(timeout=5) == "echo:status?"
    finally:
        close(ws)
    assert len(server.starts("comfyui_auto")) == 1


def test_cancelling_a_websocket_closes_it_and_frees_its_model(llama_swap, tmp_path):
    server = llama_swap(config(f"""
models:
  ws-model:
    cmd: {ws_echo_cmd("ws-model", tmp_path)}
"""))
    ws = connect(server, "/upstream/ws-model/")
    try:
        assert ws.receive(timeout=5) == "open:/"
        # Listed in the in-flight snapshot a new /api/events client gets.
        with EventsClient(server.url("/api/events")) as feed:
            feed.wait_for(lambda ms: len(ms) >= 6, "the initial payload")
            (row,) = feed.of_type("inflight")[0].data["requests"]
        assert (row["model"], row["req_path"]) == ("ws-model", "/")
        assert requests.post(server.url(f"/api/inflight/{row['id']}/cancel"), timeout=5).status_code == 200
        wait_for(lambda: closed_by_server(ws), timeout=5, what="the client's websocket to be closed")
    finally:
        close(ws)
    assert requests.post(server.url("/api/models/unload"), timeout=15).status_code == 200  # nothing holds it
    wait_for(lambda: "ws-model: GET / 101," in server.log() and "; cancelled" in server.log(), timeout=5,
             what=f"the websocket's access line, cancelled\n{server.log()}")
