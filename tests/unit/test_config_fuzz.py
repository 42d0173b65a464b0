"""Fuzzing the config loader and the matrix set language: only a ConfigError (or MatrixError) escapes.

Whatever text is thrown at them, the loader and the set expander must answer
quickly with the project's own error, naming a key or a line, never a
traceback, a hang or a blown stack. Derandomized and database-free, so every
run (and CI) tries the same examples; the whole file runs in a few seconds.
"""

from __future__ import annotations

import re

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.config import ConfigError, MatrixError, expand_sets, load_config_text

FUZZ = settings(derandomize=True, database=None, deadline=2000, max_examples=150,
                suppress_health_check=[HealthCheck.too_slow])

NAMES_A_KEY_OR_LINE = re.compile(r"^\S+: |line \d+")


def assert_names_a_key(err: ConfigError) -> None:
    message = str(err)
    assert message and (err.key or NAMES_A_KEY_OR_LINE.search(message)), message


def load_or_refuse(text: str) -> None:
    try:
        load_config_text(text, env={"PORT_BASE": "5800", "HOME": "/h"}.get)
    except ConfigError as err:
        assert_names_a_key(err)


# -- raw text: YAML syntax, characters, nesting, aliases ---------------------

YAML_PIECES = ["models:", "\n", "  ", "    ", "a:", "cmd:", "x", "${PORT}", "${env.HOME}",
               "${env.NOPE}", "${m}", "[", "]", "{", "}", ",", "-", " ", "&a", "*a", "<<:", "'",
               '"', "\\0", "\\ud800", "\x00", "\x07", "\t", "#", "?", "|", ">", "!!str", "!x",
               ".nan", ".inf", "-1", "65535", "1e999", "proxy:", "http://h:1", "macros:",
               "ttl:", "startPort:", "matrix:", "sets:", "s:", "(", ")", "&", "+s", "peers:"]


@FUZZ
@given(st.lists(st.sampled_from(YAML_PIECES), max_size=60).map("".join))
def test_any_yaml_like_text_loads_or_is_refused_naming_a_key(text: str) -> None:
    load_or_refuse(text)


@FUZZ
@given(st.text(max_size=200))
def test_any_text_loads_or_is_refused_naming_a_key(text: str) -> None:
    load_or_refuse(text)


# -- structured configs: every key of the schema with values of any type -----

SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(["x ${PORT}", "http://127.0.0.1:${PORT}", "ftp://h", "${MODEL_ID}",
                     "${m}", "${PID}", "15s", "1h", "none", "a b 'c", "", "   ", "a", "b",
                     "(a | b) & c", "+s", "fifo", "matrix", "group", "\x00"]),
    st.text(max_size=8),
)
KEYS = st.sampled_from([
    "models", "a", "b", "cmd", "cmdStop", "proxy", "ttl", "unloadTimeout", "aliases", "env",
    "macros", "m", "metadata", "filters", "setParams", "setParamsByID", "stripParams",
    "capabilities", "context", "in", "out", "timeouts", "connect", "concurrencyLimit",
    "checkEndpoint", "healthCheckTimeout", "startPort", "globalTTL", "routing", "router",
    "use", "settings", "matrix", "vars", "sets", "s", "evict_costs", "groups", "members",
    "scheduler", "fifo", "priority", "maxWait", "peers", "p", "models", "apiKey", "apiKeys",
    "profiles", "pins", "selectors", "strategy", "targets", "hooks", "on_startup", "preload",
    "performance", "every", "store", "path", "ui", "activity", "session_id", "upstream",
    "ignorePaths", "logLevel", "logToStdout", "metricsMaxInMemory", "captureBuffer",
])
VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=5)), max_leaves=30)


@FUZZ
@given(st.dictionaries(KEYS, VALUES, max_size=6))
def test_any_config_shape_loads_or_is_refused_naming_a_key(config: dict) -> None:
    load_or_refuse(yaml.safe_dump(config, allow_unicode=True))


MODEL = st.fixed_dictionaries({"cmd": st.sampled_from(["s --port ${PORT}", "s ${m}", "s"])},
                              optional={"proxy": SCALARS, "ttl": SCALARS,
                                        "unloadTimeout": SCALARS, "macros": VALUES,
                                        "metadata": VALUES, "filters": VALUES,
                                        "capabilities": VALUES, "timeouts": VALUES,
                                        "aliases": VALUES, "env": VALUES})


@FUZZ
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]), MODEL, max_size=3), VALUES,
       st.integers(min_value=65530, max_value=65536) | SCALARS)
def test_any_models_load_or_are_refused_naming_a_key(models: dict, macros: object,
                                                      start_port: object) -> None:
    config = {"models": models, "macros": macros, "startPort": start_port}
    load_or_refuse(yaml.safe_dump(config, allow_unicode=True))


# -- the matrix set language ----------------------------------------------------

EXPRESSION_PIECES = ["a", "b", "c", "v", "org/m:q4", " ", "&", "|", "(", ")", "+s1", "+s2",
                     "+s3", "+", "!", "é", "\t"]
EXPRESSIONS = st.lists(st.sampled_from(EXPRESSION_PIECES), max_size=40).map("".join)


@FUZZ
@given(st.dictionaries(st.sampled_from(["s1", "s2", "s3"]), EXPRESSIONS, min_size=1, max_size=3))
def test_any_set_expressions_expand_or_raise_a_matrix_error(sets: dict[str, str]) -> None:
    try:
        expand_sets(sets, {"v": "a"}, limit=200)
    except MatrixError as err:
        assert err.set_name in sets and err.reason


@FUZZ
@given(st.integers(min_value=1, max_value=5000), st.sampled_from(["(", "((a|b)&"]))
def test_deep_set_expressions_are_refused_not_overflowed(depth: int, opening: str) -> None:
    expression = opening * depth + "a" + ")" * depth * opening.count("(")
    try:
        expand_sets({"s": expression}, limit=200)
    except MatrixError as err:
        assert err.set_name == "s"


@FUZZ
@given(st.dictionaries(st.sampled_from(["s1", "s2", "s3"]), EXPRESSIONS, min_size=1, max_size=3))
def test_any_matrix_block_loads_or_is_refused_naming_a_key(sets: dict[str, str]) -> None:
    config = {"models": {"a": {"cmd": "s --port ${PORT}"}, "b": {"cmd": "s --port ${PORT}"}},
              "routing": {"router": {"use": "matrix",
                                     "settings": {"matrix": {"vars": {"v": "a"}, "sets": sets}}}}}
    load_or_refuse(yaml.safe_dump(config, allow_unicode=True))
