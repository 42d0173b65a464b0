"""Request-body rewrites for one model: useModelName, stripParams, setParams, setParamsByID.

Pure functions over a parsed JSON object; no Flask, no I/O. The order is
llama-swap's (``internal/server/filters.go``): the ``model`` value becomes the
model's ``useModelName``, then ``stripParams`` keys are removed, then
``setParams`` are set, then the ``setParamsByID`` entry for the name the client
asked for (the alias it used) is set, so it can override ``setParams``.
``model`` is protected: no filter may strip or set it (config already drops it
from setParams, this module skips it again so a hand-built filter cannot).

Keys are paths, as in Go's sjson: ``a.b`` means key ``b`` inside object ``a``
(created when missing); ``\\.`` is a literal dot; a numeric part indexes into
an existing list. Plain keys (the usual case) are simply top-level keys.

``rewrite`` returns None when nothing changed, so the caller forwards the
client's original bytes untouched.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

from app.config.frozen import thaw
from app.config.model import ModelFilters

PROTECTED = frozenset({"model"})
_MISSING = object()


def rewrite(payload: Mapping[str, Any], requested: str, use_model_name: str,
            filters: ModelFilters) -> dict[str, Any] | None:
    """The filtered copy of ``payload``, or None if every filter left it as it was."""
    by_id = filters.set_params_by_id.get(requested)
    if not (use_model_name or filters.strip_params or filters.set_params or by_id):
        return None  # the common case: no copy at all
    body = copy.deepcopy(dict(payload))
    changed = False
    if use_model_name and body.get("model") != use_model_name:
        body["model"] = use_model_name
        changed = True
    for key in filters.strip_params:
        if key not in PROTECTED:
            changed |= delete_path(body, key)
    for params in (filters.set_params, by_id or {}):
        for key in sorted(params):
            if key not in PROTECTED:
                changed |= set_path(body, key, thaw(params[key]))
    return body if changed else None


def split_path(key: str) -> list[str]:
    """``a.b\\.c`` → ``["a", "b.c"]`` (sjson's path syntax, dots and escaped dots only)."""
    parts, current, escaped = [], [], False
    for char in key:
        if escaped:
            current.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        elif char == ".":
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def delete_path(body: dict[str, Any], key: str) -> bool:
    """Remove ``key``; True if it was there."""
    *parents, last = split_path(key)
    container = _walk(body, parents)
    if isinstance(container, dict) and last in container:
        del container[last]
        return True
    index = _index(container, last)
    if index is not None:
        del container[index]
        return True
    return False


def set_path(body: dict[str, Any], key: str, value: Any) -> bool:
    """Set ``key`` to ``value``, creating objects on the way; True if the body changed."""
    *parents, last = split_path(key)
    container: Any = body
    for part in parents:
        child = _child(container, part)
        if not isinstance(child, (dict, list)):
            # sjson replaces a scalar (or a missing key) on the way with an object
            child = {}
            if not _assign(container, part, child):
                return False
        container = child
    if same_json(_child(container, last), value):
        return False
    return _assign(container, last, value)


def same_json(a: Any, b: Any) -> bool:
    """Equal as JSON, types included (``1`` is not ``1.0`` or ``true`` on the wire)."""
    if a is _MISSING or b is _MISSING:
        return a is b
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


def _walk(body: Any, parts: list[str]) -> Any:
    for part in parts:
        body = _child(body, part)
        if body is _MISSING:
            return _MISSING
    return body


def _child(container: Any, part: str) -> Any:
    if isinstance(container, dict):
        return container.get(part, _MISSING)
    index = _index(container, part)
    return _MISSING if index is None else container[index]


def _index(container: Any, part: str) -> int | None:
    if isinstance(container, list) and part.isdigit() and int(part) < len(container):
        return int(part)
    return None


def _assign(container: Any, part: str, value: Any) -> bool:
    if isinstance(container, dict):
        container[part] = value
        return True
    index = _index(container, part)
    if index is None:
        return False
    container[index] = value
    return True
