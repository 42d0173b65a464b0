"""Turns a loaded Config into the running objects: process specs and owners, the swapper, the router, a Server;
and applies a reloaded Config to that Server.

This is the one place that knows both sides of the ``app`` → ``scheduler``
arrow: the scheduler never sees a ModelConfig. It also wires the core's
outside world: the real launcher, the HTTP health probe and the transport's
``drop_idle`` (``app.relay.transport``), the event bus the router and the
processes publish to, and the sink for the upstreams' output.
"""

from __future__ import annotations

import logging
from typing import Callable

from app.config import Config, ModelConfig
from app.relay.transport import HealthProbe, UpstreamTransport
from app.runtime.log_setup import setup_logging, upstream_output_sink
from app.runtime.preload import preload
from app.runtime.server import Observatory, Server
from scheduler.clock import GeventClock
from scheduler.launcher import PosixLauncher
from scheduler.ports import LocalPorts
from scheduler.process import PortTemplate, ProcessServices, ProcessSpec, UpstreamProcess
from scheduler.router import Applied, Router
from scheduler.swappers import Group, GroupSwapper, MatrixSwapper, ModelSet, Swapper

log = logging.getLogger("llama-swap")


def process_spec(model: ModelConfig, config: Config) -> ProcessSpec:
    def check_url(proxy: str) -> str | None:
        if model.check_endpoint is None:
            return None
        return proxy.rstrip("/") + "/" + model.check_endpoint.lstrip("/")

    template = model.port_template
    return ProcessSpec(
        model_id=model.id,
        argv=model.cmd,
        proxy_url=model.proxy.rstrip("/"),
        check_url=check_url(model.proxy),
        port=model.port,
        port_template=None if template is None else PortTemplate(
            template.cmd, template.cmd_stop, template.proxy.rstrip("/"), check_url(template.proxy)),
        stop_argv=model.cmd_stop,
        env=dict(model.env),
        health_timeout=config.health_check_timeout,
        unload_timeout=model.unload_timeout,
        ttl=model.ttl,
    )


class Upstreams:
    """The process owners' shared wiring, for the app's life: every config's processes are made here.

    The launcher, the health probe, the clock, the bus, the output sink, the
    transport's ``drop_idle`` and the ports in use outlive a reload, so a
    process kept across one and its replacement next to it see one world
    (one port table: a new model never picks a port an old one still holds).
    """

    def __init__(self, transport: UpstreamTransport, observatory: Observatory,
                 on_output: Callable[[str, str], None]):
        self.clock = GeventClock()
        self._ports = LocalPorts(())
        self._services = ProcessServices(launcher=PosixLauncher(), probe=HealthProbe(), clock=self.clock,
                                         publish=observatory.bus.publish, on_output=on_output,
                                         release_connections=transport.drop_idle, ports=self._ports)

    def processes(self, config: Config) -> dict[str, UpstreamProcess]:
        """A process owner (not started) for each of ``config``'s models."""
        specs = {m.id: process_spec(m, config) for m in config.models.values()}
        self._ports.reassign(spec.port for spec in specs.values() if spec.port is not None)
        return {model: UpstreamProcess(spec, self._services) for model, spec in specs.items()}


def policy(config: Config) -> dict:
    """The router's policy arguments besides the swapper: limits, priorities, maxWait."""
    return {"limits": {m.id: m.concurrency_limit for m in config.models.values()},
            "priority": dict(config.fifo_priority), "max_wait": config.fifo_max_wait}


def build_swapper(config: Config) -> Swapper:
    """The eviction policy ``routing.router.use`` names: the matrix, else groups."""
    if config.router_use == "matrix":
        # The config loader never yields use "matrix" without a matrix.
        assert config.matrix is not None
        sets = [ModelSet(s.name, s.members, s.expression) for s in config.matrix.sets]
        return MatrixSwapper(sets, config.matrix.evict_costs)
    groups = [Group(g.name, tuple(g.members), g.swap, g.exclusive, g.persistent)
              for g in config.groups]
    return GroupSwapper(groups, config.models.keys())


def build_server(config: Config, observatory: Observatory) -> Server:
    """A running Server for ``config``: logging set up, processes owned, preload begun."""
    announce(config, observatory)
    transport = UpstreamTransport()
    upstreams = Upstreams(transport, observatory, upstream_output_sink(observatory.logs))
    router = Router(upstreams.processes(config), build_swapper(config), clock=upstreams.clock,
                    publish=observatory.bus.publish, **policy(config))

    def reconfigure(new: Config) -> Applied:
        return router.apply(upstreams.processes(new), build_swapper(new), **policy(new))

    server = Server(config=config, router=router, transport=transport, observatory=observatory,
                    reconfigure=reconfigure)
    preload(router, config.preload)
    return server


def reload_server(server: Server, config: Config) -> Applied:
    """Serve a reloaded ``config`` on the running ``server``, by difference (``Router.apply``)."""
    announce(config, server.observatory)
    applied = server.reload(config)
    preload(server.router, [model for model in config.preload if model not in applied.kept])
    return applied


def announce(config: Config, observatory: Observatory) -> None:
    """Set logging up as ``config`` asks, and log its warnings."""
    setup_logging(config, observatory.logs)
    for warning in config.warnings:
        log.warning("config: %s", warning)
