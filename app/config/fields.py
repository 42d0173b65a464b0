"""Marshmallow fields with the type rules of Go's yaml.v3 decoding into typed structs.

marshmallow's own fields coerce too much ("5" is an Integer, 1.5 truncates to
1, "yes" is a Boolean from any source). These accept what llama-swap accepts
and reject the rest with a message that the loader prefixes with the key path:

* ``Text``: a string; a number or bool is taken as its text (yaml.v3 does so).
* ``Flag``: a bool, or one of YAML 1.1's words (yes/no/on/off/y/n), which
  yaml.v3 still accepts for a bool field.
* ``Integer`` / ``Seconds``: a number, not a bool and not a string;
  ``Seconds`` refuses ``.nan`` and ``.inf`` (a timer that never fires hangs
  at run time), ``Integer`` refuses a fraction and what does not fit Go's
  64-bit int.
* ``TextList``: a list of ``Text``.
* ``MappingOf``: a mapping whose values are loaded by another field, errors
  keyed by the mapping key (no marshmallow "value" layer in the path).
* ``FreeMapping``: any mapping, kept as loaded (metadata, setParams).
* ``Duration``: a Go duration string ("15s", "1h30m") in seconds.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from marshmallow import ValidationError, fields

from app.config.macros import MacroError, check_definition, go_text

_YAML11_BOOLS = {
    "y": True, "yes": True, "on": True, "true": True,
    "n": False, "no": False, "off": False, "false": False,
}


class Text(fields.Field):
    default_error_messages = {"invalid": "must be a string"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, (bool, int, float)):
            return go_text(value)
        raise self.make_error("invalid")


class Flag(fields.Field):
    default_error_messages = {"invalid": "must be true or false"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in _YAML11_BOOLS:
            return _YAML11_BOOLS[value.lower()]
        raise self.make_error("invalid")


MAX_INT = 2**63 - 1  # Go's int


class Seconds(fields.Field):
    default_error_messages = {"invalid": "must be a number", "infinite": "must be a finite number"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise self.make_error("invalid")
        try:
            seconds = float(value)
        except OverflowError:  # an int beyond a float's range
            raise self.make_error("infinite") from None
        if not math.isfinite(seconds):
            raise self.make_error("infinite")
        return seconds


class Integer(fields.Field):
    default_error_messages = {"invalid": "must be a whole number",
                              "too_large": f"must be a whole number of at most {MAX_INT}"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> int:
        if isinstance(value, bool):
            raise self.make_error("invalid")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int):
            raise self.make_error("invalid")
        if abs(value) > MAX_INT:
            raise self.make_error("too_large")
        return value


class TextList(fields.List):
    default_error_messages = {"invalid": "must be a list"}

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(Text(), **kwargs)


class MappingOf(fields.Field):
    """A mapping of string keys to values loaded by ``values``; keeps file order."""

    default_error_messages = {"invalid": "must be a mapping"}

    def __init__(self, values: fields.Field, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.values = values

    def _bind_to_schema(self, field_name: str, parent: Any) -> None:
        super()._bind_to_schema(field_name, parent)
        self.values._bind_to_schema(field_name, self)

    def _deserialize(self, value: Any, attr: str | None, data: Any,
                     **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.make_error("invalid")
        loaded: dict[str, Any] = {}
        errors: dict[str, Any] = {}
        for key, item in value.items():
            try:
                loaded[str(key)] = self.values.deserialize(item)
            except ValidationError as err:
                errors[str(key)] = err.messages
        if errors:
            raise ValidationError(errors)
        return loaded


class FreeMapping(fields.Field):
    default_error_messages = {"invalid": "must be a mapping"}

    def _deserialize(self, value: Any, attr: str | None, data: Any,
                     **kwargs: Any) -> dict[str, Any]:
        if not isinstance(value, Mapping):
            raise self.make_error("invalid")
        return dict(value)


_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0,
                 "m": 60.0, "h": 3600.0}


def parse_go_duration(text: str) -> float:
    """Seconds in a Go ``time.ParseDuration`` string; ValueError if it is not one."""
    body = text.strip()
    sign = 1.0
    if body.startswith(("-", "+")):
        sign, body = (-1.0 if body[0] == "-" else 1.0), body[1:]
    if body == "0":
        return 0.0
    if not body:
        raise ValueError(text)
    position, total = 0, 0.0
    while position < len(body):
        match = _DURATION_PART.match(body, position)
        if not match:
            raise ValueError(text)
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    return sign * total


class Duration(fields.Field):
    default_error_messages = {"invalid": "must be a duration such as 15s, 90m or 1h30m"}

    def _deserialize(self, value: Any, attr: str | None, data: Any, **kwargs: Any) -> float:
        if not isinstance(value, str):
            raise self.make_error("invalid")
        try:
            seconds = parse_go_duration(value)
        except ValueError:
            raise self.make_error("invalid") from None
        if not math.isfinite(seconds):
            raise self.make_error("invalid")
        return seconds


class MacroDefinitions(fields.Field):
    """A ``macros:`` mapping → ((name, value), ...) in file order, each definition checked."""

    default_error_messages = {"invalid": "must be a mapping of macro names to values"}

    def _deserialize(self, value: Any, attr: str | None, data: Any,
                     **kwargs: Any) -> tuple[tuple[str, Any], ...]:
        if not isinstance(value, Mapping):
            raise self.make_error("invalid")
        errors: dict[str, list[str]] = {}
        for name, macro_value in value.items():
            try:
                check_definition(str(name), macro_value)
            except MacroError as err:
                errors[str(name)] = [str(err)]
        if errors:
            raise ValidationError(errors)
        return tuple((str(name), macro_value) for name, macro_value in value.items())
