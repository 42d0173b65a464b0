"""Nothing a request does not own blocks the worker's one gevent hub.

Against the real server: a stdout that nobody reads (a pipe that fills and
stays full), with an upstream that logs heavily, must not slow the streams
other clients are reading; the log lines that did not fit are dropped, and
the histories (``/logs``) still have them.
"""

from __future__ import annotations

import subprocess
import time

import requests

from tests.helpers.server import fake_cmd, wait_for


def chat(name: str, stream: bool = False) -> dict:
    return {"model": name, "stream": stream, "messages": [{"role": "user", "content": "hello"}]}


def test_a_stdout_nobody_reads_does_not_stall_streams_while_an_upstream_logs_heavily(llama_swap, tmp_path):
    server = llama_swap(f"""
logToStdout: both
healthCheckTimeout: 15
models:
  chatty:
    cmd: {fake_cmd("chatty", tmp_path, "--log-rate 2000 --tokens 20 --token-delay 0.02")}
""", stdout=subprocess.PIPE)  # never read: 64 KB in, every further write to it blocks
    assert requests.post(server.url("/v1/chat/completions"), json=chat("chatty"), timeout=30).status_code == 200
    # More than a pipe's 64 KB has been logged for stdout by now: every write to it would block.
    wait_for(lambda: len(requests.get(server.url("/logs"), timeout=5).content) > 90_000, timeout=10,
             what="the chatty upstream to fill the pipe")
    for _ in range(3):
        began = time.monotonic()
        with requests.post(server.url("/v1/chat/completions"), json=chat("chatty", stream=True), stream=True,
                           timeout=5) as r:
            body = b"".join(r.iter_content(None))
        took = time.monotonic() - began
        assert r.status_code == 200 and body.rstrip().endswith(b"data: [DONE]"), body[-200:]
        assert took < 2.5, f"a 0.4 s stream took {took:.1f}s"
        began = time.monotonic()
        assert requests.get(server.url("/health"), timeout=5).status_code == 200
        assert time.monotonic() - began < 0.5
    assert b"chatty line" in requests.get(server.url("/logs"), timeout=5).content
