"""RFC 3339 times as every signed format writes them: UTC, ``Z``, microseconds at most."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import lru_cache

__all__ = ["format_time", "parse_time"]

_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})")


@lru_cache(maxsize=65536)
def parse_time(value: str) -> datetime:
    """Parse an RFC 3339 timestamp (offset required) into an aware UTC datetime.

    Cached: registry data repeats the same dates (permits issued at midnight) very often.
    """
    if not _RFC3339.fullmatch(value):
        raise ValueError(f"not an RFC 3339 timestamp: {value!r}")
    text = value.upper().replace("Z", "+00:00")
    frac = re.search(r"\.(\d+)", text)
    if frac and len(frac.group(1)) > 6:  # Python keeps microseconds; drop finer digits.
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    try:
        return datetime.fromisoformat(text).astimezone(UTC)
    except ValueError as exc:
        raise ValueError(f"not a valid date and time: {value!r}") from exc
    except OverflowError as exc:  # 0001-01-01T00:30:00+01:00 is before the first UTC instant
        raise ValueError(f"out of range once turned into UTC: {value!r}") from exc


@lru_cache(maxsize=65536)
def format_time(value: datetime) -> str:
    """Format an aware datetime as RFC 3339 UTC: ``2024-03-01T00:00:00Z``."""
    if value.utcoffset():
        value = value.astimezone(UTC)
    return value.replace(tzinfo=None).isoformat() + "Z"
