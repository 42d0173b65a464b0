"""Macros in every value of the config (Go #955), as the running server applies them."""

from __future__ import annotations

import pytest
import requests

from tests.helpers.server import fake_cmd, wait_for

ENV_KEY = "LLAMA_SWAP_TEST_API_KEY"


def bearer(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def models_status(server, key: str) -> int:
    return requests.get(server.url("/v1/models"), headers=bearer(key), timeout=5).status_code


def test_an_api_key_from_a_macro_is_the_key_and_its_literal_text_is_not(llama_swap, tmp_path):
    server = llama_swap(f"""
macros:
  KEY: sk-from-macro-5b1d
apiKeys: ["${{KEY}}"]
models:
  llama:
    cmd: {fake_cmd("llama", tmp_path)}
""")

    assert models_status(server, "sk-from-macro-5b1d") == 200
    assert models_status(server, "${KEY}") == 401


def test_an_api_key_from_the_environment_works_in_flow_style(llama_swap, tmp_path,
                                                             monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(ENV_KEY, "sk-from-env-90ce")
    server = llama_swap(f"""
apiKeys: [${{env.{ENV_KEY}}}]
models:
  llama:
    cmd: {fake_cmd("llama", tmp_path)}
""")

    assert models_status(server, "sk-from-env-90ce") == 200
    assert models_status(server, f"${{env.{ENV_KEY}}}") == 401


def test_a_model_preloaded_through_a_macro_with_port_in_its_check_endpoint_starts_at_boot(
        llama_swap, tmp_path):
    server = llama_swap(f"""
macros:
  main: llama
hooks:
  on_startup:
    preload: ["${{main}}"]
models:
  llama:
    cmd: {fake_cmd("llama", tmp_path)}
    checkEndpoint: /health?port=${{PORT}}
""")

    wait_for(lambda: server.state_of("llama") == "ready", timeout=15,
             what=f"llama preloaded\n{server.log()}")
    assert len(server.starts("llama")) == 1
