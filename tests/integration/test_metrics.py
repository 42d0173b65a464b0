"""``GET /metrics`` against the real server: the per-model series, the upstreams' own metrics, and what it never does.

The simulated upstream serves llama-server's ``/metrics`` with ``--metrics``
(and answers 501 without it, as llama-server does). The page is parsed
with ``prometheus_client.parser``, as Prometheus would read it.
"""

from __future__ import annotations

import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers.server import LlamaSwapServer, fake_cmd, wait_for

CHAT = {"messages": [{"role": "user", "content": "hello metrics world"}]}  # 3 prompt "tokens" (words)


def scrape(server: LlamaSwapServer, **kwargs) -> dict[tuple[str, frozenset], float]:
    """Every sample on the page: (sample name, its labels) -> value."""
    response = requests.get(server.url("/metrics"), timeout=10, **kwargs)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return {(sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(response.text) for sample in family.samples}


def value(samples: dict, name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


def chat(server: LlamaSwapServer, model: str) -> None:
    response = requests.post(server.url("/v1/chat/completions"), json={**CHAT, "model": model}, timeout=30)
    assert response.status_code == 200, response.text


def test_a_request_shows_in_the_models_series_and_its_upstreams_own_metrics_carry_its_name(llama_swap, tmp_path):
    server = llama_swap(f"""
healthCheckTimeout: 15
models:
  llm:
    cmd: {fake_cmd("llm", tmp_path, "--tokens 4 --metrics")}
  plain:
    cmd: {fake_cmd("plain", tmp_path, "--tokens 2")}
  cold:
    cmd: {fake_cmd("cold", tmp_path)}
groups:
  together:
    swap: false
    members: [llm, plain, cold]
""")
    chat(server, "llm")
    chat(server, "plain")
    requests.get(server.url("/running"), timeout=5)
    samples = wait_for(lambda: (s := scrape(server)) and value(
        s, "llamaswap_model_requests_total", model="plain", code="200", outcome="complete") == 1 and s,
        timeout=10, what="the second request to be counted")

    assert value(samples, "llamaswap_model_requests_total", model="llm", code="200", outcome="complete") == 1
    for histogram in ("request_duration_seconds", "time_to_first_byte_seconds", "queue_wait_seconds"):
        assert value(samples, f"llamaswap_model_{histogram}_count", model="llm") == 1, histogram
    assert value(samples, "llamaswap_swaps_total", model="llm", result="ok") == 1
    assert value(samples, "llamaswap_model_load_seconds_count", model="llm") == 1
    assert value(samples, "llamaswap_model_state", model="llm", state="ready") == 1
    assert value(samples, "llamaswap_model_state", model="llm", state="stopped") == 0
    assert value(samples, "llamaswap_model_state", model="cold", state="stopped") == 1
    assert value(samples, "llamaswap_model_requests_in_flight", model="llm") == 0
    assert value(samples, "llamaswap_model_requests_waiting", model="llm") == 0

    # llama-server's own series, labelled with the model they came from.
    assert value(samples, "llamacpp:prompt_tokens_total", model="llm") == 3
    assert value(samples, "llamacpp:tokens_predicted_total", model="llm") == 4
    assert value(samples, "llamacpp:requests_processing", model="llm") == 0
    # "plain" serves no /metrics (501): left out, and counted.
    assert not [key for key in samples if key[0].startswith("llamacpp:") and ("model", "plain") in key[1]]
    assert value(samples, "llamaswap_upstream_scrape_errors_total", model="plain") >= 1
    assert value(samples, "llamaswap_upstream_scrape_errors_total", model="llm") is None

    # prometheus-flask-exporter times the management routes, not the proxied ones.
    assert value(samples, "llamaswap_http_request_duration_seconds_count",
                 method="GET", url_rule="/running", status="200") == 1
    assert not [key for key in samples if ("url_rule", "/v1/chat/completions") in key[1]]
    assert server.starts("cold") == [], "scraping started nobody"


def test_scraping_never_starts_a_stopped_model(llama_swap, tmp_path):
    server = llama_swap(f"""
healthCheckTimeout: 15
models:
  llm:
    cmd: {fake_cmd("llm", tmp_path, "--metrics")}
""")
    for _ in range(3):
        samples = scrape(server)
        assert value(samples, "llamaswap_model_state", model="llm", state="stopped") == 1
    assert not [key for key in samples if key[0].startswith("llamacpp:")]
    assert server.starts("llm") == [] and server.state_of("llm") is None


def test_metrics_needs_a_key_when_keys_are_set(llama_swap, tmp_path):
    server = llama_swap(f"""
apiKeys: [sk-metrics-1]
models:
  llm:
    cmd: {fake_cmd("llm", tmp_path)}
""")
    refused = requests.get(server.url("/metrics"), timeout=5)
    assert refused.status_code == 401
    samples = scrape(server, headers={"Authorization": "Bearer sk-metrics-1"})
    assert value(samples, "llamaswap_model_state", model="llm", state="stopped") == 1
