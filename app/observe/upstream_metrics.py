"""The loaded upstreams' own ``/metrics`` (llama-server ``--metrics``, vLLM), re-exported with a ``model`` label.

``scrape_ready`` reads the router's process states and GETs ``/metrics``
from each model that is READY, all at once (one greenlet each) within a
hard deadline. It never asks the router for anything: no lease, no start,
no hold on a model; a model stopped between the look and the GET is simply
missing from this scrape. An upstream that fails (unreachable, not 200, not
Prometheus text, unparseable, too slow) is left out and reported through
``on_error``, unless it stopped being ready meanwhile (then the failure
says nothing about it).

``relabel`` parses one upstream's text and adds ``model="<id>"`` to every
sample. A label the upstream itself calls ``model`` is kept as
``exported_model`` (what Prometheus does with a target's label that clashes
with its own, ``honor_labels: false``). ``merge`` joins the families of all
upstreams by name, so each family's HELP and TYPE are written once: the
first model's (in model order) wins; a later upstream whose family of that
name has another type is left out for that family (two TYPEs would make
the page invalid), as is any family whose name the proxy's own metrics
already use.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

import gevent
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families

from scheduler.state import ProcessState

log = logging.getLogger("llama-swap.observe")

MODEL_LABEL = "model"
EXPORTED_MODEL_LABEL = "exported_model"
SCRAPE_TIMEOUT = 2.0  # seconds, for each upstream's connect and for its whole answer
MAX_BODY = 16 * 1024 * 1024  # an upstream's /metrics larger than this is refused
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"

# base URL -> the page's text; raises (anything) when there is no usable page.
Fetch = Callable[[str], str]


class UpstreamMetricsError(Exception):
    """An upstream's /metrics could not be used."""


class ScrapeTarget(Protocol):
    @property
    def state(self) -> ProcessState: ...

    @property
    def spec(self) -> Any: ...  # ``scheduler.process.ProcessSpec``: ``proxy_url``


def fetch_with(send: Callable[..., Any], timeout: float = SCRAPE_TIMEOUT) -> Fetch:
    """A ``Fetch`` through ``send`` (``app.relay.transport.UpstreamTransport.send``: pooled, streamed)."""

    def fetch(base_url: str) -> str:
        response = send("GET", base_url, "/metrics", {"Accept": ACCEPT}, None, timeout=(timeout, timeout))
        try:
            if response.status_code != 200:
                raise UpstreamMetricsError(f"/metrics answered {response.status_code}")
            content_type = response.headers.get("Content-Type", "")
            if not content_type.startswith("text/plain"):
                raise UpstreamMetricsError(f"/metrics is {content_type or 'untyped'}, not Prometheus text")
            body = bytearray()
            for chunk in response.iter_content(chunk_size=65536):
                body += chunk
                if len(body) > MAX_BODY:
                    raise UpstreamMetricsError(f"/metrics is larger than {MAX_BODY} bytes")
            return body.decode("utf-8")
        finally:
            response.close()

    return fetch


def scrape_ready(processes: Mapping[str, ScrapeTarget], fetch: Fetch, on_error: Callable[[str], None],
                 deadline: float = SCRAPE_TIMEOUT + 0.5) -> dict[str, list[Metric]]:
    """The READY upstreams' metrics by model, relabelled; failures reported to ``on_error(model)``."""
    targets = {model: process.spec.proxy_url for model, process in processes.items()
               if process.state is ProcessState.READY}
    jobs = {model: gevent.spawn(_scrape_one, model, url, fetch) for model, url in sorted(targets.items())}
    gevent.joinall(list(jobs.values()), timeout=deadline)
    per_model: dict[str, list[Metric]] = {}
    for model, job in jobs.items():
        if not job.ready():
            job.kill(block=False)
            error: BaseException | None = UpstreamMetricsError(f"no answer within {deadline}s")
        else:
            error = job.exception
        if error is None:
            per_model[model] = job.value
        elif processes[model].state is ProcessState.READY:
            log.info("%s: /metrics not scraped: %s", model, error)
            on_error(model)
    return per_model


def _scrape_one(model: str, base_url: str, fetch: Fetch) -> list[Metric]:
    return relabel(model, fetch(base_url))


def relabel(model: str, text: str) -> list[Metric]:
    """Every family in ``text``, each sample labelled ``model=<model>``; ValueError if the text does not parse."""
    families = []
    for family in text_string_to_metric_families(text):
        copy = Metric(family.name, family.documentation, family.type, family.unit)
        for sample in family.samples:
            labels = dict(sample.labels)
            if MODEL_LABEL in labels:
                labels[EXPORTED_MODEL_LABEL] = labels.pop(MODEL_LABEL)
            labels[MODEL_LABEL] = model
            copy.samples.append(sample._replace(labels=labels))
        families.append(copy)
    return families


def exposed_name(family: Metric) -> str:
    """The name a family's HELP and TYPE lines carry on the page (the parser drops a counter's ``_total``)."""
    return family.name + "_total" if family.type == "counter" else family.name


def merge(per_model: Mapping[str, Sequence[Metric]], taken: Iterable[str] = ()) -> list[Metric]:
    """One family per exposed name across models (first HELP/TYPE wins); ``taken`` names and type clashes left out."""
    taken = set(taken)
    merged: dict[str, Metric] = {}
    for model in sorted(per_model):
        for family in per_model[model]:
            name = exposed_name(family)
            if name in taken:
                continue
            into = merged.get(name)
            if into is None:
                into = merged[name] = Metric(family.name, family.documentation, family.type, family.unit)
            elif into.type != family.type:
                log.debug("%s: /metrics family %s is a %s, another upstream's is a %s; left out",
                          model, name, family.type, into.type)
                continue
            into.samples.extend(family.samples)
    return list(merged.values())
