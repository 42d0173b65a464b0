"""The shape of a llama-swap config: one marshmallow schema per section.

Loading the root schema checks every type and range at once and returns plain
dicts keyed by the YAML names; ``app.config.build`` turns those into the
frozen dataclasses. Semantics that need more than one value (macros, ports,
aliases, groups) live there, not here.

Unknown keys are not errors (Go ignores them and a drop-in replacement must
load its configs): ``unknown_keys`` lists them for warnings. A YAML ``null``
counts as "not set" for every key declared here.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, pre_load
from marshmallow.validate import OneOf, Range

from app.config.errors import ConfigError
from app.config.fields import (
    Duration, Flag, FreeMapping, Integer, MacroDefinitions, MappingOf, Seconds, Text,
    TextList,
)
from app.config.yamlio import join

REQUIRED = {"required": "is required"}
NOT_NULL = {"null": "must be a mapping"}

LOG_LEVELS = ("debug", "info", "warn", "error")
LOG_TO_STDOUT = ("proxy", "upstream", "both", "none")
LOG_TIME_FORMATS = ("", "ansic", "unixdate", "rubydate", "rfc822", "rfc822z", "rfc850",
                    "rfc1123", "rfc1123z", "rfc3339", "rfc3339nano", "kitchen", "stamp",
                    "stampmilli", "stampmicro", "stampnano")
MODALITIES = ("text", "audio", "image")
SELECTOR_STRATEGIES = ("warm", "pin", "spillover")


def at_least(minimum: float) -> Range:
    return Range(min=minimum, error="must be >= {min}")


def one_of(choices: tuple[str, ...]) -> OneOf:
    return OneOf(choices, error="must be one of: {choices}")


def section(schema: type[Schema], **kwargs: Any) -> fields.Nested:
    return fields.Nested(schema, error_messages=NOT_NULL, **kwargs)


def mapping_of(schema: type[Schema], **kwargs: Any) -> MappingOf:
    return MappingOf(section(schema), **kwargs)


class Section(Schema):
    """Base: unknown keys pass (reported separately), nulls mean unset."""

    error_messages = {"type": "must be a mapping"}

    class Meta:
        unknown = EXCLUDE

    @pre_load
    def _null_is_unset(self, data: Any, **kwargs: Any) -> Any:
        if isinstance(data, Mapping):
            return {k: v for k, v in data.items() if v is not None}
        return data


# -- models ------------------------------------------------------------------

class TimeoutsSchema(Section):
    connect = Seconds(validate=at_least(0))
    keepalive = Seconds(validate=at_least(0))
    responseHeader = Seconds(validate=at_least(0))
    tlsHandshake = Seconds(validate=at_least(0))
    expectContinue = Seconds(validate=at_least(0))
    idleConn = Seconds(validate=at_least(0))


class PeerFiltersSchema(Section):
    stripParams = Text()
    setParams = FreeMapping()


class ModelFiltersSchema(PeerFiltersSchema):
    strip_params = Text()  # the pre-#174 spelling, still read by Go
    setParamsByID = MappingOf(FreeMapping(error_messages=NOT_NULL))


class CompatSchema(Section):
    ignoreWebsockets = Flag()


class CapabilitiesSchema(Section):
    """Loaded by the builder after macro expansion (``context: ${ctx}`` is allowed)."""

    in_ = fields.List(Text(validate=one_of(MODALITIES)), data_key="in")
    out = fields.List(Text(validate=one_of(MODALITIES)))
    tools = Flag()
    reranker = Flag()
    context = Integer(validate=at_least(0))


class ModelSchema(Section):
    cmd = Text()  # none: a model reached through proxy only, which fails when it must start (as Go)
    cmdStop = Text()
    proxy = Text()
    aliases = TextList()
    env = TextList()
    checkEndpoint = Text()
    ttl = Seconds()
    unloadTimeout = Seconds(validate=at_least(0))
    unlisted = Flag()
    useModelName = Text()
    name = Text()
    description = Text()
    concurrencyLimit = Integer(validate=at_least(0))
    filters = section(ModelFiltersSchema)
    macros = MacroDefinitions()
    metadata = FreeMapping()
    sendLoadingState = Flag()
    timeouts = section(TimeoutsSchema)
    capabilities = FreeMapping()
    compat = section(CompatSchema)


# -- routing -----------------------------------------------------------------

class GroupSchema(Section):
    swap = Flag()
    exclusive = Flag()
    persistent = Flag()
    members = TextList()


class MatrixSchema(Section):
    vars = MappingOf(Text())
    evict_costs = MappingOf(Integer(validate=at_least(1)))
    sets = MappingOf(Text())


class RouterSettingsSchema(Section):
    groups = mapping_of(GroupSchema)
    matrix = section(MatrixSchema)


class RouterSchema(Section):
    use = Text(validate=one_of(("group", "matrix")))
    settings = section(RouterSettingsSchema)


class FifoSchema(Section):
    priority = MappingOf(Integer())
    maxWait = Seconds(validate=at_least(0))


class SchedulerSettingsSchema(Section):
    fifo = section(FifoSchema)


class SchedulerSchema(Section):
    use = Text(validate=one_of(("fifo",)))
    settings = section(SchedulerSettingsSchema)


class RoutingSchema(Section):
    scheduler = section(SchedulerSchema)
    router = section(RouterSchema)


# -- peers, profiles, selectors ----------------------------------------------

class PeerSchema(Section):
    proxy = Text(required=True, error_messages=REQUIRED)
    apiKey = Text()
    models = TextList(required=True, error_messages=REQUIRED)
    filters = section(PeerFiltersSchema)
    timeouts = section(TimeoutsSchema)


class ProfileSchema(Section):
    description = Text()
    pins = MappingOf(Text(allow_none=True), required=True, error_messages=REQUIRED)

    @pre_load
    def _refuse_the_legacy_list(self, data: Any, **kwargs: Any) -> Any:
        """``name: [model, ...]`` (before Go #107) ran models together; say how to now."""
        if not isinstance(data, list):
            return data
        members = ", ".join(str(member) for member in data)
        raise ValidationError(
            "profile must be a mapping with description and pins; the legacy list syntax is "
            "no longer supported. To run these models together, put them in a group that does "
            f"not swap: routing.router.settings.groups: {{<name>: {{swap: false, members: "
            f"[{members}]}}}}, and ask for each by its own id instead of <profile>:<model>. "
            "Profiles now rewrite model ids: {pins: {<id asked for>: <model that answers>}}")


class SelectorSettingsSchema(Section):
    spillover = Integer(validate=at_least(1))


class SelectorSchema(Section):
    strategy = Text(required=True, error_messages=REQUIRED, validate=one_of(SELECTOR_STRATEGIES))
    targets = TextList(required=True, error_messages=REQUIRED)
    settings = section(SelectorSettingsSchema)
    name = Text()
    description = Text()
    unlisted = Flag()
    metadata = FreeMapping()


# -- the rest of the top level -----------------------------------------------

class StoreSchema(Section):
    path = Text(required=True, error_messages=REQUIRED)


class ActivitySchema(Section):
    session_id = TextList()


class UISchema(Section):
    activity = section(ActivitySchema)


class PerformanceSchema(Section):
    disabled = Flag()
    every = Duration()


class OnStartupSchema(Section):
    preload = TextList()


class HooksSchema(Section):
    on_startup = section(OnStartupSchema)


class UpstreamSchema(Section):
    ignorePaths = TextList()


class ConfigSchema(Section):
    healthCheckTimeout = Seconds()
    logRequests = Flag()  # deprecated in Go, still accepted
    logLevel = Text(validate=one_of(LOG_LEVELS))
    logTimeFormat = Text(validate=one_of(LOG_TIME_FORMATS))
    logToStdout = Text(validate=one_of(LOG_TO_STDOUT))
    metricsMaxInMemory = Integer(validate=at_least(0))
    captureBuffer = Integer(validate=at_least(0))
    store = section(StoreSchema)
    ui = section(UISchema)
    performance = section(PerformanceSchema)
    globalTTL = Seconds(validate=at_least(0))
    unloadTimeout = Seconds(validate=at_least(0))
    startPort = Integer(validate=Range(min=1, max=65535, error="must be between {min} and {max}"))
    sendLoadingState = Flag()
    includeAliasesInList = Flag()
    apiKeys = TextList()
    macros = MacroDefinitions()
    models = mapping_of(ModelSchema)
    routing = section(RoutingSchema)
    groups = mapping_of(GroupSchema)  # legacy spelling of routing.router.settings.groups
    matrix = section(MatrixSchema)  # legacy spelling of routing.router.settings.matrix
    hooks = section(HooksSchema)
    peers = mapping_of(PeerSchema)
    profiles = mapping_of(ProfileSchema)
    selectors = mapping_of(SelectorSchema)
    upstream = section(UpstreamSchema)


# -- helpers for the loader --------------------------------------------------

def unknown_keys(schema: Schema, data: Any, path: str = "") -> Iterator[str]:
    """Key paths in ``data`` that ``schema`` does not declare, in file order."""
    if not isinstance(data, Mapping):
        return
    declared = {(f.data_key or name): f for name, f in schema.fields.items()}
    for key, value in data.items():
        field = declared.get(key)
        here = join(path, str(key))
        if field is None:
            yield here
        elif isinstance(field, fields.Nested):
            yield from unknown_keys(field.schema, value, here)
        elif isinstance(field, MappingOf) and isinstance(field.values, fields.Nested) \
                and isinstance(value, Mapping):
            for name, item in value.items():
                yield from unknown_keys(field.values.schema, item, join(here, str(name)))


def error_lines(messages: Any, path: str = "") -> Iterator[tuple[str, str]]:
    """marshmallow's nested error messages as (key path, message) pairs."""
    if isinstance(messages, Mapping):
        for key, sub in messages.items():
            if key == "_schema":
                here = path
            elif isinstance(key, int):
                here = f"{path}[{key}]"
            else:
                here = join(path, str(key))
            yield from error_lines(sub, here)
    elif isinstance(messages, (list, tuple)):
        for message in messages:
            yield from error_lines(message, path)
    else:
        yield path, str(messages)


def load_section(schema: Schema, data: Any, path: str = "") -> dict[str, Any]:
    """``schema.load(data)``; every problem found goes into one ConfigError, first one first."""
    try:
        return schema.load(data)
    except ValidationError as err:
        problems = list(error_lines(err.messages, path))
    (first_key, first), rest = problems[0], problems[1:]
    raise ConfigError(first + "".join(f"; {key}: {message}" for key, message in rest), first_key)
