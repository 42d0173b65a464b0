"""Merging the documents of several config files into one, by the rules of Go's ``-config-dir``.

The first non-empty document is the base; each later one is merged into it:

* a key only one side has is kept (the later file's keys go after the earlier's);
* mapping + mapping merge key by key, recursively;
* list + list concatenate (``apiKeys``, ``hooks.on_startup.preload``, ...);
* a null (an empty value, ``~``, ``null``) yields to the other side;
* two scalars must be equal (same type, same value), else a conflict;
* anything else (a list against a mapping, ...) is a conflict of kinds.

The maps whose keys name things (``models``, ``groups``, ``profiles``,
``selectors``, ``peers``, ``matrix`` and their ``routing.router.settings``
forms) never merge an entry: the same name in two files is an error, since
it means one model (group, peer, ...) was split across files by mistake.

Errors are ConfigErrors with Go's messages, naming the key and the file that
introduced the conflict. Inputs are never changed; the result shares no
list or mapping with them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from app.config.errors import ConfigError

IDENTITY_MAPS = frozenset({
    "models", "groups", "profiles", "selectors", "peers", "matrix",
    "routing.router.settings.groups", "routing.router.settings.matrix",
})

# yaml.v3's node kinds, as Go's "incompatible YAML node kinds" message numbers them.
_SEQUENCE_KIND, _MAPPING_KIND, _SCALAR_KIND = 2, 4, 8


def merge_documents(documents: Iterable[tuple[str, Mapping[str, Any] | None]]) -> dict[str, Any]:
    """The documents, each ``(source, data)`` in merge order, merged into one."""
    merged: dict[str, Any] | None = None
    for source, document in documents:
        if not document:  # an empty file (or only comments) adds nothing
            continue
        if merged is None:
            merged = _copy(document)
        else:
            merged = _merged_mapping(merged, document, "", source)
    return merged or {}


def _merged_mapping(old: Mapping[str, Any], new: Mapping[str, Any], path: str,
                    source: str) -> dict[str, Any]:
    result = {key: _copy(value) for key, value in old.items()}
    for key, value in new.items():
        child = f"{path}.{key}" if path else key
        if key not in result:
            result[key] = _copy(value)
        elif child in IDENTITY_MAPS:
            result[key] = _merged_entities(result[key], value, child, key, source)
        else:
            result[key] = _merged_value(result[key], value, child, source)
    return result


def _merged_entities(old: Any, new: Any, path: str, name: str, source: str) -> dict[str, Any]:
    if not (isinstance(old, Mapping) and isinstance(new, Mapping)):
        raise ConfigError(f"conflict at {_quote(path)}: expected a mapping, introduced by {source}")
    result = dict(old)
    for key, value in new.items():
        if key in result:
            raise ConfigError(f"duplicate {name} {_quote(key)} found in {source} "
                              "(already defined in another config source)")
        result[key] = _copy(value)
    return result


def _merged_value(old: Any, new: Any, path: str, source: str) -> Any:
    if isinstance(old, Mapping) and isinstance(new, Mapping):
        return _merged_mapping(old, new, path, source)
    if isinstance(old, list) and isinstance(new, list):
        return old + _copy(new)
    if old is None:
        return _copy(new)
    if new is None:
        return old
    if _kind(old) == _kind(new) == _SCALAR_KIND:
        if type(old) is type(new) and (old == new or repr(old) == repr(new)):  # repr: nan
            return old
        raise ConfigError(f"conflict at {_quote(path)}: {source} sets a different value than a "
                          "previous source")
    raise ConfigError(f"conflict at {_quote(path)}: incompatible YAML node kinds (kind "
                      f"{_kind(old)} vs {_kind(new)}) introduced by {source}")


def _kind(value: Any) -> int:
    if isinstance(value, Mapping):
        return _MAPPING_KIND
    if isinstance(value, list):
        return _SEQUENCE_KIND
    return _SCALAR_KIND


def _copy(value: Any) -> Any:
    """A copy of the lists and mappings in ``value`` (YAML aliases share them; merging must not)."""
    if isinstance(value, Mapping):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value


def _quote(text: str) -> str:
    """``text`` in double quotes, as Go's ``%q`` writes it."""
    return json.dumps(text, ensure_ascii=False)
