"""YAML text → plain Python data, the way Go's yaml.v3 reads a llama-swap config.

* YAML 1.2 core scalars: only ``true``/``false`` are bools and ``null``/``~``
  is null, so a model called ``on`` or ``no`` stays a string, ``0755`` is the
  integer 755 and dates stay strings.
* Mapping keys are always strings (the key's text), duplicate keys are an
  error with both line numbers, anchors and ``<<`` merges work.
* ``${env.NAME}`` is replaced in the text, before it is parsed, as Go does:
  the names looked up are those the document uses outside comments (all
  references in the text when it does not parse without the values, as with
  ``apiKeys: [${env.KEY}]``), and each value is written as ``macros.env_text``
  says. So ``ttl: ${env.TTL}`` with ``TTL=60`` is the integer 60. An unset
  variable is named with the key (and line) that uses it.
* Every error is a ConfigError naming the source and line, or the key and
  line; ``yamlguard`` bounds nesting and aliasing and refuses characters no
  config can use.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from typing import Any

import yaml
from yaml.constructor import ConstructorError, SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.parser import Parser
from yaml.reader import Reader
from yaml.resolver import BaseResolver
from yaml.scanner import Scanner

from app.config.errors import ConfigError
from app.config.macros import ENV_REF_RE, MacroError, env_text
from app.config.yamlguard import (
    ExpansionCheck, GuardedComposer, hide_characters, scalar_problem, where,
)

class _CoreResolver(BaseResolver):
    """YAML 1.2 core schema, the one yaml.v3 uses for untyped values."""


for _tag, _pattern, _first in (
    ("bool", r"^(?:true|True|TRUE|false|False|FALSE)$", "tTfF"),
    ("int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", "-+0123456789"),
    ("float", r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?"
              r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$", "-+.0123456789"),
    ("null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("merge", r"^<<$", "<"),
):
    _CoreResolver.add_implicit_resolver(f"tag:yaml.org,2002:{_tag}", re.compile(_pattern),
                                        list(_first))


class _Constructor(SafeConstructor):
    """SafeConstructor with core-schema numbers, string keys and no duplicate keys."""

    def construct_yaml_bool(self, node: ScalarNode) -> bool:
        return self.construct_scalar(node).lower() == "true"

    def construct_yaml_int(self, node: ScalarNode) -> int:
        text = self.construct_scalar(node)
        if text.startswith(("0x", "0o")):
            return int(text[2:], 16 if text[1] == "x" else 8)
        return int(text, 10)

    def construct_yaml_float(self, node: ScalarNode) -> float:
        text = self.construct_scalar(node).lower()
        if text.endswith(".inf"):
            return float("-inf") if text.startswith("-") else float("inf")
        if text == ".nan":
            return float("nan")
        return float(text)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[str, Any]:
        _reject_duplicate_keys(node)
        self.flatten_mapping(node)
        mapping: dict[str, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                raise ConstructorError(None, None, "mapping keys must be plain values",
                                       key_node.start_mark)
            mapping[key_node.value] = self.construct_object(value_node, deep=deep)
        return mapping


for _tag, _method in (("bool", _Constructor.construct_yaml_bool),
                      ("int", _Constructor.construct_yaml_int),
                      ("float", _Constructor.construct_yaml_float)):
    _Constructor.add_constructor(f"tag:yaml.org,2002:{_tag}", _method)


class _Loader(Reader, Scanner, Parser, GuardedComposer, _Constructor, _CoreResolver):
    def __init__(self, stream: str) -> None:
        Reader.__init__(self, stream)
        Scanner.__init__(self)
        Parser.__init__(self)
        GuardedComposer.__init__(self)
        _Constructor.__init__(self)
        _CoreResolver.__init__(self)


def parse(text: str, source: str = "<config>",
          env: Callable[[str], str | None] = os.environ.get) -> Any:
    """The data of ``text``, ``${env.NAME}`` replaced; ConfigError on any problem.

    A character YAML refuses is named by the key whose value holds it; where no
    value does (a comment, or the document does not parse without it), by its line.
    """
    text = _substitute_env(text, source, env)
    readable, hidden_at = hide_characters(text)
    loader = _Loader(readable)
    try:
        root = loader.get_single_node()
        if root is None:
            return None
        ExpansionCheck(loader).run(root)
        _check_scalars(root, "", set(), hidden_at, text)
        if hidden_at is not None:  # outside every value: in a comment or between tokens
            raise _bad_character(source, text, hidden_at)
        return loader.construct_document(root)
    except yaml.YAMLError as err:
        if hidden_at is not None:  # the likelier cause
            raise _bad_character(source, text, hidden_at) from None
        if isinstance(err, yaml.MarkedYAMLError):
            raise ConfigError(_describe(err, source)) from None
        raise ConfigError(f"{source}: invalid YAML: {err}") from None
    finally:
        loader.dispose()


def _bad_character(source: str, text: str, position: int) -> ConfigError:
    return ConfigError(f"{source}: {where(text, position)}: the character "
                       f"U+{ord(text[position]):04X} is not allowed in YAML")


def _describe(err: yaml.MarkedYAMLError, source: str) -> str:
    mark = err.problem_mark or err.context_mark
    where = f"{source}: line {mark.line + 1}, column {mark.column + 1}" if mark else source
    problem = err.problem or err.context or "invalid YAML"
    if err.problem and err.context:
        context = err.context
        if err.context_mark and err.context_mark.line != mark.line:
            context += f" that starts on line {err.context_mark.line + 1}"
        problem += f" ({context})"
    return f"{where}: {problem}"


def _reject_duplicate_keys(node: MappingNode) -> None:
    seen: dict[str, int] = {}
    for key_node, _ in node.value:
        if not isinstance(key_node, ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
            continue
        if key_node.value in seen:
            raise ConstructorError(
                None, None,
                f"duplicate key '{key_node.value}' (first defined on line {seen[key_node.value]})",
                key_node.start_mark)
        seen[key_node.value] = key_node.start_mark.line + 1


def _check_scalars(node: Node, path: str, done: set[int], hidden_at: int | None,
                   text: str) -> None:
    """Refuse the first scalar, key or value, that holds a character no config can use."""
    if id(node) in done:
        return
    done.add(id(node))
    if isinstance(node, ScalarNode):
        problem = scalar_problem(node, hidden_at, text)
        if problem:
            raise ConfigError(problem, path or "<top>")
    elif isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            _check_scalars(key_node, path, done, hidden_at, text)
            key = key_node.value if isinstance(key_node, ScalarNode) else "?"
            _check_scalars(value_node, join(path, key), done, hidden_at, text)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _check_scalars(item, f"{path}[{index}]", done, hidden_at, text)


def _substitute_env(text: str, source: str, env: Callable[[str], str | None]) -> str:
    """``text`` with each ``${env.NAME}`` it uses replaced; ConfigError naming an unset one."""
    if "${env." not in text:
        return text
    for name, key, line in _env_references(text):
        try:
            value = env_text(name, env)
        except MacroError as err:
            if key:
                raise ConfigError(f"{err} ({line})", key) from None
            raise ConfigError(f"{source}: {line}: {err}") from None
        text = text.replace(f"${{env.{name}}}", value)
    return text


def _env_references(text: str) -> list[tuple[str, str, str]]:
    """(name, key path, line) of each ``${env.NAME}`` outside comments, in document order.

    When the text does not parse as it is, every reference in it, with no key path.
    """
    loader = _Loader(hide_characters(text)[0])
    try:
        root = loader.get_single_node()
    except (yaml.YAMLError, ConfigError):
        return [(match.group(1), "", where(text, match.start()))
                for match in ENV_REF_RE.finditer(text)]
    finally:
        loader.dispose()
    found: list[tuple[str, str, str]] = []
    if root is not None:
        _collect_env(root, "", found, set())
    return found


def _collect_env(node: Node, path: str, found: list[tuple[str, str, str]],
                 done: set[int]) -> None:
    if id(node) in done:  # an anchor's node is shared by its aliases
        return
    done.add(id(node))
    if isinstance(node, ScalarNode):
        found.extend((name, path or "<top>", f"line {node.start_mark.line + 1}")
                     for name in ENV_REF_RE.findall(node.value))
    elif isinstance(node, MappingNode):
        for key_node, value_node in node.value:
            _collect_env(key_node, path, found, done)
            key = key_node.value if isinstance(key_node, ScalarNode) else "?"
            _collect_env(value_node, join(path, key), found, done)
    elif isinstance(node, SequenceNode):
        for index, item in enumerate(node.value):
            _collect_env(item, f"{path}[{index}]", found, done)


def join(path: str, key: str) -> str:
    """``path.key``, or ``key`` at the top."""
    return f"{path}.{key}" if path else key
