"""Turns a loaded Config into the scheduler's plain objects: specs, processes, swapper, router.

This is the one place that knows both sides of the ``app`` → ``scheduler``
arrow: the scheduler never sees a ModelConfig.
"""

from __future__ import annotations

from typing import Callable

from app.config import Config, ModelConfig
from scheduler.process import ProcessSpec, UpstreamProcess
from scheduler.router import Router
from scheduler.swappers import Group, GroupSwapper, MatrixSwapper, ModelSet, Swapper


def process_spec(model: ModelConfig, config: Config) -> ProcessSpec:
    check_url = None
    if model.check_endpoint is not None:
        check_url = model.proxy.rstrip("/") + "/" + model.check_endpoint.lstrip("/")
    return ProcessSpec(
        model_id=model.id,
        argv=model.cmd,
        proxy_url=model.proxy.rstrip("/"),
        check_url=check_url,
        stop_argv=model.cmd_stop,
        env=dict(model.env),
        health_timeout=config.health_check_timeout,
        unload_timeout=model.unload_timeout,
        ttl=model.ttl,
    )


def build_router(config: Config, on_output: Callable[[str, str], None]) -> Router:
    processes = {m.id: UpstreamProcess(process_spec(m, config), on_output)
                 for m in config.models.values()}
    swapper = build_swapper(config)
    limits = {m.id: m.concurrency_limit for m in config.models.values()}
    return Router(processes, swapper, limits=limits, priority=dict(config.fifo_priority),
                  max_wait=config.fifo_max_wait)


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
