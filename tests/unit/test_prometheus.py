"""The Prometheus side, as plain objects: per-model series, scrape-time gauges, upstream relabelling, the page.

Each test builds its own ``CollectorRegistry`` (as each app does) and reads
it back with ``get_sample_value`` or by parsing the rendered page with
``prometheus_client.parser``, as Prometheus would.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from gevent.event import Event
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from app.observe.bus import EventBus
from app.observe.exchange import Observers, Outcome
from app.observe.exposition import render
from app.observe.model_gauges import ModelGauges
from app.observe.model_metrics import ModelMetrics
from app.observe.upstream_metrics import UpstreamMetricsError, fetch_with, merge, relabel, scrape_ready
from scheduler.events import ModelStateChanged, SwapEnded
from scheduler.fifo import Occupancy
from scheduler.state import ProcessState
from tests.helpers.fakes import wait_until

STOPPED, STARTING, READY = ProcessState.STOPPED, ProcessState.STARTING, ProcessState.READY


@pytest.fixture
def metrics() -> ModelMetrics:
    return ModelMetrics(CollectorRegistry())


def sample(metrics: ModelMetrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def parse(page: bytes) -> dict:
    return {family.name: family for family in text_string_to_metric_families(page.decode())}


# --------------------------------------------------------------------------- the exchange observer


def test_an_exchange_that_ends_counts_its_request_and_observes_its_times(metrics: ModelMetrics):
    observers = Observers()
    observers.add(metrics)
    exchange = observers.open("llm", "POST", "/v1/chat/completions")
    exchange.granted(queued=0.5, loading=0.25)
    exchange.responded(200, [])
    exchange.sent(b"data: tok0\n\n")
    exchange.end(Outcome.COMPLETE)

    assert sample(metrics, "llamaswap_model_requests_total", model="llm", code="200", outcome="complete") == 1
    assert sample(metrics, "llamaswap_model_queue_wait_seconds_sum", model="llm") == 0.5
    assert sample(metrics, "llamaswap_model_request_duration_seconds_count", model="llm") == 1
    assert sample(metrics, "llamaswap_model_time_to_first_byte_seconds_count", model="llm") == 1
    assert sample(metrics, "llamaswap_model_request_duration_seconds_sum", model="llm") == exchange.total


def test_refused_and_abandoned_exchanges_are_counted_by_status_and_outcome(metrics: ModelMetrics):
    observers = Observers()
    observers.add(metrics)
    observers.open("llm", "POST", "/v1/chat/completions").refuse(429, "Too many requests")
    observers.open("llm", "POST", "/v1/chat/completions").end(Outcome.CLIENT_GONE)  # gone while queued

    assert sample(metrics, "llamaswap_model_requests_total", model="llm", code="429", outcome="refused") == 1
    assert sample(metrics, "llamaswap_model_requests_total", model="llm", code="none", outcome="client_gone") == 1
    assert sample(metrics, "llamaswap_model_time_to_first_byte_seconds_count", model="llm") is None, \
        "no byte reached the client: no first-byte time"
    assert sample(metrics, "llamaswap_model_queue_wait_seconds_count", model="llm") is None, "never granted"


def test_count_tokens_adds_what_is_known_and_skips_what_is_not(metrics: ModelMetrics):
    metrics.count_tokens("llm", 12, 30)
    metrics.count_tokens("llm", 8, None)
    metrics.count_tokens("llm", -1, 0)
    assert sample(metrics, "llamaswap_model_tokens_total", model="llm", type="input") == 20
    assert sample(metrics, "llamaswap_model_tokens_total", model="llm", type="output") == 30


# --------------------------------------------------------------------------- the bus


def test_swaps_are_counted_by_result_and_a_start_to_ready_is_a_load_time(metrics: ModelMetrics):
    metrics.on_event(SwapEnded(1, "llm", None, 2.5, at=10.0))
    metrics.on_event(SwapEnded(2, "llm", "exited with code 1", 0.5, at=11.0))
    metrics.on_event(ModelStateChanged("llm", STOPPED, STARTING, 42, at=20.0))
    metrics.on_event(ModelStateChanged("llm", STARTING, READY, 42, at=23.0))
    metrics.on_event(ModelStateChanged("llm", STOPPED, STARTING, 43, at=30.0))
    metrics.on_event(ModelStateChanged("llm", STARTING, STOPPED, None, at=31.0))  # a failed start: no load time

    assert sample(metrics, "llamaswap_swaps_total", model="llm", result="ok") == 1
    assert sample(metrics, "llamaswap_swaps_total", model="llm", result="error") == 1
    assert sample(metrics, "llamaswap_swap_duration_seconds_sum", model="llm") == 3.0
    assert sample(metrics, "llamaswap_model_load_seconds_count", model="llm") == 1
    assert sample(metrics, "llamaswap_model_load_seconds_sum", model="llm") == 3.0


def test_follow_reads_the_bus_until_closed(metrics: ModelMetrics):
    bus = EventBus()
    reader = metrics.follow(bus)
    bus.publish(SwapEnded(1, "llm", None, 1.0, at=1.0))
    wait_until(lambda: sample(metrics, "llamaswap_swaps_total", model="llm", result="ok") == 1, "the swap counted")
    metrics.close()
    wait_until(lambda: reader.dead, "the reader to end")
    assert bus.subscribers == 0


# --------------------------------------------------------------------------- scrape-time gauges


@dataclass(frozen=True)
class FakeSpec:
    proxy_url: str


@dataclass
class FakeProcess:
    state: ProcessState
    spec: FakeSpec = FakeSpec("http://127.0.0.1:1")


@dataclass
class FakeRouter:
    processes: dict
    counts: dict

    def occupancy(self) -> dict:
        return self.counts


def test_model_gauges_show_every_models_state_and_its_requests_at_scrape_time():
    router = FakeRouter({"a": FakeProcess(READY), "b": FakeProcess(STOPPED)},
                        {"a": Occupancy(in_flight=2, waiting=3, queued=1)})
    registry = CollectorRegistry()
    registry.register(ModelGauges(lambda: router))

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert value("llamaswap_model_state", model="a", state="ready") == 1
    assert value("llamaswap_model_state", model="a", state="stopped") == 0
    assert value("llamaswap_model_state", model="b", state="stopped") == 1
    assert value("llamaswap_model_requests_in_flight", model="a") == 2
    assert value("llamaswap_model_requests_waiting", model="a") == 3
    assert value("llamaswap_model_queue_depth", model="a") == 1
    assert value("llamaswap_model_requests_in_flight", model="b") == 0
    router.processes["b"].state = STARTING
    router.counts = {"b": Occupancy(0, 1, 0)}
    assert value("llamaswap_model_state", model="b", state="starting") == 1, "read again at each scrape"
    assert value("llamaswap_model_requests_waiting", model="b") == 1
    assert value("llamaswap_model_requests_in_flight", model="a") == 0


# --------------------------------------------------------------------------- upstream relabelling

LLAMA = """# HELP llamacpp:prompt_tokens_total Number of prompt tokens processed.
# TYPE llamacpp:prompt_tokens_total counter
llamacpp:prompt_tokens_total 12
# HELP llamacpp:requests_processing Number of requests processing.
# TYPE llamacpp:requests_processing gauge
llamacpp:requests_processing 1
"""

VLLM = """# HELP vllm:e2e_request_latency_seconds Histogram of end to end request latency in seconds.
# TYPE vllm:e2e_request_latency_seconds histogram
vllm:e2e_request_latency_seconds_bucket{le="1.0",model="org/Qwen3-8B"} 1
vllm:e2e_request_latency_seconds_bucket{le="+Inf",model="org/Qwen3-8B"} 2
vllm:e2e_request_latency_seconds_sum{model="org/Qwen3-8B"} 3.5
vllm:e2e_request_latency_seconds_count{model="org/Qwen3-8B"} 2
# HELP rpc_seconds A summary.
# TYPE rpc_seconds summary
rpc_seconds{quantile="0.5"} 0.2
rpc_seconds_sum 1.0
rpc_seconds_count 4
# HELP odd A label value to escape.
# TYPE odd gauge
odd{path="C:\\\\models\\\\q\\"8\\"\\nb"} 1
"""


def samples_of(family) -> dict:
    return {(s.name, frozenset(s.labels.items())): s.value for s in family.samples}


def test_relabel_adds_the_model_to_every_sample_of_every_family_kind():
    families = {f.name: f for f in relabel("qwen", VLLM)}
    histogram = samples_of(families["vllm:e2e_request_latency_seconds"])
    assert histogram[("vllm:e2e_request_latency_seconds_bucket",
                      frozenset({"le": "+Inf", "model": "qwen", "exported_model": "org/Qwen3-8B"}.items()))] == 2
    assert all(("model", "qwen") in labels for _, labels in histogram)
    summary = samples_of(families["rpc_seconds"])
    assert summary[("rpc_seconds", frozenset({"quantile": "0.5", "model": "qwen"}.items()))] == 0.2
    assert summary[("rpc_seconds_count", frozenset({"model": "qwen"}.items()))] == 4


def test_an_upstreams_own_model_label_is_kept_as_exported_model():
    (family, *_) = relabel("qwen", VLLM)
    labels = family.samples[0].labels
    assert labels["model"] == "qwen" and labels["exported_model"] == "org/Qwen3-8B"


def test_merge_writes_help_and_type_once_and_keeps_every_models_samples():
    page = render([], {"b": relabel("b", LLAMA), "a": relabel("a", LLAMA)}).decode()
    assert page.count("# TYPE llamacpp:prompt_tokens_total counter") == 1
    assert page.count("# HELP llamacpp:requests_processing") == 1
    counter = samples_of(parse(page.encode())["llamacpp:prompt_tokens"])
    assert counter == {("llamacpp:prompt_tokens_total", frozenset({("model", "a")})): 12,
                       ("llamacpp:prompt_tokens_total", frozenset({("model", "b")})): 12}


def test_merge_leaves_out_a_family_whose_type_clashes_and_names_the_app_already_uses():
    as_counter = relabel("a", "# TYPE jobs_total counter\njobs_total 1\n# TYPE mine_total counter\nmine_total 1\n")
    as_gauge = relabel("b", "# TYPE jobs_total gauge\njobs_total 5\n")
    merged = merge({"a": as_counter, "b": as_gauge}, taken={"mine_total"})
    assert [(f.name, f.type) for f in merged] == [("jobs", "counter")]
    assert [s.labels["model"] for s in merged[0].samples] == ["a"]


def test_label_values_survive_the_round_trip_escaped():
    page = render([], {"m": relabel("m", VLLM)})
    odd = parse(page)["odd"].samples[0]
    assert odd.labels == {"path": 'C:\\models\\q"8"\nb', "model": "m"}


def test_relabel_refuses_text_that_is_not_prometheus():
    with pytest.raises(ValueError):
        relabel("m", "<html><body>not metrics</body></html>")


# --------------------------------------------------------------------------- the page and the scrape


def test_the_page_has_the_apps_series_then_the_upstreams_and_survives_a_broken_collector(metrics: ModelMetrics):
    class Broken:
        def collect(self):
            raise RuntimeError("sensor gone")

    metrics.count_tokens("llm", 3, 4)
    page = render([metrics.registry, Broken()], {"llm": relabel("llm", LLAMA)}).decode()
    assert page.index("llamaswap_model_tokens_total") < page.index("llamacpp:prompt_tokens_total")
    assert 'llamacpp:prompt_tokens_total{model="llm"} 12.0' in page


def test_scrape_ready_asks_only_ready_models_and_counts_the_failures_of_those_still_ready():
    processes = {"up": FakeProcess(READY, FakeSpec("http://up")), "down": FakeProcess(STOPPED, FakeSpec("http://down")),
                 "broken": FakeProcess(READY, FakeSpec("http://broken")),
                 "leaving": FakeProcess(READY, FakeSpec("http://leaving"))}
    asked: list[str] = []

    def fetch(url: str) -> str:
        asked.append(url)
        if url == "http://broken":
            raise UpstreamMetricsError("/metrics answered 404")
        if url == "http://leaving":
            processes["leaving"].state = STOPPED  # unloaded while we asked
            raise ConnectionError("refused")
        return LLAMA

    errors: list[str] = []
    scraped = scrape_ready(processes, fetch, errors.append)
    assert sorted(asked) == ["http://broken", "http://leaving", "http://up"]
    assert list(scraped) == ["up"] and errors == ["broken"]


def test_scrape_ready_gives_up_on_a_slow_upstream_at_the_deadline():
    processes = {"slow": FakeProcess(READY, FakeSpec("http://slow")), "up": FakeProcess(READY, FakeSpec("http://up"))}
    never = Event()

    def fetch(url: str) -> str:
        if url == "http://slow":
            never.wait()
        return LLAMA

    errors: list[str] = []
    assert list(scrape_ready(processes, fetch, errors.append, deadline=0.05)) == ["up"]
    assert errors == ["slow"]


class FakeResponse:
    def __init__(self, status: int, content_type: str, body: bytes):
        self.status_code, self.headers, self.body, self.closed = status, {"Content-Type": content_type}, body, False

    def iter_content(self, chunk_size: int):
        yield self.body

    def close(self) -> None:
        self.closed = True


@pytest.mark.parametrize("response, error", [
    (FakeResponse(200, "text/plain; version=0.0.4", LLAMA.encode()), None),
    (FakeResponse(501, "application/json", b'{"error": "start it with --metrics"}'), "answered 501"),
    (FakeResponse(200, "application/json", b"{}"), "not Prometheus text"),
])
def test_fetch_takes_only_a_200_prometheus_text_and_always_closes_the_response(response, error):
    sent = []

    def send(method, base_url, path, headers, body, timeout):
        sent.append((method, base_url + path))
        return response

    fetch = fetch_with(send)
    if error is None:
        assert fetch("http://up") == LLAMA
    else:
        with pytest.raises(UpstreamMetricsError, match=error):
            fetch("http://up")
    assert sent == [("GET", "http://up/metrics")] and response.closed
