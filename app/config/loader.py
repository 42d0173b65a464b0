"""Config file(s) → Config: read, parse, (merge,) validate, build, in that order, all or nothing.

Loading is pure and cheap (no processes, no network; only the file is read)
so it can run again on every reload. Anything wrong raises ConfigError;
things that are merely ignored (unknown keys, group members and priorities
naming no model, ...) are listed in ``Config.warnings``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from app.config.aliases import with_aliases
from app.config.build import ModelDefaults, build_models
from app.config.errors import ConfigError
from app.config.expand import Expanded, expand_config
from app.config.frozen import FrozenDict
from app.config.model import (
    DEFAULT_SESSION_HEADERS, DEFAULT_UPSTREAM_IGNORE_PATHS, Config, Performance,
)
from app.config.merge import merge_documents
from app.config.peers import build_peers
from app.config.routing import build_routing, fifo_priority
from app.config.schema import ConfigSchema, load_section, unknown_keys
from app.config.sources import ConfigSources, read_text, source_paths
from app.config.virtual import (
    build_profiles, build_selectors, check_peer_namespace, check_pin_chains, check_spillover,
    known_names, unknown_targets,
)
from app.config.yamlio import parse

MIN_HEALTH_CHECK_TIMEOUT = 15.0
MIN_PERFORMANCE_EVERY = 5.0
DEFAULT_MAX_WAIT = 30.0  # routing.scheduler.settings.fifo.maxWait, seconds; 0 turns the bound off


def load_config(path: str) -> Config:
    """The config in the file at ``path``; ConfigError if it cannot be read or is invalid."""
    return load_config_text(read_text(path), source=path)


def load_sources(sources: ConfigSources,
                 env: Callable[[str], str | None] = os.environ.get) -> Config:
    """The config of ``--config`` and ``--config-dir``: each file read alone, then merged (``app.config.merge``)."""
    return load_texts(sources, read_sources(sources), env)


SourceTexts = tuple[tuple[str, str], ...]  # (path, text) of each file of a config, in merge order


def read_sources(sources: ConfigSources) -> SourceTexts:
    """The text of each file ``sources`` names, in merge order; ConfigError if one cannot be read."""
    if not sources.directory:
        assert sources.file, "ConfigSources names a file, a directory or both"
        return ((sources.file, read_text(sources.file)),)
    return tuple((path, read_text(path)) for path in source_paths(sources))


def load_texts(sources: ConfigSources, texts: SourceTexts,
               env: Callable[[str], str | None] = os.environ.get) -> Config:
    """The config of ``sources`` whose files hold ``texts`` (``read_sources``): parsed, merged, validated."""
    if not sources.directory:
        ((path, text),) = texts
        return load_config_text(text, path, env)
    documents = [(path, read_document(text, path, env)) for path, text in texts]
    return build_config(merge_documents(documents))


def load_config_text(text: str, source: str = "<config>",
                     env: Callable[[str], str | None] = os.environ.get) -> Config:
    """The config in ``text``; ``source`` names it in error messages."""
    return build_config(read_document(text, source, env))


def read_document(text: str, source: str,
                  env: Callable[[str], str | None] = os.environ.get) -> Mapping[str, Any]:
    """The settings in one config text, ``${env.X}`` replaced, not yet validated."""
    data = parse(text, source, env)
    if data is None:
        return {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{source}: the top level must be a mapping of settings")
    return data


def build_config(data: Mapping[str, Any]) -> Config:
    """The Config of the settings in ``data``; ConfigError naming the key of the first problem."""
    warnings = [f"unknown key {key} (ignored)" for key in unknown_keys(ConfigSchema(), data)]
    expanded = expand_config(data)
    return _build(load_section(ConfigSchema(), expanded.data), expanded,
                  [*warnings, *expanded.warnings])


def _build(raw: Mapping[str, Any], expanded: Expanded, warnings: list[str]) -> Config:
    global_ttl = raw.get("globalTTL", 0.0)
    unload_timeout = raw.get("unloadTimeout") or 10.0

    models = build_models(raw.get("models", {}), ModelDefaults(
        ports=expanded.ports,
        global_ttl=global_ttl,
        unload_timeout=unload_timeout,
    ), warnings)
    models, aliases = with_aliases(models)

    def resolve(name: str) -> str | None:
        return name if name in models else aliases.get(name)

    routing = build_routing(raw, frozenset(models), warnings)
    peers = build_peers(raw.get("peers", {}), warnings)
    check_peer_namespace(models, aliases, peers)
    selectors = build_selectors(raw.get("selectors", {}), models, aliases, peers)
    check_spillover(selectors, resolve, routing)
    profiles = build_profiles(raw.get("profiles", {}))
    known = known_names(models, aliases, peers, selectors)
    check_pin_chains(profiles, known)
    warnings += unknown_targets(profiles, selectors, known)

    if not models and not peers:
        warnings.append("no models and no peers are defined: every request for a model will fail")
    performance = raw.get("performance", {})
    store = raw.get("store")
    return Config(
        models=FrozenDict(models),
        aliases=aliases,
        groups=routing.groups,
        router_use=routing.use,
        matrix=routing.matrix,
        fifo_priority=fifo_priority(raw, resolve, warnings),
        fifo_max_wait=raw.get("routing", {}).get("scheduler", {}).get("settings", {})
        .get("fifo", {}).get("maxWait", DEFAULT_MAX_WAIT),
        preload=_preload(raw.get("hooks", {}).get("on_startup", {}).get("preload", ()),
                         resolve, warnings),
        health_check_timeout=max(raw.get("healthCheckTimeout", 120.0), MIN_HEALTH_CHECK_TIMEOUT),
        start_port=raw.get("startPort", 5800),
        global_ttl=global_ttl,
        unload_timeout=unload_timeout,
        log_level=raw.get("logLevel", "info"),
        log_to_stdout=raw.get("logToStdout", "proxy"),
        log_time_format=raw.get("logTimeFormat", ""),
        send_loading_state=raw.get("sendLoadingState", False),
        include_aliases_in_list=raw.get("includeAliasesInList", False),
        api_keys=_api_keys(raw.get("apiKeys", ())),
        metrics_max_in_memory=raw.get("metricsMaxInMemory", 1000),
        capture_buffer=raw.get("captureBuffer", 5),
        performance=_performance(performance),
        upstream_ignore_paths=_ignore_paths(raw.get("upstream", {}).get("ignorePaths", ())),
        profiles=profiles,
        selectors=selectors,
        peers=peers,
        store_path=_store_path(store) if store is not None else None,
        ui_session_headers=_session_headers(raw.get("ui", {}).get("activity", {})),
        warnings=tuple(warnings),
    )


def _preload(names: Any, resolve: Callable[[str], str | None],
             warnings: list[str]) -> tuple[str, ...]:
    """Go trims, skips blanks, resolves aliases and drops unknown names; we also warn."""
    preload: dict[str, None] = {}
    for index, name in enumerate(names):
        name = name.strip()
        if not name:
            continue
        model_id = resolve(name)
        if model_id is None:
            warnings.append(f"hooks.on_startup.preload[{index}]: '{name}' is not a defined "
                            "model or alias (ignored)")
        else:
            preload[model_id] = None
    return tuple(preload)


def _api_keys(keys: Any) -> tuple[str, ...]:
    for index, key in enumerate(keys):
        if not key:
            raise ConfigError("must not be empty", f"apiKeys[{index}]")
        if any(c.isspace() for c in key):
            raise ConfigError("must not contain spaces", f"apiKeys[{index}]")
    return tuple(keys)


def _performance(raw: Mapping[str, Any]) -> Performance:
    every = raw.get("every", MIN_PERFORMANCE_EVERY)
    if every < MIN_PERFORMANCE_EVERY:
        raise ConfigError("must be at least 5s", "performance.every")
    return Performance(disabled=raw.get("disabled", False), every=every)


def _ignore_paths(patterns: Any) -> tuple[str, ...]:
    for index, pattern in enumerate(patterns):
        try:
            re.compile(pattern)
        except re.error as err:
            raise ConfigError(f"is not a valid regular expression ({err})",
                              f"upstream.ignorePaths[{index}]") from None
    return tuple(patterns) or DEFAULT_UPSTREAM_IGNORE_PATHS


def _store_path(raw: Mapping[str, Any]) -> str:
    if not raw["path"].strip():
        raise ConfigError("must not be empty", "store.path")
    return raw["path"]


def _session_headers(activity: Mapping[str, Any]) -> tuple[str, ...]:
    """Trimmed, blanks dropped, first of case-insensitive duplicates kept; [] disables."""
    if "session_id" not in activity:
        return DEFAULT_SESSION_HEADERS
    headers: dict[str, str] = {}
    for name in activity["session_id"]:
        name = name.strip()
        if name:
            headers.setdefault(name.lower(), name)
    return tuple(headers.values())
