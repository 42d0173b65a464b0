"""What clients of the Go llama-swap read, field for field: the listing's records, errors, /running, /unload, ps.

One server for the module: a model with everything a record can carry
(name, aliases, metadata, capabilities), a plain one, a peer, two selectors
and a profile. Each listing test compares a whole record, so a field that
appears, goes missing or changes its source shows up.
"""

from __future__ import annotations

import subprocess
from typing import Any

import psutil
import pytest
import requests

from tests.helpers.server import LlamaSwapServer, fake_cmd, module_server
from tests.helpers.upstream import free_port


def config_text(workdir) -> str:
    return f"""
healthCheckTimeout: 15
includeAliasesInList: true
models:
  alpha:
    cmd: {fake_cmd("alpha", workdir, "--tokens 2")}
    name: Alpha
    description: the first
    aliases: [first]
    ttl: 600
    metadata: {{family: llama, context_length: 1}}
    capabilities: {{in: [text, image], out: [text], tools: true, context: 8192}}
  beta:
    cmd: {fake_cmd("beta", workdir, "--tokens 2")}
peers:
  box:
    proxy: http://127.0.0.1:{free_port()}
    models: [remote]
selectors:
  warm:
    strategy: warm
    targets: [alpha, beta]
    name: Warm one
    metadata: {{purpose: chat}}
  pinned:
    strategy: pin
    targets: [beta, alpha]
profiles:
  coding:
    pins:
      coder: beta
      first: beta
      off: ~
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("shapes")
    yield from module_server(workdir, config_text(workdir))


@pytest.fixture
def idle(server: LlamaSwapServer) -> LlamaSwapServer:
    """The module's server with no model running and no profile active."""
    assert requests.post(server.url("/api/models/unload"), timeout=30).status_code == 200
    assert requests.put(server.url("/api/profiles/active"), json={"profile": None}, timeout=5).status_code == 200
    return server


def listing(server: LlamaSwapServer) -> dict[str, dict[str, Any]]:
    """The listing's records by id, each without ``created`` (the time), which is checked once."""
    data = requests.get(server.url("/v1/models"), timeout=5).json()["data"]
    assert all(isinstance(record.pop("created"), int) for record in data)
    return {record["id"]: record for record in data}


def chat(server: LlamaSwapServer, model: str, **kwargs: Any) -> requests.Response:
    return requests.post(server.url("/v1/chat/completions"), timeout=30, **kwargs,
                         json={"model": model, "messages": [{"role": "user", "content": "hi"}]})


BASE = {"object": "model", "owned_by": "llama-swap"}
UNLOADED, LOADED = {"value": "unloaded"}, {"value": "loaded"}
ALPHA_FIELDS = {
    "name": "Alpha", "description": "the first",
    "architecture": {"input_modalities": ["text", "image"], "output_modalities": ["text"],
                     "modality": "text+image->text"},
    "capabilities": {"vision": True, "function_calling": True},
    "supported_parameters": ["tools", "tool_choice"],
    "context_length": 8192,
}


# --------------------------------------------------------------------------- /v1/models


def test_an_unloaded_model_is_listed_with_its_capabilities_type_aliases_and_status(idle):
    # The metadata key "context_length" is one the capabilities render: Go drops it from meta.
    assert listing(idle)["alpha"] == {
        "id": "alpha", **BASE, **ALPHA_FIELDS,
        "meta": {"llamaswap": {"family": "llama", "type": "model", "aliases": ["first"]}, "n_ctx": 8192},
        "status": UNLOADED}
    assert listing(idle)["beta"] == {"id": "beta", **BASE, "meta": {"llamaswap": {"type": "model"}},
                                     "status": UNLOADED}


def test_a_loaded_model_its_alias_and_a_selector_over_it_say_loaded(idle):
    assert chat(idle, "alpha").status_code == 200
    records = listing(idle)
    assert records["alpha"]["status"] == LOADED
    assert records["first"]["status"] == LOADED
    assert records["warm"]["status"] == LOADED, "a warm selector with a target ready"
    assert records["pinned"]["status"] == UNLOADED, "a pin selector looks at its first target only (beta)"
    assert records["beta"]["status"] == UNLOADED


def test_an_alias_is_listed_with_its_models_fields_and_points_at_it(idle):
    assert listing(idle)["first"] == {
        "id": "first", **BASE, **ALPHA_FIELDS,
        "meta": {"llamaswap": {"family": "llama", "type": "alias", "modelID": "alpha"}, "n_ctx": 8192},
        "status": UNLOADED}


def test_a_peer_model_is_listed_by_qualified_name_and_always_unloaded(idle):
    assert listing(idle)["box/remote"] == {
        "id": "box/remote", **BASE, "name": "box: remote",
        "meta": {"llamaswap": {"type": "peer", "peerID": "box"}}, "status": UNLOADED}


def test_a_selector_is_listed_with_its_strategy_and_targets_over_its_metadata(idle):
    records = listing(idle)
    assert records["warm"] == {
        "id": "warm", **BASE, "name": "Warm one",
        "meta": {"llamaswap": {"purpose": "chat", "type": "selector", "strategy": "warm",
                               "targets": ["alpha", "beta"]}},
        "status": UNLOADED}
    assert records["pinned"]["meta"]["llamaswap"] == {"type": "selector", "strategy": "pin",
                                                      "targets": ["beta", "alpha"]}


def test_a_profile_pin_is_a_bare_record_unless_its_name_is_taken(idle):
    assert requests.put(idle.url("/api/profiles/active"), json={"profile": "coding"}, timeout=5).status_code == 200
    assert chat(idle, "coder").status_code == 200  # beta runs: the pin's record still says unloaded, as Go's
    records = listing(idle)
    assert records["coder"] == {"id": "coder", **BASE, "meta": {"llamaswap": {"type": "profile"}},
                                "status": UNLOADED}
    assert records["first"]["meta"]["llamaswap"]["type"] == "alias", "a pin named like an alias is not listed"
    assert "off" not in records, "a pin to nothing is not listed"


# --------------------------------------------------------------------------- errors and Accept


def test_an_error_is_text_for_a_client_that_accepts_text(server):
    r = chat(server, "nope", headers={"Accept": "text/plain"})
    assert (r.status_code, r.headers["Content-Type"]) == (404, "text/plain")
    assert r.text.startswith("llama-swap: ") and "nope" in r.text


def test_an_error_is_json_for_a_client_that_names_json_and_text(server):
    r = chat(server, "nope", headers={"Accept": "application/json, text/plain, */*"})  # axios's default
    assert (r.status_code, r.headers["Content-Type"]) == (404, "application/json")
    assert "nope" in r.json()["error"]["message"]


def test_an_error_is_a_page_for_a_browser(server):
    r = requests.get(server.url("/props"), params={"model": "<b>nope</b>"}, timeout=5,
                     headers={"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"})
    assert (r.status_code, r.headers["Content-Type"]) == (404, "text/html")
    assert r.text.startswith("<html><body><h1>llama-swap</h1><p>") and "&lt;b&gt;nope&lt;/b&gt;" in r.text


def test_an_error_is_go_s_json_envelope_otherwise(server):
    r = chat(server, "nope", headers={"Accept": "application/json, */*"})
    assert r.status_code == 404 and r.headers["Content-Type"] == "application/json"
    body = r.json()
    assert body["src"] == "llama-swap"
    assert {k: body["error"][k] for k in ("type", "param", "code")} == {
        "type": "invalid_request_error", "param": None, "code": "not_found"}


# --------------------------------------------------------------------------- /running, /unload, and the rest


def test_running_gives_ttl_as_an_integer(idle):
    assert chat(idle, "alpha").status_code == 200
    r = requests.get(idle.url("/running"), timeout=5)
    assert '"ttl":600,' in r.text.replace(" ", "")
    assert r.json()["running"][0]["ttl"] == 600


def test_get_unload_answers_plain_ok_and_stops_everything(idle):
    assert chat(idle, "alpha").status_code == 200
    r = requests.get(idle.url("/unload"), timeout=30)
    assert (r.status_code, r.text) == (200, "OK")
    assert requests.get(idle.url("/running"), timeout=5).json()["running"] == []


def test_wol_health_and_the_favicon_answer(server):
    r = requests.get(server.url("/wol-health"), timeout=5)
    assert (r.status_code, r.text) == (200, "OK")
    r = requests.get(server.url("/favicon.ico"), timeout=5)
    assert r.status_code == 200 and r.headers["Content-Type"].startswith("image/") and r.content


def test_the_server_is_named_llama_swap_in_ps(server):
    master = psutil.Process(server.proc.pid)
    [worker] = master.children()
    assert (master.name(), worker.name()) == ("llama-swap", "llama-swap")
    found = subprocess.run(["pgrep", "-x", "llama-swap"], capture_output=True, text=True).stdout.split()
    assert {master.pid, worker.pid} <= {int(pid) for pid in found}


def test_the_command_line_in_ps_is_llama_swap_and_its_arguments(server):
    pytest.importorskip("setproctitle", reason="the command line needs setproctitle: pip install -r requirements.txt")
    master = psutil.Process(server.proc.pid)
    [worker] = master.children()
    # The arguments stay: whoever tells servers apart by them (the tests' leak checks) still can.
    assert " ".join(master.cmdline()).startswith(f"llama-swap --config {server.config_path} --listen")
    assert " ".join(worker.cmdline()).startswith(f"llama-swap worker --config {server.config_path} --listen")
    found = subprocess.run(["pgrep", "-f", f"^llama-swap .*{server.config_path}"], capture_output=True, text=True)
    assert {int(pid) for pid in found.stdout.split()} == {master.pid, worker.pid}
