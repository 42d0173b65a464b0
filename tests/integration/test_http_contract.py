"""What a curl user sees: listings, errors and their JSON, unloading, a bad config at start."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil
import requests

from tests.helpers.server import fake_cmd, wait_for
from tests.helpers.upstream import REPO_ROOT


def chat(name) -> dict:
    return {"model": name, "messages": [{"role": "user", "content": "hi"}]}


def config_for(tmp_path) -> str:
    return f"""
healthCheckTimeout: 15
models:
  llama:
    name: "Llama 3"
    description: "a listed model"
    cmd: {fake_cmd("llama", tmp_path, "--tokens 3")}
    aliases: [gpt-4o-mini]
  hidden:
    unlisted: true
    cmd: {fake_cmd("hidden", tmp_path)}
  crashy:
    cmd: {fake_cmd("crashy", tmp_path, "--load-time 5 --exit-after-start 0.1")}
  missing:
    cmd: /nonexistent/llama-server --port ${{PORT}}
"""


def assert_openai_error(response: requests.Response, status: int, code: str, *, contains: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error) == {"message", "type", "param", "code"}
    assert contains in error["message"]


def test_models_are_listed_sorted_without_unlisted_ones(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    listing = requests.get(server.url("/v1/models"), timeout=5).json()
    assert listing["object"] == "list"
    assert [m["id"] for m in listing["data"]] == ["crashy", "llama", "missing"]
    llama = listing["data"][1]
    assert llama["object"] == "model" and llama["owned_by"] == "llama-swap"
    assert llama["name"] == "Llama 3" and llama["description"] == "a listed model"
    assert "name" not in listing["data"][0]


def test_bad_requests_get_openai_errors_and_the_next_request_works(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    url = server.url("/v1/chat/completions")
    assert_openai_error(requests.post(url, data="not json", timeout=5), 400, "bad_request", contains="JSON")
    assert_openai_error(requests.post(url, json=[1, 2], timeout=5), 400, "bad_request", contains="object")
    assert_openai_error(requests.post(url, json={"messages": []}, timeout=5), 400, "bad_request", contains="model")
    assert_openai_error(requests.post(url, json={"model": 7}, timeout=5), 400, "bad_request", contains="model")
    assert_openai_error(requests.post(url, json=chat("nope"), timeout=5), 404, "not_found", contains="nope")
    # An alias and an unlisted model are both served.
    r = requests.post(url, json=chat("gpt-4o-mini"), timeout=30)
    assert r.status_code == 200 and r.json()["model"] == "llama"
    assert requests.post(url, json=chat("hidden"), timeout=30).status_code == 200


def test_upstream_that_fails_to_start_is_a_502_with_the_reason(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    url = server.url("/v1/chat/completions")
    assert_openai_error(requests.post(url, json=chat("crashy"), timeout=30), 502, "bad_gateway",
                        contains="exited prematurely with code 3")
    assert_openai_error(requests.post(url, json=chat("missing"), timeout=30), 502, "bad_gateway",
                        contains="/nonexistent/llama-server")
    assert requests.post(url, json=chat("llama"), timeout=30).status_code == 200


def test_an_upstream_that_never_becomes_healthy_is_a_502_once_its_health_check_times_out_and_is_stopped(
        llama_swap, tmp_path):
    # 15 s: the least healthCheckTimeout there is (a smaller one is raised to it, as in Go).
    server = llama_swap(f"""
healthCheckTimeout: 15
models:
  sick:
    cmd: {fake_cmd("sick", tmp_path, "--never-healthy")}
  llama:
    cmd: {fake_cmd("llama", tmp_path, "--tokens 3")}
""")
    url = server.url("/v1/chat/completions")
    began = time.monotonic()
    r = requests.post(url, json=chat("sick"), timeout=60)
    waited = time.monotonic() - began
    assert_openai_error(r, 502, "bad_gateway", contains="model sick: health check timed out after 15s")
    assert 15 <= waited < 20, f"answered after {waited:.1f}s"
    (pid,) = server.starts("sick")
    server.wait_for_log(f"sick: health check timed out after 15s; stopping pid {pid}")
    wait_for(lambda: not psutil.pid_exists(pid) and server.upstream_processes() == [], timeout=5,
             what="the unhealthy upstream to be stopped")
    assert server.state_of("sick") is None
    r = requests.post(url, json=chat("llama"), timeout=30)
    assert r.status_code == 200 and r.json()["model"] == "llama"
    assert server.starts("sick") == [pid]  # not started again


def test_running_lists_loaded_models_and_unload_stops_them(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    assert requests.get(server.url("/running"), timeout=5).json() == {"running": []}
    assert requests.post(server.url("/v1/chat/completions"), json=chat("llama"), timeout=30).status_code == 200
    running = requests.get(server.url("/running"), timeout=5).json()["running"]
    assert [(r["model"], r["state"]) for r in running] == [("llama", "ready")]
    assert set(running[0]) == {"model", "state", "cmd", "proxy", "ttl", "name", "description"}
    assert "-m simulator" in running[0]["cmd"]
    (pid,) = server.starts("llama")

    r = requests.post(server.url("/api/models/unload/gpt-4o-mini"), timeout=30)
    assert (r.status_code, r.text) == (200, "OK")
    assert requests.get(server.url("/running"), timeout=5).json() == {"running": []}
    assert server.upstream_processes() == []

    assert requests.post(server.url("/v1/chat/completions"), json=chat("llama"), timeout=30).status_code == 200
    r = requests.post(server.url("/api/models/unload"), timeout=30)
    assert (r.status_code, r.json()) == (200, {"msg": "ok"})
    assert requests.get(server.url("/running"), timeout=5).json() == {"running": []}
    assert len(server.starts("llama")) == 2 and pid not in server.starts("llama")[1:]
    r = requests.post(server.url("/api/models/unload/nope"), timeout=5)
    assert r.status_code == 404
    r = requests.post(server.url("/api/models/unload/" + "n" * 8000), timeout=5)  # the longest a URL may be
    assert r.status_code == 404 and r.json()["error"]["message"] == "model not found: " + "n" * 200 + "…"


def test_health_and_root(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    r = requests.get(server.url("/health"), timeout=5)
    assert (r.status_code, r.text) == (200, "OK")
    r = requests.get(server.url("/"), allow_redirects=False, timeout=5)
    assert (r.status_code, r.headers["Location"]) == (302, "ui/")


def test_a_bad_config_fails_at_start_naming_the_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("models:\n  llama:\n    cmd: llama-server\n    ttl: soon\n")
    result = subprocess.run([sys.executable, "-m", "app", "--config", str(bad), "--listen", "127.0.0.1:0"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "models.llama.ttl" in result.stderr


def test_version_flag_prints_and_exits():
    result = subprocess.run([sys.executable, "-m", "app", "-version"], cwd=REPO_ROOT,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "version" in result.stdout


def test_a_crashed_upstream_is_restarted_by_the_next_request(llama_swap, tmp_path):
    config = f"""
models:
  flaky:
    cmd: {fake_cmd("flaky", tmp_path, "--crash-after 1")}
"""
    server = llama_swap(config)
    url = server.url("/v1/chat/completions")
    assert requests.post(url, json=chat("flaky"), timeout=30).status_code == 200
    wait_for(lambda: server.state_of("flaky") is None, timeout=5, what="the crash to be noticed")
    assert requests.post(url, json=chat("flaky"), timeout=30).status_code == 200
    assert len(server.starts("flaky")) == 2


def test_watch_config_reloads_a_valid_change_and_keeps_running_on_an_invalid_one(llama_swap, tmp_path):
    server = llama_swap(f"models:\n  old:\n    cmd: {fake_cmd('old', tmp_path)}\n", "--watch-config")
    assert requests.post(server.url("/v1/chat/completions"), json=chat("old"), timeout=30).status_code == 200

    server.config_path.write_text("models:\n  old:\n    cmd: x\n    ttl: soon\n")
    wait_for(lambda: "is invalid, keeping the running config" in server.log(), timeout=10,
             what="the invalid edit to be reported")
    server.wait_for_log("models.old.ttl")
    assert server.state_of("old") == "ready"

    server.config_path.write_text(f"models:\n  new:\n    cmd: {fake_cmd('new', tmp_path)}\n")

    def listed() -> list[str]:
        return [m["id"] for m in requests.get(server.url("/v1/models"), timeout=5).json()["data"]]

    wait_for(lambda: listed() == ["new"], timeout=10, what="the new config to be served")
    wait_for(lambda: server.upstream_processes() == [], timeout=10, what="the removed model to be stopped")
    assert requests.post(server.url("/v1/chat/completions"), json=chat("new"), timeout=30).status_code == 200
    assert requests.post(server.url("/v1/chat/completions"), json=chat("old"), timeout=30).status_code == 404


def test_upstream_output_reaches_the_log_line_by_line_when_asked(llama_swap, tmp_path):
    server = llama_swap(f"logToStdout: both\nmodels:\n  llama:\n    cmd: {fake_cmd('llama', tmp_path)}\n")
    assert requests.post(server.url("/v1/chat/completions"), json=chat("llama"), timeout=30).status_code == 200
    wait_for(lambda: "main: server is listening on http://127.0.0.1:" in server.log(), timeout=5,
             what="the upstream's own output in the server log")
    server.wait_for_log("[INFO] llama: ready, pid")


def test_proxy_only_logging_keeps_upstream_output_out(llama_swap, tmp_path):
    server = llama_swap(f"models:\n  llama:\n    cmd: {fake_cmd('llama', tmp_path)}\n")
    assert requests.post(server.url("/v1/chat/completions"), json=chat("llama"), timeout=30).status_code == 200
    wait_for(lambda: "[INFO] llama: POST /v1/chat/completions 200" in server.log(), timeout=5,
             what="the request's log line")
    assert "server is listening" not in server.log()
