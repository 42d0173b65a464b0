"""A model with a proxy and no cmd: the config loads, the other models serve, only that model's requests fail."""

from __future__ import annotations

import requests

from tests.helpers.server import fake_cmd, free_port, wait_for
from tests.integration.test_http_contract import assert_openai_error, chat


def test_a_model_without_cmd_fails_alone_with_gos_message(llama_swap, tmp_path):
    server = llama_swap(f"""
models:
  local:
    cmd: {fake_cmd("local", tmp_path)}
  remote:
    proxy: http://127.0.0.1:{free_port()}
""")
    url = server.url("/v1/chat/completions")
    listing = requests.get(server.url("/v1/models"), timeout=5).json()
    assert [m["id"] for m in listing["data"]] == ["local", "remote"]

    assert requests.post(url, json=chat("local"), timeout=30).status_code == 200
    assert_openai_error(requests.post(url, json=chat("remote"), timeout=30), 502, "bad_gateway",
                        contains="unable to get sanitized command: empty command (model remote has no cmd")
    # The log is written behind the answer (the stdout writer): look for the line until it is there.
    wait_for(lambda: "remote: cannot start: it has no cmd" in server.log(), timeout=5, what="the log line")
    assert requests.post(url, json=chat("local"), timeout=30).status_code == 200
