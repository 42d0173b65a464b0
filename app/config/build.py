"""Validated model settings → ModelConfig: macros expanded, ${PORT} assigned, defaults resolved.

Ports follow Go: models are visited in sorted id order and each one whose
``cmd`` uses ``${PORT}`` (after macro expansion) takes the next port from
``startPort``. Which fields see which macros also follows Go: user macros and
``${MODEL_ID}`` in cmd, cmdStop, proxy, checkEndpoint, name, description,
filters.stripParams, filters.setParamsByID (keys and values), metadata and
capabilities; ``${PORT}`` in cmd, cmdStop, proxy, name, description and
metadata. ``env``, ``aliases``, ``useModelName`` and ``filters.setParams``
are taken literally. A ``${...}`` left in a macro-expanded field is an error,
and so is a field that expands past ``macros.MAX_EXPANDED_LENGTH``.

A port past 65535 (``startPort`` too close to the top for the models that
take one) and a ``proxy`` that is not an http(s) URL with a host are refused
here, naming the key, rather than failing on the first request.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.config.command import split_command, strip_comments
from app.config.errors import ConfigError
from app.config.frozen import FrozenDict, freeze
from app.config.macros import (
    MacroError, MacroList, expand_text, expand_value, leftover_problem, leftover_refs, merged,
)
from app.config.model import DEFAULT_CONCURRENCY_LIMIT, ModelConfig, ModelFilters, PortTemplate, Timeouts
from app.config.schema import CapabilitiesSchema, load_section, unknown_keys

DEFAULT_PROXY = "http://localhost:${PORT}"
DEFAULT_CHECK_ENDPOINT = "/health"
PROTECTED_PARAMS = frozenset({"model"})
USE_GLOBAL_TTL = -1
MAX_PORT = 65535
SHOWN_URL_LENGTH = 200

_TIMEOUT_KEYS = (("connect", "connect"), ("keepalive", "keepalive"),
                 ("responseHeader", "response_header"), ("tlsHandshake", "tls_handshake"),
                 ("expectContinue", "expect_continue"), ("idleConn", "idle_conn"))


@dataclass(frozen=True)
class ModelDefaults:
    """What a model inherits from the top level."""

    macros: MacroList
    start_port: int
    global_ttl: float
    unload_timeout: float


def build_models(raw_models: Mapping[str, Mapping[str, Any]], defaults: ModelDefaults,
                 warnings: list[str]) -> dict[str, ModelConfig]:
    """Every model, in file order; ports handed out in sorted id order."""
    built: dict[str, ModelConfig] = {}
    next_port = defaults.start_port
    for model_id in sorted(raw_models):
        model = _build_model(model_id, raw_models[model_id], defaults, next_port, warnings)
        if model.port is not None:
            next_port += 1
        built[model_id] = model
    return {model_id: built[model_id] for model_id in raw_models}


def _build_model(model_id: str, raw: Mapping[str, Any], defaults: ModelDefaults,
                 free_port: int, warnings: list[str]) -> ModelConfig:
    path = f"models.{model_id}"
    macros = merged(model_id, defaults.macros, raw.get("macros", ()))
    raw_filters = raw.get("filters", {})

    text = {
        "cmd": strip_comments(raw.get("cmd", "")),
        "cmdStop": strip_comments(raw.get("cmdStop", "")),
        "proxy": raw.get("proxy", DEFAULT_PROXY),
        "checkEndpoint": raw.get("checkEndpoint", DEFAULT_CHECK_ENDPOINT),
        "filters.stripParams": (raw_filters.get("stripParams")
                                or raw_filters.get("strip_params", "")),
        "name": raw.get("name", ""),
        "description": raw.get("description", ""),
    }
    text = {key: expanded(f"{path}.{key}", expand_text, value, macros)
            for key, value in text.items()}
    metadata = expanded(f"{path}.metadata", expand_value, raw.get("metadata", {}), macros)
    by_id_key = f"{path}.filters.setParamsByID"
    by_id = {expanded(by_id_key, expand_text, key, macros):
             expanded(f"{by_id_key}.{key}", expand_value, params, macros)
             for key, params in raw_filters.get("setParamsByID", {}).items()}
    capabilities = expanded(f"{path}.capabilities", expand_value, raw.get("capabilities"),
                            macros)

    if free_port > MAX_PORT and "${PORT}" in text["cmd"]:
        raise ConfigError(f"{defaults.start_port} leaves no port for model '{model_id}' (the "
                          "models whose cmd uses ${PORT} take one port each from startPort up, "
                          f"and the last port is {MAX_PORT})", "startPort")
    unported = dict(text)
    port, metadata = _assign_port(path, raw, text, metadata, free_port, warnings)
    _reject_leftovers(path, macros, text, metadata, by_id, capabilities)
    port_template = None
    if port is not None and "${PORT}" in unported["cmd"]:  # a port the proxy starts the server on
        port_template = PortTemplate(cmd=_argv(unported["cmd"], f"{path}.cmd"),
                                     cmd_stop=_argv(unported["cmdStop"], f"{path}.cmdStop"),
                                     proxy=unported["proxy"])

    return ModelConfig(
        id=model_id,
        cmd=_argv(text["cmd"], f"{path}.cmd"),
        cmd_stop=_argv(text["cmdStop"], f"{path}.cmdStop"),
        proxy=proxy_url(text["proxy"], f"{path}.proxy"),
        check_endpoint=_check_endpoint(text["checkEndpoint"]),
        env=_env(raw.get("env", ()), f"{path}.env"),
        ttl=_ttl(raw.get("ttl", USE_GLOBAL_TTL), defaults.global_ttl, f"{path}.ttl"),
        unload_timeout=raw.get("unloadTimeout") or defaults.unload_timeout,
        name=text["name"],
        description=text["description"],
        unlisted=raw.get("unlisted", False),
        aliases=tuple(raw.get("aliases", ())),
        concurrency_limit=raw.get("concurrencyLimit") or DEFAULT_CONCURRENCY_LIMIT,
        use_model_name=raw.get("useModelName", ""),
        send_loading_state=raw.get("sendLoadingState"),
        metadata=freeze(metadata),
        filters=ModelFilters(
            strip_params=strip_param_list(text["filters.stripParams"]),
            set_params=settable(raw_filters.get("setParams", {}),
                                f"{path}.filters.setParams", warnings),
            set_params_by_id=FrozenDict(
                (key, settable(params, f"{path}.filters.setParamsByID.{key}", warnings))
                for key, params in by_id.items()),
        ),
        timeouts=timeouts(raw.get("timeouts", {}), Timeouts()),
        capabilities=_capabilities(capabilities, f"{path}.capabilities", warnings),
        ignore_websockets=raw.get("compat", {}).get("ignoreWebsockets", False),
        port=port,
        port_template=port_template,
    )


def _assign_port(path: str, raw: Mapping[str, Any], text: dict[str, str], metadata: Any,
                 free_port: int, warnings: list[str]) -> tuple[int | None, Any]:
    """Take ``free_port`` if cmd uses ${PORT}; replaces it in ``text`` and returns the metadata."""
    cmd_uses_port = "${PORT}" in text["cmd"]
    proxy_uses_port = "${PORT}" in text["proxy"]
    if proxy_uses_port and not cmd_uses_port:
        if "proxy" in raw:
            raise ConfigError("uses ${PORT} but cmd does not; ${PORT} is only assigned to "
                              "a model whose cmd uses it", f"{path}.proxy")
        if not text["cmd"].strip():
            raise ConfigError("has neither cmd nor proxy: proxy uses ${PORT} but cmd does not - "
                              "${PORT} is only available when used in cmd (set proxy to the "
                              "server's URL, or cmd to the command that starts it)", path)
        # Go refuses this too, but llama-swap's own example has such a model.
        warnings.append(f"{path}: cmd does not use ${{PORT}}, so the default proxy "
                        f"http://localhost:{free_port} is a guess; set proxy to where "
                        "the server listens")
    if not (cmd_uses_port or proxy_uses_port):
        return None, metadata
    with_port = (("PORT", free_port),)
    for key in ("cmd", "cmdStop", "proxy", "name", "description"):
        text[key] = expand_text(text[key], with_port)
    return free_port, expand_value(metadata, with_port)


def expanded(key: str, expand: Callable[[Any, MacroList], Any], value: Any,
             macros: MacroList) -> Any:
    """``expand(value, macros)``, a MacroError becoming a ConfigError naming ``key``."""
    try:
        return expand(value, macros)
    except MacroError as err:
        raise ConfigError(str(err), key) from None


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


def _reject_leftovers(path: str, macros: MacroList, text: Mapping[str, str], metadata: Any,
                      by_id: Mapping[str, Any], capabilities: Any) -> None:
    found = [(f"{path}.{key}", name) for key, value in text.items()
             for _, name in leftover_refs(value, key)
             if not (key == "cmdStop" and name == "PID")]
    found += leftover_refs(metadata, f"{path}.metadata")
    found += [(f"{path}.filters.setParamsByID", name) for key in by_id
              for _, name in leftover_refs(key, "")]
    found += leftover_refs(by_id, f"{path}.filters.setParamsByID")
    found += leftover_refs(capabilities, f"{path}.capabilities")
    if found:
        key, name = found[0]
        raise ConfigError(leftover_problem(name, macros), key)


def _argv(command: str, key: str) -> tuple[str, ...]:
    """The argv of ``command``; empty when there is none (a cmd-less model fails only when started)."""
    try:
        return split_command(command)
    except ValueError as err:
        raise ConfigError(f"cannot be split into arguments ({err})", key) from None


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
