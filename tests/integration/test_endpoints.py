"""Every model-dispatched endpoint, end to end: the right model serves it, with the right body.

One server for the module (starting one per test would dominate the run):
its models sit in one non-swapping group, so each starts once and stays up,
and "started once" is itself checked. The simulated upstreams name the model
each request carried, so the tests see what reached the upstream:
``useModelName``, filters, which alias was used, an upload's SHA-256.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable

import psutil
import pytest
import requests

from tests.helpers.upstream import free_port_block
from tests.helpers.server import LlamaSwapServer, fake_cmd, module_server, wait_for

CHAT = {"messages": [{"role": "user", "content": "hello there"}]}


def config_text(workdir: Path) -> str:
    def cmd(model: str, flags: str = "") -> str:
        return fake_cmd(model, workdir, f"--echo-request --tokens 3 {flags}")

    return f"""
healthCheckTimeout: 15
startPort: {free_port_block(7)}
includeAliasesInList: true
macros:
  temp: 0.7
models:
  llm:
    cmd: {cmd("llm")}
    name: "Local LLM"
    description: "answers everything"
    aliases: [gpt-4o-mini]
    metadata:
      port: ${{PORT}}
      temperature: ${{temp}}
      note: "runs on ${{PORT}}"
      a_list: [1, 1.5, "x"]
    capabilities:
      in: [text, image]
      out: [text]
      tools: true
      context: 32000
    filters:
      stripParams: "temperature, top_p, model"
      setParams:
        top_k: 40
        chat_template_kwargs:
          enable_thinking: false
      setParamsByID:
        "llm:high":
          reasoning_effort: high
  renamed:
    cmd: {cmd("renamed")}
    useModelName: "org/renamed-v2"
    capabilities:
      in: [audio]
      out: [text]
  plain:
    cmd: {cmd("plain")}
  hidden:
    cmd: {cmd("hidden")}
    unlisted: true
  slow:
    cmd: {cmd("slow", "--tokens 2 --token-delay 0.8")}
    unlisted: true
    timeouts:
      responseHeader: 0.5
  comfyui_auto:
    cmd: {cmd("comfyui_auto")}
    unlisted: true
  single:
    cmd: {cmd("single")}
    unlisted: true
    concurrencyLimit: 1
groups:
  everything:
    swap: false
    exclusive: false
    members: [llm, renamed, plain, hidden, slow, comfyui_auto, single]
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("endpoints")
    yield from module_server(workdir, config_text(workdir))


def post(server: LlamaSwapServer, path: str, **kwargs: Any) -> requests.Response:
    return requests.post(server.url(path), timeout=30, **kwargs)


def multipart(*parts: tuple[str, str | None, bytes]) -> tuple[bytes, str]:
    """A multipart/form-data body with the parts in exactly this order: (name, filename, content)."""
    boundary = "llamaswapboundary" + os.urandom(8).hex()
    out = []
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        kind = "\r\nContent-Type: application/octet-stream" if filename else ""
        out.append(f"--{boundary}\r\nContent-Disposition: {disposition}{kind}\r\n\r\n".encode() + content + b"\r\n")
    out.append(f"--{boundary}--\r\n".encode())
    return b"".join(out), f"multipart/form-data; boundary={boundary}"


# --------------------------------------------------------------------------- every endpoint

# (method, path, how to send it, where the answer names the model the upstream served or received)
ENDPOINTS: list[tuple[str, str, dict[str, Any], Callable[[requests.Response], str]]] = [
    ("POST", "/v1/chat/completions", {"json": {**CHAT}}, lambda r: r.json()["model"]),
    ("POST", "/v1/completions", {"json": {"prompt": "hi"}}, lambda r: r.json()["model"]),
    ("POST", "/v1/responses", {"json": {"input": "hi"}}, lambda r: r.json()["model"]),
    ("POST", "/v1/embeddings", {"json": {"input": "hi"}}, lambda r: r.json()["model"]),
    ("POST", "/v1/audio/speech", {"json": {"input": "hi", "voice": "alloy"}},
     lambda r: r.headers["Content-Type"].startswith("audio/mpeg") and r.headers["X-Received-Model"]),
    ("POST", "/v1/audio/voices", {"json": {}}, lambda r: r.json()["model"]),
    ("GET", "/v1/audio/voices", {"params": {}}, lambda r: r.json()["model"]),
    ("POST", "/v1/images/generations", {"json": {"prompt": "a cat"}}, lambda r: r.json()["model"]),
    ("POST", "/v1/messages", {"json": {"max_tokens": 2, **CHAT}}, lambda r: r.json()["model"]),
    ("POST", "/v1/messages/count_tokens", {"json": {**CHAT}}, lambda r: r.json()["model"]),
    ("POST", "/v1/rerank", {"json": {"query": "a", "documents": ["a b", "c"]}}, lambda r: r.json()["model"]),
    ("POST", "/v1/reranking", {"json": {"query": "a", "documents": ["a"]}}, lambda r: r.json()["model"]),
    ("POST", "/rerank", {"json": {"query": "a", "documents": ["a"]}}, lambda r: r.json()["model"]),
    ("POST", "/reranking", {"json": {"query": "a", "documents": ["a"]}}, lambda r: r.json()["model"]),
    ("POST", "/infill", {"json": {"input_prefix": "def", "input_suffix": ""}}, lambda r: r.json()["model"]),
    ("POST", "/completion", {"json": {"prompt": "hi"}}, lambda r: r.json()["model"]),
    ("GET", "/props", {"params": {}}, lambda r: r.json()["query"]["model"]),
    ("POST", "/v/chat/completions", {"json": {**CHAT}}, lambda r: r.json()["model"]),
    ("POST", "/sdapi/v1/txt2img", {"json": {"prompt": "a cat"}}, lambda r: json.loads(r.json()["info"])["model"]),
    ("POST", "/sdapi/v1/img2img", {"json": {"prompt": "a cat"}}, lambda r: json.loads(r.json()["info"])["model"]),
    ("GET", "/sdapi/v1/loras", {"params": {}}, lambda r: r.json()[0]["model"]),
    ("POST", "/audioapi/v1/tasks/run", {"json": {"task": "tts"}},
     lambda r: r.json()["path"] == "/v1/tasks/run" and r.json()["model"]),
]


@pytest.mark.parametrize("method,path,send,served_by", ENDPOINTS, ids=[f"{m} {p}" for m, p, *_ in ENDPOINTS])
def test_each_endpoint_is_served_by_the_model_the_request_names(server, method, path, send, served_by):
    send = {key: dict(value) for key, value in send.items()}
    send.get("json", send.get("params"))["model"] = "plain"
    r = requests.request(method, server.url(path), timeout=30, **send)
    assert r.status_code == 200, r.text
    assert served_by(r) == "plain"
    assert len(server.starts("plain")) == 1


@pytest.mark.parametrize("path", ["/v1/audio/transcriptions", "/v1/images/edits"])
@pytest.mark.parametrize("model_first", [True, False], ids=["model-before-file", "model-after-file"])
def test_multipart_uploads_find_the_model_field_before_or_after_the_file(server, path, model_first):
    content = os.urandom(3_000_000)  # model after the file: 2 MB of it through the spool's disk file
    file_field = "file" if path.endswith("transcriptions") else "image"
    parts = [("model", None, b"plain"), ("prompt", None, "héllo".encode()), (file_field, "in.bin", content)]
    body, content_type = multipart(*(parts if model_first else parts[::-1]))
    r = post(server, path, data=body, headers={"Content-Type": content_type})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["model"] == "plain"
    upload = answer.get("file") or answer.get("image")
    assert upload == {"filename": "in.bin", "size": len(content), "sha256": hashlib.sha256(content).hexdigest()}
    assert answer["fields"] == {"model": "plain", "prompt": "héllo"}


def test_models_and_v1_models_are_the_same_listing(server):
    assert requests.get(server.url("/models"), timeout=5).json() == \
        requests.get(server.url("/v1/models"), timeout=5).json()


def test_an_alias_and_an_unlisted_model_are_served(server):
    assert post(server, "/v1/chat/completions", json={"model": "gpt-4o-mini", **CHAT}).json()["model"] == "llm"
    assert post(server, "/v1/embeddings", json={"model": "hidden", "input": "x"}).json()["model"] == "hidden"


# --------------------------------------------------------------------------- comfyui


def test_comfyui_is_served_by_comfyui_auto_with_the_prefix_cut(server):
    r = requests.get(server.url("/comfyui"), allow_redirects=False, timeout=5)
    assert (r.status_code, r.headers["Location"]) == (301, "/comfyui/")
    r = requests.post(server.url("/comfyui?a=1"), allow_redirects=False, timeout=5)
    assert (r.status_code, r.headers["Location"]) == (308, "/comfyui/?a=1")
    # The page's status socket must not load the model.
    assert requests.get(server.url("/comfyui/ws?clientId=1"), timeout=5).status_code == 409
    assert server.starts("comfyui_auto") == []
    r = post(server, "/comfyui/v1/echo?x=1", data=b'{"prompt": {}}')
    assert r.status_code == 200, r.text
    assert (r.json()["path"], r.json()["body"]) == ("/v1/echo?x=1", '{"prompt": {}}')
    assert len(server.starts("comfyui_auto")) == 1


# --------------------------------------------------------------------------- useModelName and filters


def test_use_model_name_reaches_the_upstream_in_json_and_multipart(server):
    assert post(server, "/v1/chat/completions", json={"model": "renamed", **CHAT}).json()["received"]["model"] \
        == "org/renamed-v2"
    content = os.urandom(100_000)
    for order in (1, -1):
        body, content_type = multipart(*[("model", None, b"renamed"), ("file", "a.wav", content)][::order])
        answer = post(server, "/v1/audio/transcriptions", data=body, headers={"Content-Type": content_type}).json()
        assert answer["fields"]["model"] == "org/renamed-v2"
        assert answer["file"]["sha256"] == hashlib.sha256(content).hexdigest()


def test_filters_strip_and_set_params_but_never_touch_model(server):
    received = post(server, "/v1/chat/completions", json={
        "model": "llm", "temperature": 1.5, "top_p": 0.1, "top_k": 1, **CHAT}).json()["received"]
    assert received == {"model": "llm", "top_k": 40, "chat_template_kwargs": {"enable_thinking": False}, **CHAT}


def test_set_params_by_id_applies_for_the_alias_used(server):
    received = post(server, "/v1/chat/completions", json={"model": "llm:high", **CHAT}).json()["received"]
    assert received["model"] == "llm:high"
    assert received["reasoning_effort"] == "high" and received["top_k"] == 40
    assert "reasoning_effort" not in post(server, "/v1/chat/completions",
                                          json={"model": "gpt-4o-mini", **CHAT}).json()["received"]


def test_a_body_no_filter_changes_is_forwarded_byte_for_byte(server):
    raw = b'{ "model" : "plain",\n  "task": "tts", "x": 1.0e0 }'
    r = post(server, "/audioapi/v1/tasks/run", data=raw, headers={"Content-Type": "application/json"})
    assert r.json()["raw"] == raw.decode()
    r = post(server, "/audioapi/v1/tasks/run", data=b'{ "model" : "llm", "x": 1 }',
             headers={"Content-Type": "application/json"})
    assert json.loads(r.json()["raw"]) == {"model": "llm", "x": 1, "top_k": 40,
                                           "chat_template_kwargs": {"enable_thinking": False}}


# --------------------------------------------------------------------------- listing


def test_listing_has_aliases_metadata_capabilities_and_no_unlisted_models(server):
    data = requests.get(server.url("/v1/models"), timeout=5).json()["data"]
    assert [m["id"] for m in data] == ["gpt-4o-mini", "llm", "llm:high", "plain", "renamed"]
    by_id = {m["id"]: m for m in data}
    llm = by_id["llm"]
    assert {k: llm[k] for k in ("object", "owned_by", "name", "description")} == {
        "object": "model", "owned_by": "llama-swap", "name": "Local LLM", "description": "answers everything"}
    meta = llm["meta"]["llamaswap"]
    assert isinstance(meta["port"], int) and meta["temperature"] == 0.7 and isinstance(meta["temperature"], float)
    assert meta["note"] == f"runs on {meta['port']}" and meta["a_list"] == [1, 1.5, "x"]
    assert llm["architecture"] == {"input_modalities": ["text", "image"], "modality": "text+image->text",
                                   "output_modalities": ["text"]}
    assert llm["capabilities"] == {"vision": True, "function_calling": True}
    assert llm["context_length"] == 32000 and llm["meta"]["n_ctx"] == 32000
    assert meta["type"] == "model" and meta["aliases"] == ["gpt-4o-mini", "llm:high"]
    for alias in ("gpt-4o-mini", "llm:high"):  # aliases repeat the model's fields, and say whose they are
        record = by_id[alias]
        own = {key: value for key, value in meta.items() if key not in ("type", "aliases")}
        assert record["meta"]["llamaswap"] == {**own, "type": "alias", "modelID": "llm"}
        assert {**record, "id": "llm", "meta": llm["meta"]} == llm
    assert by_id["renamed"]["capabilities"] == {"audio_transcriptions": True}
    assert set(by_id["plain"]) == {"id", "object", "created", "owned_by", "meta", "status"}


# --------------------------------------------------------------------------- errors


def assert_anthropic_error(r: requests.Response, status: int, kind: str, contains: str) -> None:
    assert r.status_code == status, r.text
    assert r.json() == {"type": "error", "error": {"type": kind, "message": r.json()["error"]["message"]}}
    assert contains in r.json()["error"]["message"]


def assert_openai_error(r: requests.Response, status: int, code: str, contains: str) -> None:
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["code"] == code
    assert contains in error["message"]


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_anthropic_paths_answer_anthropic_shaped_errors(server, path):
    assert_anthropic_error(post(server, path, json={"max_tokens": 1, **CHAT}), 400, "invalid_request_error", "model")
    assert_anthropic_error(post(server, path, data=b"{nope"), 400, "invalid_request_error", "JSON")
    assert_anthropic_error(post(server, path, json={"model": "nope", **CHAT}), 404, "not_found_error", "nope")


def test_other_paths_answer_openai_shaped_errors(server):
    assert_openai_error(post(server, "/v1/responses", json={"input": "x"}), 400, "bad_request", "model")
    assert_openai_error(post(server, "/infill", json={"model": "nope"}), 404, "not_found", "nope")
    assert_openai_error(requests.get(server.url("/props"), timeout=5), 400, "bad_request", "model")
    assert_openai_error(requests.get(server.url("/v1/audio/voices"), timeout=5), 400, "bad_request", "model")
    body, content_type = multipart(("file", "a.wav", b"x"))
    assert_openai_error(post(server, "/v1/audio/transcriptions", data=body, headers={"Content-Type": content_type}),
                        400, "bad_request", "model")
    body, content_type = multipart(("model", None, b"nope"), ("file", "a.wav", b"x"))
    assert_openai_error(post(server, "/v1/images/edits", data=body, headers={"Content-Type": content_type}),
                        404, "not_found", "nope")
    assert_openai_error(post(server, "/v1/audio/transcriptions", json={"model": "plain"}),
                        400, "bad_request", "multipart/form-data")


# --------------------------------------------------------------------------- timeouts


def test_response_header_timeout_bounds_the_headers_only(server):
    # Streamed: headers at once, then 0.8 s between tokens, past the 0.5 s allowed: not cut off.
    r = post(server, "/v1/chat/completions", json={"model": "slow", "stream": True, **CHAT})
    assert r.status_code == 200 and b"tok1" in r.content and r.content.rstrip().endswith(b"[DONE]")
    # Non-streamed: the (now running) upstream takes 1.6 s to answer at all.
    began = time.monotonic()
    assert_openai_error(post(server, "/v1/chat/completions", json={"model": "slow", **CHAT}),
                        502, "bad_gateway", "timed out")
    assert time.monotonic() - began < 1.4


# --------------------------------------------------------------------------- memory


def worker_of(server: LlamaSwapServer) -> psutil.Process:
    return next(p for p in psutil.Process(server.proc.pid).children()
                if "-m simulator" not in " ".join(p.cmdline()))


def peak_rss_growth(pid: int, action: Callable[[], None]) -> int:
    """How far above its current RSS the process's RSS peaked while ``action`` ran."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    except OSError:
        pytest.skip("cannot reset the peak RSS of the worker here")
    before = psutil.Process(pid).memory_info().rss
    action()
    status = Path(f"/proc/{pid}/status").read_text()
    peak_kb = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1])
    return peak_kb * 1024 - before


@pytest.mark.parametrize("model_first", [True, False], ids=["model-before-file", "model-after-file"])
def test_a_big_upload_streams_through_without_the_worker_holding_it(server, model_first):
    content = os.urandom(20 * 1024 * 1024)
    parts = [("model", None, b"plain"), ("file", "big.wav", content)]
    body, content_type = multipart(*(parts if model_first else parts[::-1]))
    small, small_type = multipart(("model", None, b"plain"), ("file", "small.wav", b"x" * 1000))
    post(server, "/v1/audio/transcriptions", data=small, headers={"Content-Type": small_type}).raise_for_status()
    answers: list[requests.Response] = []

    def upload() -> None:
        answers.append(post(server, "/v1/audio/transcriptions", data=body, headers={"Content-Type": content_type}))

    growth = peak_rss_growth(worker_of(server).pid, upload)
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json()["file"]["sha256"] == hashlib.sha256(content).hexdigest()
    assert growth < len(content) // 2, f"the worker's RSS grew {growth >> 20} MB for a 20 MB upload"


def test_a_client_that_goes_away_mid_upload_frees_its_model(server):
    # "single" serves one request at a time: a lease left behind would answer every later request 429.
    small, small_type = multipart(("model", None, b"single"), ("file", "b.wav", b"123"))

    def served() -> bool:
        return post(server, "/v1/audio/transcriptions", data=small,
                    headers={"Content-Type": small_type}).status_code == 200

    assert served()  # the model is up: the next upload is relayed at once, not queued
    head, content_type = multipart(("model", None, b"single"), ("file", "a.wav", b""))
    head = head[:head.rindex(b"\r\n--")]  # the file part is open: its bytes are still to come
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: "
                     + content_type.encode() + b"\r\nContent-Length: 10000000\r\n\r\n" + head + b"x" * 100_000)
    wait_for(lambda: "client closed its request body" in server.log(), timeout=10,
             what="the relay to notice the short upload")
    wait_for(served, timeout=10, interval=0.05, what="the model to take requests again")
