"""Validated model settings → ModelConfig: defaults resolved, commands split, URLs checked.

Macros are already expanded and ports already assigned (``app.config.expand``
did both over the raw data, as Go does, before the schema typed it); what
``expand`` assigned arrives as a ``PortAssignment`` per model.

A ``proxy`` that is not an http(s) URL with a host is refused here, naming
the key, rather than failing on the first request.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.config.command import split_command
from app.config.errors import ConfigError
from app.config.expand import DEFAULT_PROXY, PortAssignment
from app.config.frozen import FrozenDict, freeze
from app.config.model import DEFAULT_CONCURRENCY_LIMIT, ModelConfig, ModelFilters, PortTemplate, Timeouts
from app.config.schema import CapabilitiesSchema, load_section, unknown_keys

DEFAULT_CHECK_ENDPOINT = "/health"
PROTECTED_PARAMS = frozenset({"model"})
USE_GLOBAL_TTL = -1
SHOWN_URL_LENGTH = 200

_TIMEOUT_KEYS = (("connect", "connect"), ("keepalive", "keepalive"),
                 ("responseHeader", "response_header"), ("tlsHandshake", "tls_handshake"),
                 ("expectContinue", "expect_continue"), ("idleConn", "idle_conn"))


@dataclass(frozen=True)
class ModelDefaults:
    """What a model inherits from the top level."""

    ports: Mapping[str, PortAssignment]
    global_ttl: float
    unload_timeout: float


def build_models(raw_models: Mapping[str, Mapping[str, Any]], defaults: ModelDefaults,
                 warnings: list[str]) -> dict[str, ModelConfig]:
    """Every model, in file order."""
    return {model_id: _build_model(model_id, raw, defaults, warnings)
            for model_id, raw in raw_models.items()}


def _build_model(model_id: str, raw: Mapping[str, Any], defaults: ModelDefaults,
                 warnings: list[str]) -> ModelConfig:
    path = f"models.{model_id}"
    raw_filters = raw.get("filters", {})
    assignment = defaults.ports.get(model_id)
    port_template = None
    if assignment is not None and assignment.unported:  # a port the proxy starts the server on
        unported = assignment.unported
        port_template = PortTemplate(cmd=_argv(unported["cmd"], f"{path}.cmd", required=True),
                                     cmd_stop=_argv(unported["cmdStop"], f"{path}.cmdStop", required=False),
                                     proxy=unported["proxy"])
    return ModelConfig(
        id=model_id,
        cmd=_argv(raw.get("cmd", ""), f"{path}.cmd", required=False),  # none: fails only when started
        cmd_stop=_argv(raw.get("cmdStop", ""), f"{path}.cmdStop", required=False),
        proxy=proxy_url(raw.get("proxy", DEFAULT_PROXY), f"{path}.proxy"),
        check_endpoint=_check_endpoint(raw.get("checkEndpoint", DEFAULT_CHECK_ENDPOINT)),
        env=_env(raw.get("env", ()), f"{path}.env"),
        ttl=_ttl(raw.get("ttl", USE_GLOBAL_TTL), defaults.global_ttl, f"{path}.ttl"),
        unload_timeout=raw.get("unloadTimeout") or defaults.unload_timeout,
        name=raw.get("name", ""),
        description=raw.get("description", ""),
        unlisted=raw.get("unlisted", False),
        aliases=tuple(raw.get("aliases", ())),
        concurrency_limit=raw.get("concurrencyLimit") or DEFAULT_CONCURRENCY_LIMIT,
        use_model_name=raw.get("useModelName", ""),
        send_loading_state=raw.get("sendLoadingState"),
        metadata=freeze(raw.get("metadata", {})),
        filters=ModelFilters(
            strip_params=strip_param_list(raw_filters.get("stripParams")
                                          or raw_filters.get("strip_params", "")),
            set_params=settable(raw_filters.get("setParams", {}),
                                f"{path}.filters.setParams", warnings),
            set_params_by_id=FrozenDict(
                (key, settable(params, f"{path}.filters.setParamsByID.{key}", warnings))
                for key, params in raw_filters.get("setParamsByID", {}).items()),
        ),
        timeouts=timeouts(raw.get("timeouts", {}), Timeouts()),
        capabilities=_capabilities(raw.get("capabilities"), f"{path}.capabilities", warnings),
        ignore_websockets=raw.get("compat", {}).get("ignoreWebsockets", False),
        port=None if assignment is None else assignment.port,
        port_template=port_template,
    )


def proxy_url(url: str, key: str) -> str:
    """``url`` if it is an http(s) URL with a host (and a valid port); ConfigError naming ``key``."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError when out of range
    except ValueError:
        valid = False
    if not valid:
        shown = url if len(url) <= SHOWN_URL_LENGTH else url[:SHOWN_URL_LENGTH] + "…"
        raise ConfigError(f'must be an http:// or https:// URL with a host, got "{shown}"', key)
    return url


def _argv(command: str, key: str, required: bool) -> tuple[str, ...]:
    try:
        argv = split_command(command)
    except ValueError as err:
        raise ConfigError(f"cannot be split into arguments ({err})", key) from None
    if required and not argv:
        raise ConfigError("is empty", key)
    return argv


def _check_endpoint(value: str) -> str | None:
    value = value.strip()
    if value.lower() == "none":
        return None
    return value or DEFAULT_CHECK_ENDPOINT


def _env(items: Any, key: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for index, item in enumerate(items):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f'must look like NAME=value, got "{item}"', f"{key}[{index}]")
        pairs.append((name, value))
    return tuple(pairs)


def _ttl(ttl: float, global_ttl: float, key: str) -> float:
    if ttl == USE_GLOBAL_TTL:
        return global_ttl
    if ttl < 0:
        raise ConfigError("must be >= 0, or -1 to use globalTTL", key)
    return ttl


def strip_param_list(text: str) -> tuple[str, ...]:
    """A ``stripParams`` string as Go sanitizes it: trimmed, unique, sorted, never "model"."""
    return tuple(sorted({p.strip() for p in text.split(",")} - {""} - PROTECTED_PARAMS))


def settable(params: Mapping[str, Any], key: str, warnings: list[str]) -> FrozenDict:
    """``params`` without the protected ones (each dropped with a warning), read-only."""
    for name in PROTECTED_PARAMS & set(params):
        warnings.append(f"{key}.{name}: '{name}' is protected and cannot be set (ignored)")
    return freeze({k: v for k, v in params.items() if k not in PROTECTED_PARAMS})


def timeouts(raw: Mapping[str, float], defaults: Timeouts) -> Timeouts:
    """``defaults`` with the values set in a ``timeouts:`` section."""
    given = {attr: raw[key] for key, attr in _TIMEOUT_KEYS if key in raw}
    return Timeouts(**{**defaults.__dict__, **given})


def _capabilities(raw: Any, key: str, warnings: list[str]) -> FrozenDict | None:
    if raw is None:
        return None
    warnings.extend(f"unknown key {path} (ignored)"
                    for path in unknown_keys(CapabilitiesSchema(), raw, key))
    loaded = load_section(CapabilitiesSchema(), raw, key)
    capabilities = {
        "in": tuple(dict.fromkeys(loaded.get("in_", ()))),
        "out": tuple(dict.fromkeys(loaded.get("out", ()))),
        "tools": loaded.get("tools", False),
        "reranker": loaded.get("reranker", False),
        "context": loaded.get("context", 0),
    }
    return FrozenDict(capabilities) if any(capabilities.values()) else None
