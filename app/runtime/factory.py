"""create_app(): load the config, build the server, register the routes and the hooks every request runs.

Nothing happens at import time; everything the app needs is built here, once
per gunicorn worker (after gevent has patched the world). The parts that
outlive a config reload (the event bus, the exchange observers: the access
log, the per-model Prometheus series, the activity meter and the in-flight
table; the log monitors, the Prometheus registry, the activity store, the
captures, the hardware snapshot and the performance sampler) are built here
once, and so is the ``Server``: a reload applies the new config to it by difference.
``performance:``, ``store``, ``metricsMaxInMemory`` and ``captureBuffer`` are
read at startup only: a reload that changes them takes effect at the next start.
"""

from __future__ import annotations

import logging
import os

import prometheus_client
from flask import Flask

from app import CONFIG_DIR_ENV, CONFIG_ENV, OBSERVERS_ENV, WATCH_ENV, auth
from app.config import Config, ConfigSources
from app.errors import register_error_handlers
from app.observe.access_log import AccessLog
from app.observe.hardware import HardwareUnknown, detect_hardware
from app.observe.host_metrics import HostCollector
from app.observe.performance import PerformanceMonitor, utc_now
from app.observe.activity_store import ActivityStore
from app.observe.captures import MB, CaptureCache
from app.observe.metering import ActivityMeter
from app.observe.model_gauges import ModelGauges
from app.routes import register_routes
from app.routes.metrics import track_http
from app.runtime import bridge, hosts
from app.runtime.build import build_server, reload_server
from app.runtime.core_hub import THREAD_NAME, core_hub
from app.runtime.lastgood import load_first
from app.runtime.limits import raise_open_files_limit
from app.runtime.reload import watch_config
from app.runtime.server import EXTENSION, Observatory, model_status
from app.runtime.shutdown import end_feeds_on_graceful_stop, stop_at_exit, stop_on_sigterm
from app.version import __version__, build_info

log = logging.getLogger("llama-swap")

def create_app(config_path: str | None = None, config: Config | None = None,
               watch: bool | None = None, config_dir: str | None = None) -> Flask:
    """The Flask app; ``watch`` (default: $LLAMA_SWAP_WATCH_CONFIG) reloads on config changes.

    In a gevent host (gevent has patched the process) it is built on the
    calling greenlet's hub. In any other (requests on OS threads, nothing
    patched) it is built on the core hub, a thread of its own
    (``app.runtime.core_hub``), and answers through the thread bridge
    (``app.runtime.bridge``). Either way SIGTERM, where the host leaves it
    at its default, becomes a normal exit, and the server stops (every
    upstream, gracefully) at the process's exit, for hosts without a stop
    hook of ours (``app.runtime.shutdown``). See ``build_app`` for the arguments.
    """
    raise_open_files_limit()  # each client connection holds a descriptor
    bridged = hosts.needs_bridge()
    if bridged:
        core = core_hub()
        app = core.call(build_app, config_path, config, watch, config_dir)
        bridge.install(app, core)
        log.info("not a gevent host: the server runs on its own gevent hub (thread %s), requests are bridged "
                 "to it", THREAD_NAME)
    else:
        app = build_app(config_path, config, watch, config_dir)
    stop_at_exit(app)  # for hosts without our stop hooks (python -m app's worker skips atexit)
    stop_on_sigterm(gevent_host=not bridged)
    end_feeds_on_graceful_stop(app)
    return app


def build_app(config_path: str | None = None, config: Config | None = None,
              watch: bool | None = None, config_dir: str | None = None) -> Flask:
    """The Flask app, with its server and watchers built on the calling thread's gevent hub.

    The config comes from ``config_path`` and/or ``config_dir`` (``--config-dir``); when
    neither is given, from $LLAMA_SWAP_CONFIG and $LLAMA_SWAP_CONFIG_DIR, else config.yaml.
    """
    if not config_path and not config_dir:
        config_path = os.environ.get(CONFIG_ENV) or None
        config_dir = os.environ.get(CONFIG_DIR_ENV) or None
    sources = ConfigSources(file=config_path or (None if config_dir else "config.yaml"),
                            directory=config_dir)
    texts, fallback_reason = (), None  # a config given whole: the watch's first look loads the files
    if config is None:
        loaded = load_first(sources)
        config, texts, fallback_reason = loaded.config, loaded.texts, loaded.fallback_reason
    app = Flask(__name__, static_folder=None)  # /ui/ is served by app.routes.ui
    # No ``*_created`` series beside every counter and histogram: they double
    # what Prometheus stores and say nothing a restart's reset does not.
    # (A process-wide switch of prometheus_client; this process is the app's.)
    prometheus_client.disable_created_metrics()
    observatory = build_observatory(config)
    observatory.model_metrics.follow(observatory.bus)  # before any server publishes
    observatory.timeline.follow(observatory.bus)
    app.extensions[EXTENSION] = build_server(config, observatory)
    if fallback_reason is not None:
        log.warning("config %s does not load (%s); serving the last config that loaded until it is fixed",
                    sources, fallback_reason)
    observatory.timeline.occupancy = lambda: app.extensions[EXTENSION].router.occupancy()
    observatory.registry.register(ModelGauges(lambda: app.extensions[EXTENSION].router))
    observatory.feed.model_status = lambda: model_status(app.extensions[EXTENSION])
    watch_the_machine(observatory, config)  # after build_server has set logging up
    app.json.sort_keys = False
    register_error_handlers(app)
    register_routes(app)
    track_http(app, observatory.registry)
    auth.install(app)  # after the routes' hooks: a 401 goes out without Nagle's delay too

    if watch is None:
        watch = os.environ.get(WATCH_ENV) == "1"
    if watch:
        watch_config(app, sources, texts, lambda new: reload_server(app.extensions[EXTENSION], new))
        log.info("watching %s for changes", sources)
    log.info("llama-swap ready: %d models (%s)", len(config.models), ", ".join(config.models))
    return app


def watch_the_machine(observatory: Observatory, config: Config) -> None:
    """Take the hardware snapshot and (unless ``performance.disabled``) start the sampler and its collector."""
    build_info()  # git is asked now, not by the first /api/version
    try:
        observatory.hardware = detect_hardware(observatory.nvml, __version__, utc_now())
    except HardwareUnknown as exc:
        log.warning("hardware detection failed, /api/hardware answers 503: %s", exc)
    if config.performance.disabled:
        return
    monitor = PerformanceMonitor(config.performance.every, observatory.nvml)
    observatory.performance = monitor
    observatory.collectors.append(HostCollector(monitor))
    monitor.start()


def build_observatory(config: Config) -> Observatory:
    """The app-wide watchers: the access log, the per-model metrics, and the activity meter with its store and captures.

    Built from the first config only: a reload keeps them (and the records).
    """
    observatory = Observatory(activity=ActivityStore(config.store_path, config.metrics_max_in_memory),
                              captures=CaptureCache(config.capture_buffer * MB))
    if os.environ.get(OBSERVERS_ENV) == "none":  # the baseline of the observers benchmark
        observatory.observers.remove(observatory.inflight)
        log.warning("%s=none: no exchange observers (no access log, metrics, in-flight or activity)",
                    OBSERVERS_ENV)
        return observatory
    observatory.observers.add(AccessLog())
    observatory.observers.add(observatory.model_metrics)
    observatory.observers.add(ActivityMeter(observatory.recorder.record, observatory.captures.budget))
    return observatory
