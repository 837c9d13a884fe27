"""RFC 8785 (JCS) canonical JSON for the values the registry signs.

Signed payloads hold only strings, integers, booleans, null, lists and objects with ASCII keys.
For those, orjson with sorted keys writes exactly the JCS form (no white space, keys in code
point order, minimal string escapes), at a fraction of a pure-Python canonicaliser's cost: an
import of a million lines hashes a million events. Anything outside that set (floats, integers
beyond 2**53 - 1, non-ASCII keys, where orjson's output and JCS part ways) is refused.
``tests/test_canonical.py`` checks the equivalence against the ``rfc8785`` package.
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["canonical_json"]

_MAX_INT = 2**53 - 1


def canonical_json(value: Any) -> bytes:
    """Return the RFC 8785 canonical UTF-8 bytes of ``value``; ``TypeError`` if out of range."""
    _check(value)
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def _check(value: Any) -> None:
    kind = value.__class__
    if kind is str or kind is bool or value is None:
        return
    if kind is int:
        if -_MAX_INT <= value <= _MAX_INT:
            return
        raise TypeError(f"integer out of the JSON-safe range: {value}")
    if kind is dict:
        for key, item in value.items():
            if key.__class__ is not str or not key.isascii():
                raise TypeError(f"object keys must be ASCII strings: {key!r}")
            _check(item)
        return
    if kind is list or kind is tuple:
        for item in value:
            _check(item)
        return
    raise TypeError(f"cannot canonicalise {kind.__name__}")
