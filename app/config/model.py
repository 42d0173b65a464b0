"""The loaded config: frozen dataclasses, the only config objects the rest of the app sees.

Every value is resolved: macros expanded, ports assigned, per-model settings
that defer to a global one (ttl, unloadTimeout) already hold the global value,
durations are float seconds. Free-form data (metadata, setParams, ...)
is held in read-only ``FrozenDict``s and tuples (see ``app.config.frozen``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.config.frozen import FrozenDict
from app.config.matrix import MatrixConfig

DEFAULT_CONCURRENCY_LIMIT = 10
DEFAULT_SESSION_HEADERS = ("X-Session-ID", "X-Litellm-Session-Id")
DEFAULT_UPSTREAM_IGNORE_PATHS = (r".*\.(js|json|css|png|gif|jpg|jpeg|ico|txt)$",)


def _empty() -> FrozenDict:
    return FrozenDict()


@dataclass(frozen=True)
class Timeouts:
    """Upstream connection timeouts in seconds; 0 disables one."""

    connect: float = 30.0
    keepalive: float = 30.0
    response_header: float = 0.0
    tls_handshake: float = 10.0
    expect_continue: float = 1.0
    idle_conn: float = 90.0


@dataclass(frozen=True)
class ModelFilters:
    """Request-body rewrites: stripped keys (sorted, never "model"), then set keys."""

    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=_empty)
    set_params_by_id: Mapping[str, Mapping[str, Any]] = field(default_factory=_empty)


@dataclass(frozen=True)
class PortTemplate:
    """A model's cmd, cmdStop and proxy before ``${PORT}`` is put in: another port if the assigned one is taken."""

    cmd: tuple[str, ...]
    cmd_stop: tuple[str, ...]
    proxy: str


@dataclass(frozen=True)
class ModelConfig:
    id: str
    cmd: tuple[str, ...]
    cmd_stop: tuple[str, ...] = ()
    proxy: str = ""
    check_endpoint: str | None = "/health"
    env: tuple[tuple[str, str], ...] = ()
    ttl: float = 0.0
    unload_timeout: float = 10.0
    name: str = ""
    description: str = ""
    unlisted: bool = False
    aliases: tuple[str, ...] = ()
    concurrency_limit: int = DEFAULT_CONCURRENCY_LIMIT
    use_model_name: str = ""
    send_loading_state: bool | None = None
    metadata: Mapping[str, Any] = field(default_factory=_empty)
    filters: ModelFilters = field(default_factory=ModelFilters)
    timeouts: Timeouts = field(default_factory=Timeouts)
    capabilities: Mapping[str, Any] | None = None
    ignore_websockets: bool = False
    port: int | None = None
    port_template: PortTemplate | None = None  # set when ``port`` is


@dataclass(frozen=True)
class GroupConfig:
    name: str
    members: tuple[str, ...]
    swap: bool = True
    exclusive: bool = True
    persistent: bool = False


@dataclass(frozen=True)
class Performance:
    disabled: bool = False
    every: float = 5.0


@dataclass(frozen=True)
class PeerFilters:
    strip_params: tuple[str, ...] = ()
    set_params: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True)
class PeerConfig:
    """A remote server; its models are addressable as ``<peer id>/<model>``."""

    id: str
    proxy: str
    models: tuple[str, ...]
    api_key: str = ""
    filters: PeerFilters = field(default_factory=PeerFilters)
    timeouts: Timeouts = field(default_factory=lambda: Timeouts(response_header=60.0))


@dataclass(frozen=True)
class ProfileConfig:
    """Model-id rewrites active while the profile is; a ``None`` target disables the id."""

    name: str
    pins: Mapping[str, str | None]
    description: str = ""


@dataclass(frozen=True)
class SelectorConfig:
    """A virtual model id resolved to one of ``targets`` per request."""

    id: str
    strategy: str
    targets: tuple[str, ...]
    spillover: int = 1
    name: str = ""
    description: str = ""
    unlisted: bool = False
    metadata: Mapping[str, Any] = field(default_factory=_empty)


@dataclass(frozen=True)
class Config:
    models: Mapping[str, ModelConfig] = field(default_factory=_empty)
    aliases: Mapping[str, str] = field(default_factory=_empty)
    groups: tuple[GroupConfig, ...] = ()
    router_use: str = "group"
    matrix: MatrixConfig | None = None
    fifo_priority: Mapping[str, int] = field(default_factory=_empty)
    fifo_max_wait: float = 30.0  # seconds; 0 = off (llama-swap's unbounded wait)
    preload: tuple[str, ...] = ()
    health_check_timeout: float = 120.0
    start_port: int = 5800
    global_ttl: float = 0.0
    unload_timeout: float = 10.0
    log_level: str = "info"
    log_to_stdout: str = "proxy"
    log_time_format: str = ""
    send_loading_state: bool = False
    include_aliases_in_list: bool = False
    api_keys: tuple[str, ...] = ()
    metrics_max_in_memory: int = 1000
    capture_buffer: int = 5
    performance: Performance = field(default_factory=Performance)
    upstream_ignore_paths: tuple[str, ...] = DEFAULT_UPSTREAM_IGNORE_PATHS
    profiles: Mapping[str, ProfileConfig] = field(default_factory=_empty)
    selectors: Mapping[str, SelectorConfig] = field(default_factory=_empty)
    peers: Mapping[str, PeerConfig] = field(default_factory=_empty)
    store_path: str | None = None
    ui_session_headers: tuple[str, ...] = DEFAULT_SESSION_HEADERS
    warnings: tuple[str, ...] = ()

    def slowest_unload(self) -> float:
        """The longest ``unloadTimeout`` of any model: how long stopping them all (side by side) may take."""
        return max((model.unload_timeout for model in self.models.values()), default=0.0)

    def resolve(self, name: str) -> str | None:
        """The model id that ``name`` (a model id or an alias) refers to, else None."""
        if name in self.models:
            return name
        return self.aliases.get(name)
