"""Bounds on what a YAML document may make the loader do: nesting, aliasing, characters.

A config is read whole before anything checks its meaning, so a hostile or
broken file must be refused while it is read, not when the code after it
recurses or expands it:

* Nesting deeper than ``MAX_DEPTH`` (as written, or through aliases) is
  refused while composing; PyYAML's composer and every walk after it recurse,
  and a few thousand ``[`` would end in a RecursionError.
* Aliases are checked the way Go's yaml.v3 checks them while decoding
  (``decode.go``: ``allowedAliasRatio``): count every value a full expansion
  reads, and those read through an alias; past 100 aliased and 1,000 in all,
  refuse the document once the aliased share exceeds 99% (falling to 10% for
  documents of 400,000 to 4,000,000 values). The count stops at the first
  excess, so a billion-laughs document is refused after a few thousand steps.
  An anchor that contains itself is refused, as yaml.v3 does.
* Characters YAML does not allow in a file (NUL, other control characters,
  lone surrogates) are found before parsing, and named by the key whose value
  holds them when there is one. NUL and unpaired surrogates that arrive
  through escapes (``"\\0"``, ``"\\ud800"``) are refused too: no command,
  environment variable or URL can hold a NUL, and a lone surrogate cannot be
  written out as UTF-8.

Errors are ConfigErrors naming the key path (shortened to its first
``SHOWN_SEGMENTS`` parts when deeper) and the line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from yaml.composer import Composer
from yaml.error import Mark
from yaml.events import AliasEvent
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.reader import Reader

from app.config.errors import ConfigError

MAX_DEPTH = 100
SHOWN_SEGMENTS = 6

# yaml.v3's bounds (decode.go), in values read by a full expansion.
ALIAS_RATIO_RANGE_LOW = 400_000
ALIAS_RATIO_RANGE_HIGH = 4_000_000
MIN_ALIASED = 100
MIN_READ = 1_000

NOT_IN_YAML = Reader.NON_PRINTABLE
_SURROGATE = re.compile("[\ud800-\udfff]")
PLACEHOLDER = "\ufffd"


def key_path(segments: Sequence[str]) -> str:
    """``models.a.metadata[0]`` from its segments, cut after SHOWN_SEGMENTS with "…"."""
    text = ""
    for segment in segments[:SHOWN_SEGMENTS]:
        text += segment if segment.startswith("[") or not text else f".{segment}"
    return text + ("…" if len(segments) > SHOWN_SEGMENTS else "")


def segment(index: Any) -> str:
    """The path segment of a child: ``[3]`` in a sequence, the key's text in a mapping."""
    if isinstance(index, int):
        return f"[{index}]"
    if isinstance(index, ScalarNode):
        return index.value
    return "?"


def allowed_alias_ratio(read: int) -> float:
    """yaml.v3's ``allowedAliasRatio``: the share of values that may come through aliases."""
    if read <= ALIAS_RATIO_RANGE_LOW:
        return 0.99
    if read >= ALIAS_RATIO_RANGE_HIGH:
        return 0.10
    span = ALIAS_RATIO_RANGE_HIGH - ALIAS_RATIO_RANGE_LOW
    return 0.99 - 0.89 * (read - ALIAS_RATIO_RANGE_LOW) / span


def _line(mark: Mark | None) -> str:
    return f" (line {mark.line + 1})" if mark is not None else ""


class GuardedComposer(Composer):
    """PyYAML's composer, refusing deep nesting and remembering anchors and alias uses."""

    def __init__(self) -> None:
        super().__init__()
        self.path: list[str] = []
        self.anchor_names: dict[int, str] = {}
        self.alias_marks: dict[tuple[int, Any], Mark] = {}

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        here = segment(index)
        if self.check_event(AliasEvent):
            self.alias_marks[(id(parent), _child_key(index))] = self.peek_event().start_mark
            return super().compose_node(parent, index)
        event = self.peek_event()
        if parent is None:  # the document's root
            node = super().compose_node(parent, index)
        else:
            if len(self.path) >= MAX_DEPTH:
                raise ConfigError(f"nested deeper than {MAX_DEPTH} levels"
                                  f"{_line(event.start_mark)}", key_path(self.path))
            self.path.append(here)
            try:
                node = super().compose_node(parent, index)
            finally:
                self.path.pop()
        if event.anchor is not None:
            self.anchor_names[id(node)] = event.anchor
        return node


def _child_key(index: Any) -> Any:
    return id(index) if isinstance(index, Node) else index


class ExpansionCheck:
    """One walk of the document as a full expansion would read it, counting as yaml.v3 does."""

    def __init__(self, composer: GuardedComposer) -> None:
        self._anchor_names = composer.anchor_names
        self._alias_marks = composer.alias_marks
        self._read = 0
        self._aliased = 0
        self._seen: set[int] = set()
        self._open: set[int] = set()
        self._path: list[str] = []

    def run(self, root: Node) -> None:
        self._visit(root, None, False)

    def _visit(self, node: Node, mark: Mark | None, aliased: bool) -> None:
        """``mark`` is where the outermost alias that reached ``node`` is written, if one did."""
        self._read += 1
        if aliased:
            self._aliased += 1
        if (self._aliased > MIN_ALIASED and self._read > MIN_READ
                and self._aliased / self._read > allowed_alias_ratio(self._read)):
            raise ConfigError("document contains excessive aliasing (its aliases expand to 99% "
                              "of what is read; Go's YAML reader refuses such files too)"
                              f"{_line(mark or node.start_mark)}", key_path(self._path))
        if id(node) in self._open:
            name = self._anchor_names.get(id(node), "?")
            raise ConfigError(f"anchor '{name}' contains itself{_line(mark)}",
                              key_path(self._path))
        if len(self._path) > MAX_DEPTH:
            raise ConfigError(f"nested deeper than {MAX_DEPTH} levels through aliases"
                              f"{_line(mark or node.start_mark)}", key_path(self._path))
        aliased = aliased or id(node) in self._seen
        self._seen.add(id(node))
        if isinstance(node, ScalarNode):
            return
        self._open.add(id(node))
        if isinstance(node, MappingNode):
            for key, value in node.value:
                self._child(node, None, key, mark, aliased)
                self._child(node, key, value, mark, aliased)
        elif isinstance(node, SequenceNode):
            for index, item in enumerate(node.value):
                self._child(node, index, item, mark, aliased)
        self._open.discard(id(node))

    def _child(self, parent: Node, index: Any, child: Node, mark: Mark | None,
               aliased: bool) -> None:
        self._path.append(segment(index))
        alias_mark = self._alias_marks.get((id(parent), _child_key(index)))
        self._visit(child, mark or alias_mark, aliased)
        self._path.pop()


def hide_characters(text: str) -> tuple[str, int | None]:
    """``text`` with each character YAML refuses replaced, and the index of the first."""
    first = NOT_IN_YAML.search(text)
    if first is None:
        return text, None
    return NOT_IN_YAML.sub(PLACEHOLDER, text), first.start()


def where(text: str, position: int) -> str:
    """``line L, column C`` of ``position`` in ``text``."""
    line = text.count("\n", 0, position) + 1
    column = position - (text.rfind("\n", 0, position) + 1) + 1
    return f"line {line}, column {column}"


def scalar_problem(node: ScalarNode, hidden_at: int | None, text: str) -> str | None:
    """Why the value of ``node`` cannot be used, or None."""
    if hidden_at is not None and node.start_mark.index <= hidden_at < node.end_mark.index:
        return (f"contains the character U+{ord(text[hidden_at]):04X}, which YAML does not "
                f"allow ({where(text, hidden_at)})")
    if "\x00" in node.value:
        return ("contains a NUL character, which no command, environment or URL can hold"
                f"{_line(node.start_mark)}")
    surrogate = _SURROGATE.search(node.value)
    if surrogate:
        return (f"contains an unpaired surrogate U+{ord(surrogate.group()):04X}, which is not "
                f"text{_line(node.start_mark)}")
    return None
