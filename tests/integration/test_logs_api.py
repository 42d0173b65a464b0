"""``/logs`` and ``/logs/stream*`` against the real server, read as a client (curl, the UI) reads them."""

from __future__ import annotations

import signal
import socket
import threading
import time

import psutil
import requests

from tests.helpers.server import fake_cmd, hang_up, wait_for

REQUEST_LINE = "srv  log_server_r: request: POST /v1/chat/completions"
LISTENING = "main: server is listening on"


def chat(model: str) -> dict:
    return {"model": model, "messages": [{"role": "user", "content": "hi"}]}


def config_for(tmp_path, extra: str = "") -> str:
    return f"""
healthCheckTimeout: 15
{extra}
models:
  org/llama:
    cmd: {fake_cmd("llama", tmp_path)}
    aliases: [llama]
  quiet:
    cmd: {fake_cmd("quiet", tmp_path)}
"""


class Tail:
    """A live ``/logs/stream*`` read in a thread, as ``curl -N`` would; ``text`` is what came so far."""

    def __init__(self, url: str, **kwargs):
        self.response = requests.get(url, stream=True, timeout=(5, 60), **kwargs)
        self.text = ""
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        try:
            for chunk in self.response.iter_content(None):
                self.text += chunk.decode("utf-8", "replace")
        except requests.RequestException:
            pass
        finally:
            self.ended.set()

    def close(self) -> None:
        hang_up(self.response)

    def wait_for(self, needle: str, times: int = 1) -> str:
        return wait_for(lambda: self.text.count(needle) >= times, timeout=10,
                        what=f"{needle!r} {times} time(s) in the stream\n{self.text}")


def test_logs_answers_the_proxy_history_as_text_and_sends_a_browser_to_the_ui(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    answer = requests.get(server.url("/logs"), timeout=5)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain")
    assert "[INFO] llama-swap ready: 2 models" in answer.text
    browser = requests.get(server.url("/logs"), headers={"Accept": "text/html,application/xhtml+xml"},
                           allow_redirects=False, timeout=5)
    assert browser.status_code == 302 and browser.headers["Location"] == "ui/"


def test_a_models_stream_by_a_slashed_id_shows_its_output_live_after_a_request(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    assert requests.post(server.url("/v1/chat/completions"), json=chat("llama"), timeout=30).status_code == 200

    with_history = Tail(server.url("/logs/stream/org/llama"))
    assert with_history.response.headers["Content-Type"].startswith("text/plain")
    assert with_history.response.headers["X-Accel-Buffering"] == "no"
    with_history.wait_for(LISTENING)  # printed while it started, before this stream was opened

    live_only = Tail(server.url("/logs/stream/llama?no-history"))  # by its alias
    upstream = Tail(server.url("/logs/stream/upstream?no-history"))
    quiet = Tail(server.url("/logs/stream/quiet?no-history"))
    assert requests.post(server.url("/v1/chat/completions"), json=chat("org/llama"), timeout=30).status_code == 200
    live_only.wait_for(REQUEST_LINE)
    upstream.wait_for(REQUEST_LINE)
    with_history.wait_for(REQUEST_LINE, times=2)  # the history's line, then the live one
    assert LISTENING not in live_only.text
    assert with_history.text.count(REQUEST_LINE) == 2  # neither lost nor sent twice
    assert quiet.text == ""  # another model's output stays out of its log
    for tail in (with_history, live_only, upstream, quiet):
        tail.close()


def test_the_proxy_stream_and_the_mux_carry_the_proxys_lines_not_the_upstreams(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    proxy, mux = Tail(server.url("/logs/stream/proxy")), Tail(server.url("/logs/stream"))
    for tail in (proxy, mux):
        tail.wait_for("[INFO] llama-swap ready")
    assert requests.post(server.url("/v1/chat/completions"), json=chat("llama"), timeout=30).status_code == 200
    for tail in (proxy, mux):
        tail.wait_for("[INFO] org/llama: POST /v1/chat/completions 200")
    assert REQUEST_LINE not in mux.text and LISTENING not in requests.get(server.url("/logs"), timeout=5).text
    for tail in (proxy, mux):
        tail.close()


def test_log_to_stdout_both_puts_the_upstreams_output_in_the_mux(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path, "logToStdout: both"))
    assert requests.post(server.url("/v1/chat/completions"), json=chat("llama"), timeout=30).status_code == 200
    wait_for(lambda: REQUEST_LINE in requests.get(server.url("/logs"), timeout=5).text, timeout=10,
             what="the upstream's request line in /logs")
    assert "[INFO] llama-swap ready" in requests.get(server.url("/logs"), timeout=5).text


def test_an_unknown_logger_is_a_400_naming_the_choices(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    for name in ("nope", "org/nope", "org"):
        answer = requests.get(server.url(f"/logs/stream/{name}"), timeout=5)
        assert answer.status_code == 400, name
        assert "invalid logger. Use 'proxy', 'upstream' or a model's ID" in answer.text


def test_a_client_hanging_up_on_a_silent_stream_is_let_go_at_once(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    sock = socket.create_connection(("127.0.0.1", server.port))
    sock.sendall(b"GET /logs/stream/quiet?no-history HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(5)
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")  # the headers come at once, before any log line
    client_port = sock.getsockname()[1]
    (worker,) = psutil.Process(server.proc.pid).children()
    assert any(c.raddr and c.raddr.port == client_port for c in worker.net_connections())
    sock.close()
    # Nothing is written to that log: only the hang-up watch can end the stream.
    wait_for(lambda: all(not c.raddr or c.raddr.port != client_port for c in worker.net_connections()),
             timeout=5, what="the worker to close the departed client's connection")


def test_open_streams_do_not_hold_up_the_servers_exit(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path))
    tails = [Tail(server.url("/logs/stream")), Tail(server.url("/logs/stream/quiet"))]
    tails[0].wait_for("llama-swap ready")
    began = time.monotonic()
    server.proc.send_signal(signal.SIGTERM)
    server.proc.wait(timeout=30)
    # gunicorn would wait its graceful_timeout (10 s) for a stream that never ends.
    assert time.monotonic() - began < 5
    assert all(tail.ended.wait(5) for tail in tails)


def test_the_logs_need_an_api_key_when_keys_are_set(llama_swap, tmp_path):
    server = llama_swap(config_for(tmp_path, "apiKeys: [sk-logs-1]"))
    for path in ("/logs", "/logs/stream?no-history", "/logs/stream/proxy", "/logs/stream/org/llama"):
        assert requests.get(server.url(path), timeout=5).status_code == 401, path
    assert requests.get(server.url("/logs"), headers={"Authorization": "Bearer sk-logs-1"},
                        timeout=5).status_code == 200
