"""The ``${...}`` language: env references, user macros, and the reserved names.

Semantics follow the Go llama-swap loader exactly, because configs written for
it must expand the same way here:

* ``${env.NAME}`` is replaced first, in the text of the file before it is
  parsed (see ``yamlio``); an unset variable is an error.
* A model sees one ordered macro list: ``MODEL_ID``, then the global macros in
  file order, with a model macro of the same name replacing the global one *in
  place* and new model macros appended. Expansion walks that list backwards
  (last defined first), so a macro may use only macros that come before it:
  a reference to a later one is introduced after that one was already
  replaced and is left over, which is reported as "used before it is defined".
* ``${PORT}`` is replaced after the user macros (so macros may contain it),
  ``${PID}`` is left in ``cmdStop`` for the stop-time caller. Which values
  see which macros is ``expand``'s business.
* A field may expand to at most ``MAX_EXPANDED_LENGTH`` characters: macros
  that each repeat the one before grow exponentially, and would otherwise
  take the loader's memory (a MemoryError, or minutes of swapping) first.
* A string that is exactly one macro reference takes the macro's value with
  its type (``"${temp}"`` → ``0.7``); a reference inside a longer string is
  replaced by text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

MacroList = tuple[tuple[str, Any], ...]

RESERVED = frozenset({"PORT", "MODEL_ID", "PID"})
MAX_NAME_LENGTH = 63
MAX_EXPANDED_LENGTH = 1 << 20

NAME_RE = re.compile(r"^[a-zA-Z0-9_-]+$")
REF_RE = re.compile(r"\$\{([a-zA-Z0-9_-]+)\}")
ENV_REF_RE = re.compile(r"\$\{env\.([a-zA-Z_][a-zA-Z0-9_]*)\}")


class MacroError(ValueError):
    """A macro problem; the caller adds the key path."""


# -- definitions -------------------------------------------------------------

def check_definition(name: str, value: Any) -> None:
    """Raise MacroError unless ``name: value`` is a legal macro definition."""
    if len(name) > MAX_NAME_LENGTH:
        raise MacroError(f"macro name is longer than {MAX_NAME_LENGTH} characters")
    if not NAME_RE.match(name):
        raise MacroError("macro name must match ^[a-zA-Z0-9_-]+$")
    if name in RESERVED:
        raise MacroError(f"macro name '{name}' is reserved")
    if not isinstance(value, (bool, int, float, str)):
        raise MacroError("macro value must be a number, a bool or a string")
    if isinstance(value, str) and f"${{{name}}}" in value:
        raise MacroError(f"macro '{name}' refers to itself")


def merged(model_id: str, global_macros: MacroList, model_macros: MacroList) -> MacroList:
    """The macro list a model sees, in definition order (see module docstring)."""
    entries: list[tuple[str, Any]] = [("MODEL_ID", model_id), *global_macros]
    position = {name: i for i, (name, _) in enumerate(entries)}
    for name, value in model_macros:
        if name in position:
            entries[position[name]] = (name, value)
        else:
            position[name] = len(entries)
            entries.append((name, value))
    return tuple(entries)


# -- expansion ---------------------------------------------------------------

def expand_text(text: str, macros: MacroList) -> str:
    """Replace every macro of ``macros`` in ``text``, last defined first."""
    for name, value in reversed(macros):
        text = _replaced(text, f"${{{name}}}", value)
    return text


def _replaced(text: str, slug: str, value: Any) -> str:
    """``text`` with ``slug`` replaced by ``value``'s text; MacroError if it grows too long."""
    count = text.count(slug)
    if not count:
        return text
    replacement = go_text(value)
    if len(text) + count * (len(replacement) - len(slug)) > MAX_EXPANDED_LENGTH:
        raise MacroError(f"expands to more than {MAX_EXPANDED_LENGTH} characters (a macro "
                         "that repeats another grows exponentially)")
    return text.replace(slug, replacement)


def expand_value(text: str, macros: MacroList) -> Any:
    """Like expand_text, but a string that becomes one macro reference takes its value and type."""
    current: Any = text
    for name, macro_value in reversed(macros):
        if not isinstance(current, str):
            break
        slug = f"${{{name}}}"
        if current == slug:
            current = macro_value
        else:
            current = _replaced(current, slug, macro_value)
    return current


# -- environment -------------------------------------------------------------

def env_text(name: str, lookup: Callable[[str], str | None]) -> str:
    """The text ``${env.NAME}`` is replaced with in the YAML text, as Go writes it.

    MacroError when unset or holding a line break or NUL (either would change
    the document's structure). ``\\`` and ``"`` are escaped, so the value is
    exact inside a double-quoted string (Go's rule; a plain or single-quoted
    scalar keeps the escapes).
    """
    found = lookup(name)
    if found is None:
        raise MacroError(f"environment variable '{name}' is not set")
    if any(c in found for c in "\n\r\x00"):
        raise MacroError(f"environment variable '{name}' contains newlines or null bytes "
                         "which are not allowed in YAML substitution")
    return found.replace("\\", "\\\\").replace('"', '\\"')


# -- Go's %v -----------------------------------------------------------------

_EXP_LIMIT = 6  # %v switches to exponent form at 1e+06


def go_text(value: Any) -> str:
    """A macro value as Go's ``fmt.Sprintf("%v", v)`` writes it (true, 0.7, 1e+06)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return _go_float(value)
    return str(value)


def _go_float(f: float) -> str:
    # %v is strconv.FormatFloat(f, 'g', -1, 64): the shortest digits that round-trip,
    # in exponent form when the decimal exponent is < -4 or >= 6 (1e+06, 1.5e-05).
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    sign, digits, exponent = Decimal(repr(f)).normalize().as_tuple()
    text_digits = "".join(map(str, digits))
    exp = len(text_digits) + int(exponent) - 1
    prefix = "-" if sign else ""
    if exp < -4 or exp >= _EXP_LIMIT:
        mantissa = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        return f"{prefix}{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"
    point = exp + 1
    if point <= 0:
        return f"{prefix}0.{'0' * -point}{text_digits}"
    if point >= len(text_digits):
        return f"{prefix}{text_digits}{'0' * (point - len(text_digits))}"
    return f"{prefix}{text_digits[:point]}.{text_digits[point:]}"

