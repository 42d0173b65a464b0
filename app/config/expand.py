"""The macro pass: every string of the parsed config expanded before anything types it.

This is Go llama-swap's pass (#955), step for step, so a config expands the
same way in both:

1. The ``macros:`` blocks (global, and each model's) are checked first; they
   are definitions, never expanded themselves.
2. Every top-level value except ``models`` gets the global macros:
   ``apiKeys``, ``globalTTL``, group members, profile pins, ``hooks``,
   peers, selectors... (``${MODEL_ID}`` and ``${PORT}`` do not exist there).
3. Each model, in sorted id order, gets ``MODEL_ID``, the global macros and
   its own (``macros.merged``) in every value, and in its
   ``filters.setParamsByID`` keys; ``cmd`` and ``cmdStop`` lose their
   comment lines first, and a missing ``proxy`` becomes
   ``http://localhost:${PORT}`` first.
4. A model whose ``cmd`` (after 3) uses ``${PORT}`` takes the next port from
   ``startPort`` (itself read after 2) and ``${PORT}`` is replaced in all of
   that model, setParamsByID keys included.
5. Any ``${name}`` left in a value of a known top-level key is an error
   naming its key path; only ``cmdStop`` may keep ``${PID}``.

Mapping keys are not expanded (Go's rule), except those of setParamsByID.
A value that is exactly one reference takes the macro's value with its type,
so ``globalTTL: ${ttl}`` with ``ttl: 60`` is the number 60.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.config.command import strip_comments
from app.config.errors import ConfigError
from app.config.macros import (
    ENV_REF_RE, REF_RE, MacroError, MacroList, check_definition, expand_text, expand_value,
    merged,
)
from app.config.schema import ConfigSchema, load_section

DEFAULT_PROXY = "http://localhost:${PORT}"
DEFAULT_START_PORT = 5800
MAX_PORT = 65535
PORT_FIELDS = ("cmd", "cmdStop", "proxy")


@dataclass(frozen=True)
class PortAssignment:
    """The port a model took, and its cmd, cmdStop and proxy before ``${PORT}`` went in.

    ``unported`` is empty when only the (defaulted) proxy used ``${PORT}``.
    """

    port: int
    unported: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Expanded:
    data: dict[str, Any]
    ports: Mapping[str, PortAssignment]
    warnings: tuple[str, ...] = ()


def expand_config(data: Mapping[str, Any]) -> Expanded:
    """``data`` with every macro expanded and ports assigned; ConfigError naming the key."""
    global_macros = _definitions(data.get("macros"), "macros")
    raw_models = data.get("models")
    models = raw_models if isinstance(raw_models, Mapping) else {}
    model_macros = {model_id: _definitions(model.get("macros"), f"models.{model_id}.macros")
                    for model_id, model in models.items() if isinstance(model, Mapping)}

    expanded = {key: value if key in ("models", "macros") else
                _expand_tree(value, global_macros, key)
                for key, value in data.items()}
    start_port = next_port = _start_port(expanded.get("startPort"))

    ports: dict[str, PortAssignment] = {}
    warnings: list[str] = []
    done: dict[str, Any] = {}
    for model_id in sorted(models, key=str):
        raw = models[model_id]
        if not isinstance(raw, Mapping):
            continue
        path = f"models.{model_id}"
        macros = merged(str(model_id), global_macros, model_macros[model_id])
        model = _expand_model(_prepared(raw), macros, path)
        assignment = _assign_port(str(model_id), raw, model, (start_port, next_port), warnings)
        if assignment is not None:
            model = _expand_model(model, (("PORT", assignment.port),), path)
            ports[model_id] = assignment
            next_port += 1
        _reject_leftover_keys(model, path)
        done[model_id] = model
    if isinstance(raw_models, Mapping):
        expanded["models"] = {model_id: done.get(model_id, raw)
                              for model_id, raw in raw_models.items()}

    _reject_leftovers(expanded, global_macros, model_macros)
    return Expanded(expanded, ports, tuple(warnings))


# -- 1. definitions -------------------------------------------------------------

def _definitions(raw: Any, key: str) -> MacroList:
    if raw is None:
        return ()
    if not isinstance(raw, Mapping):
        raise ConfigError("must be a mapping of macro names to values", key)
    for name, value in raw.items():
        try:
            check_definition(str(name), value)
        except MacroError as err:
            raise ConfigError(str(err), f"{key}.{name}") from None
    return tuple((str(name), value) for name, value in raw.items())


# -- 2.-4. expansion ------------------------------------------------------------

def _expand_tree(value: Any, macros: MacroList, path: str) -> Any:
    """``value`` with ``macros`` expanded in every string (not in keys); a new tree."""
    if isinstance(value, str):
        try:
            return expand_value(value, macros)
        except MacroError as err:
            raise ConfigError(str(err), path) from None
    if isinstance(value, Mapping):
        return {key: _expand_tree(item, macros, f"{path}.{key}") for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_expand_tree(item, macros, f"{path}[{index}]")
                for index, item in enumerate(value)]
    return value


def _prepared(raw: Mapping[str, Any]) -> dict[str, Any]:
    """A model's settings without its macro block, comments out of cmd, proxy defaulted."""
    model = {key: value for key, value in raw.items() if key != "macros"}
    for key in ("cmd", "cmdStop"):
        if isinstance(model.get(key), str):
            model[key] = strip_comments(model[key])
    if model.get("proxy") is None:
        model["proxy"] = DEFAULT_PROXY
    return model


def _expand_model(model: dict[str, Any], macros: MacroList, path: str) -> dict[str, Any]:
    expanded = _expand_tree(model, macros, path)
    filters = expanded.get("filters")
    by_id = filters.get("setParamsByID") if isinstance(filters, Mapping) else None
    if isinstance(by_id, Mapping):
        filters["setParamsByID"] = _expand_keys(by_id, macros, f"{path}.filters.setParamsByID")
    return expanded


def _expand_keys(params: Mapping[str, Any], macros: MacroList, path: str) -> dict[str, Any]:
    """setParamsByID with its keys expanded; two keys that become one are an error."""
    resolved: dict[str, Any] = {}
    written: dict[str, str] = {}
    for key, value in params.items():
        try:
            new_key = expand_text(str(key), macros)
        except MacroError as err:
            raise ConfigError(str(err), f"{path}.{key}") from None
        if new_key in resolved:
            raise ConfigError(f'keys "{written[new_key]}" and "{key}" resolve to the same '
                              f'value "{new_key}"', path)
        resolved[new_key], written[new_key] = value, str(key)
    return resolved


def _start_port(value: Any) -> int:
    if value is None:
        return DEFAULT_START_PORT
    return load_section(ConfigSchema(only=("startPort",)), {"startPort": value})["startPort"]


def _assign_port(model_id: str, raw: Mapping[str, Any], model: Mapping[str, Any],
                 ports: tuple[int, int], warnings: list[str]) -> PortAssignment | None:
    """The port ``model`` takes, if its cmd (or defaulted proxy) uses ${PORT}.

    ``ports`` is (startPort, the next free port).
    """
    path, (start_port, free_port) = f"models.{model_id}", ports
    texts = {key: model.get(key) if isinstance(model.get(key), str) else ""
             for key in PORT_FIELDS}
    cmd_uses_port = "${PORT}" in texts["cmd"]
    if "${PORT}" in texts["proxy"] and not cmd_uses_port:
        if raw.get("proxy") is not None:
            raise ConfigError("uses ${PORT} but cmd does not - ${PORT} is only available "
                              "when used in cmd", f"{path}.proxy")
        if not texts["cmd"].strip():
            raise ConfigError("has neither cmd nor proxy: proxy uses ${PORT} but cmd does not - "
                              "${PORT} is only available when used in cmd (set proxy to the "
                              "server's URL, or cmd to the command that starts it)", path)
        # Go refuses this too, but llama-swap's own example has such a model.
        warnings.append(f"{path}: cmd does not use ${{PORT}}, so the default proxy "
                        f"http://localhost:{free_port} is a guess; set proxy to where "
                        "the server listens")
        return PortAssignment(free_port)
    if not cmd_uses_port:
        return None
    if free_port > MAX_PORT:
        raise ConfigError(f"{start_port} leaves no port for model '{model_id}' (the models "
                          "whose cmd uses ${PORT} take one port each from startPort up, and "
                          f"the last port is {MAX_PORT})", "startPort")
    return PortAssignment(free_port, texts)


# -- 5. leftovers -----------------------------------------------------------------

def _reject_leftover_keys(model: Mapping[str, Any], path: str) -> None:
    filters = model.get("filters")
    by_id = filters.get("setParamsByID") if isinstance(filters, Mapping) else None
    for key in by_id if isinstance(by_id, Mapping) else ():
        for name in REF_RE.findall(key):
            raise ConfigError(f"unknown macro '${{{name}}}' in the key \"{key}\"",
                              f"{path}.filters.setParamsByID")


def _reject_leftovers(config: Mapping[str, Any], global_macros: MacroList,
                      model_macros: Mapping[str, MacroList]) -> None:
    known = {f.data_key or name for name, f in ConfigSchema().fields.items()} - {"macros"}
    top = _Scope(frozenset(name for name, _ in global_macros), inside_model=False)
    for key, value in config.items():
        if key not in known:
            continue  # Go leaves unknown keys alone: x-anchors may hold ${MODEL_ID}
        if key != "models" or not isinstance(value, Mapping):
            _check(value, key, top)
            continue
        for model_id, model in value.items():
            if not isinstance(model, Mapping):
                continue
            scope = _Scope(top.defined | {name for name, _ in model_macros[model_id]},
                           inside_model=True)
            for name, item in model.items():
                if name != "macros":
                    _check(item, f"models.{model_id}.{name}", scope, allow_pid=name == "cmdStop")


@dataclass(frozen=True)
class _Scope:
    defined: frozenset[str]
    inside_model: bool

    def problem(self, name: str) -> str:
        """Go's "unknown macro" message, and why the macro is unknown here when we can tell."""
        message = f"unknown macro '${{{name}}}'"
        if name == "PID":
            return f"{message}: ${{PID}} can only be used in cmdStop"
        if name in ("PORT", "MODEL_ID") and not self.inside_model:
            return f"{message}: ${{{name}}} exists only inside a model's settings"
        if name == "PORT":
            return f"{message}: ${{PORT}} is only assigned to a model whose cmd uses it"
        if name in self.defined:
            return (f"{message}: it is used before it is defined (a macro can only use "
                    "macros defined above it)")
        return message


def _check(value: Any, path: str, scope: _Scope, allow_pid: bool = False) -> None:
    if isinstance(value, str):
        for name in REF_RE.findall(value):
            if not (name == "PID" and allow_pid):
                raise ConfigError(scope.problem(name), path)
        for name in ENV_REF_RE.findall(value):
            raise ConfigError(f"environment variable '{name}' is not set", path)
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check(item, f"{path}.{key}", scope, allow_pid)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check(item, f"{path}[{index}]", scope, allow_pid)
