"""The matrix set language: parses ``matrix.sets`` expressions and expands them into model sets.

A set expression names models that may run together::

    standard: "(g | qwen-model | m) & v"   # [g, v], [qwen-model, v], [m, v]
    voice:    "+standard & whisper"         # each of those plus whisper

Grammar (``&`` binds tighter than ``|``, as in llama-swap: ``a | b & c`` is
``a | (b & c)``)::

    choice = all ("|" all)*
    all    = atom ("&" atom)*
    atom   = NAME | "+" NAME | "(" choice ")"

A NAME is a run of letters, digits and ``_ - . / :`` (so ``org/model:q4`` is
one name). A name is a var when ``vars`` defines it (a var wins over a model
id spelled the same), otherwise it is taken as a model id. ``+name`` inlines
the expansion of another set; unknown sets and reference cycles are errors.

This module is pure: it knows nothing of the YAML around it. Deciding which
ids are defined models, and how errors are keyed, is ``app.config.routing``'s
job. ``MatrixConfig`` (the interpreted ``matrix:`` block) lives here so that
the set types sit beside the code that makes them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Union

# Expanding "(a1|..|a32) & (b1|..|b32)" makes 1024 sets; llama-swap caps the
# expansion at 1000 so a typo cannot make config loading explode.
MAX_EXPANDED_SETS = 1000
# The parser recurses once per "(": a bound well inside Python's stack, far beyond any real set.
MAX_PARENTHESES = 100

_NAME_PUNCTUATION = frozenset("_-./:")
_OPERATORS = frozenset("&|()")


@dataclass(frozen=True)
class MatrixSet:
    """One concrete combination of models that may run together, from set ``name``."""

    name: str
    expression: str
    members: frozenset[str]


@dataclass(frozen=True)
class MatrixConfig:
    """The interpreted ``matrix:`` block.

    ``sets`` holds every concrete set, in the order the solver breaks ties by:
    sets in definition order, except that a set is placed after the sets it
    ``+references`` (llama-swap expands them in that order), and each set's
    combinations in expansion order (``(a | b) & (c | d)``: ac, ad, bc, bd).
    ``evict_costs`` is keyed by model id; a model not listed costs 1.
    ``expressions`` are the set expressions as written, in definition order.
    """

    vars: Mapping[str, str]
    evict_costs: Mapping[str, int]
    sets: tuple[MatrixSet, ...]
    expressions: Mapping[str, str]


class MatrixError(ValueError):
    """A set expression that cannot be expanded; ``position`` indexes ``expression``."""

    def __init__(self, set_name: str, expression: str, reason: str,
                 position: int | None = None) -> None:
        self.set_name = set_name
        self.expression = expression
        self.reason = reason
        self.position = position
        where = "" if position is None else f" at position {position}"
        super().__init__(f'{reason}{where}: "{expression}"')

    def with_pointer(self, indent: int = 0) -> str:
        """The message plus a caret line under ``position``, for a message printed after
        ``indent`` characters (the key path in front of it)."""
        message = str(self)
        if self.position is None:
            return message
        # The message ends with the quoted expression, so its column is known from the end.
        column = indent + len(message) - len(self.expression) - 1 + self.position
        return f"{message}\n{' ' * column}^"


# -- syntax ------------------------------------------------------------------------

@dataclass(frozen=True)
class _Token:
    kind: str  # "name", "ref", one of "&|()", or "end"
    text: str
    position: int


@dataclass(frozen=True)
class _Name:
    name: str


@dataclass(frozen=True)
class _Ref:
    set_name: str
    position: int


@dataclass(frozen=True)
class _All:
    parts: tuple["_Node", ...]


@dataclass(frozen=True)
class _Any:
    choices: tuple["_Node", ...]


_Node = Union[_Name, _Ref, _All, _Any]


class _SyntaxError(Exception):
    def __init__(self, reason: str, position: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.position = position


def _is_name_char(char: str) -> bool:
    return char.isalpha() or char.isdecimal() or char in _NAME_PUNCTUATION


def _tokens(expression: str) -> Iterator[_Token]:
    i = 0
    while i < len(expression):
        char = expression[i]
        if char.isspace():
            i += 1
        elif char in _OPERATORS:
            yield _Token(char, char, i)
            i += 1
        elif char == "+" or _is_name_char(char):
            start = i + 1 if char == "+" else i
            end = start
            while end < len(expression) and _is_name_char(expression[end]):
                end += 1
            if end == start:
                raise _SyntaxError("'+' must be followed by a set name", i)
            yield _Token("ref" if char == "+" else "name", expression[start:end], i)
            i = end
        else:
            raise _SyntaxError(f"unexpected character {char!r}", i)
    yield _Token("end", "", len(expression.rstrip()))


class _Parser:
    """Recursive descent over the token list; one method per grammar rule."""

    def __init__(self, expression: str) -> None:
        self._tokens = list(_tokens(expression))
        self._at = 0
        self._depth = 0

    def parse(self) -> _Node:
        if self._peek().kind == "end":
            raise _SyntaxError("empty expression", 0)
        node = self._choice()
        self._expect_end()
        return node

    def _peek(self) -> _Token:
        return self._tokens[self._at]

    def _take(self) -> _Token:
        token = self._tokens[self._at]
        if token.kind != "end":
            self._at += 1
        return token

    def _choice(self) -> _Node:
        choices = [self._all()]
        while self._peek().kind == "|":
            self._take()
            choices.append(self._all())
        return choices[0] if len(choices) == 1 else _Any(tuple(choices))

    def _all(self) -> _Node:
        parts = [self._atom()]
        while self._peek().kind == "&":
            self._take()
            parts.append(self._atom())
        return parts[0] if len(parts) == 1 else _All(tuple(parts))

    def _atom(self) -> _Node:
        token = self._take()
        if token.kind == "name":
            return _Name(token.text)
        if token.kind == "ref":
            return _Ref(token.text, token.position)
        if token.kind == "(":
            if self._depth == MAX_PARENTHESES:
                raise _SyntaxError(f"parentheses nested deeper than {MAX_PARENTHESES} levels",
                                   token.position)
            self._depth += 1
            inner = self._choice()
            self._depth -= 1
            if self._peek().kind != ")":
                raise _SyntaxError("'(' is never closed", token.position)
            self._take()
            return inner
        if token.kind == "end":
            raise _SyntaxError("missing a model, '(' or '+set'", token.position)
        raise _SyntaxError(f"unexpected '{token.text}'", token.position)

    def _expect_end(self) -> None:
        token = self._peek()
        if token.kind != "end":
            raise _SyntaxError(f"unexpected '{token.text}'", token.position)


def _parse(set_name: str, expression: str) -> _Node:
    try:
        return _Parser(expression).parse()
    except _SyntaxError as err:
        raise MatrixError(set_name, expression, err.reason, err.position) from None


def _refs(node: _Node) -> Iterator[_Ref]:
    """The ``+references`` of a tree, in source order."""
    if isinstance(node, _Ref):
        yield node
    elif isinstance(node, _All):
        for part in node.parts:
            yield from _refs(part)
    elif isinstance(node, _Any):
        for choice in node.choices:
            yield from _refs(choice)


# -- expansion ---------------------------------------------------------------------

def expand_sets(expressions: Mapping[str, str],
                var_ids: Mapping[str, str] | None = None,
                limit: int = MAX_EXPANDED_SETS) -> tuple[MatrixSet, ...]:
    """Every concrete set the named ``expressions`` describe, members as model ids.

    Names are resolved through ``var_ids`` (var -> model id); any other name is
    taken as a model id as it is (whether such a model exists is the caller's
    question). Raises MatrixError naming the set at fault.
    """
    trees = {name: _parse(name, text) for name, text in expressions.items()}
    order = _dependency_order(expressions, trees)
    var_map = var_ids or {}

    def resolve(name: str) -> str:
        return var_map.get(name, name)

    expanded: dict[str, list[frozenset[str]]] = {}
    result: list[MatrixSet] = []
    for name in order:
        combos = _expand(trees[name], expanded, resolve, _Budget(name, expressions[name], limit))
        expanded[name] = list(dict.fromkeys(combos))  # "a | a" is one set, first place kept
        result.extend(MatrixSet(name, expressions[name], members) for members in expanded[name])
        if len(result) > limit:
            raise MatrixError(name, expressions[name],
                              f"the sets expand to more than {limit} combinations in all")
    return tuple(result)


@dataclass(frozen=True)
class _Budget:
    """The expansion limit, and what to blame when one set exceeds it."""

    set_name: str
    expression: str
    limit: int

    def check(self, count: int) -> None:
        if count > self.limit:
            raise MatrixError(self.set_name, self.expression,
                              f"expands to more than {self.limit} combinations")


def _expand(node: _Node, expanded: Mapping[str, list[frozenset[str]]],
            resolve: Callable[[str], str], budget: _Budget) -> list[frozenset[str]]:
    if isinstance(node, _Name):
        return [frozenset((resolve(node.name),))]
    if isinstance(node, _Ref):
        return list(expanded[node.set_name])  # dependency order expanded it already
    if isinstance(node, _Any):
        combos = [c for choice in node.choices for c in _expand(choice, expanded, resolve, budget)]
        budget.check(len(combos))
        return combos
    # _All: one combination from each part, unioned (a Cartesian product).
    combos = [frozenset()]
    for part in node.parts:
        right = _expand(part, expanded, resolve, budget)
        budget.check(len(combos) * len(right))  # before building it
        combos = [left | r for left in combos for r in right]
    return combos


def _dependency_order(expressions: Mapping[str, str], trees: Mapping[str, _Node]) -> list[str]:
    """Set names so that each comes after the sets it references.

    A depth-first walk from each set in definition order, references in source
    order: the order llama-swap expands (and so breaks ties) in. The walk keeps
    its own stack, so a chain of thousands of references cannot overflow Python's.
    """
    order: list[str] = []
    done: set[str] = set()
    for start in expressions:
        if start in done:
            continue
        # the sets being visited, outermost first, each with its references still to follow
        path: list[tuple[str, Iterator[_Ref]]] = [(start, _refs(trees[start]))]
        on_path = {start}
        while path:
            name, refs = path[-1]
            ref = next(refs, None)
            if ref is None:
                path.pop()
                on_path.discard(name)
                done.add(name)
                order.append(name)
            elif ref.set_name not in trees:
                raise MatrixError(name, expressions[name], f"unknown set '+{ref.set_name}'",
                                  ref.position)
            elif ref.set_name in on_path:
                names = [visiting for visiting, _ in path]
                cycle = names[names.index(ref.set_name):] + [ref.set_name]
                raise MatrixError(name, expressions[name],
                                  f"reference cycle {' -> '.join(cycle)}", ref.position)
            elif ref.set_name not in done:
                path.append((ref.set_name, _refs(trees[ref.set_name])))
                on_path.add(ref.set_name)
    return order
