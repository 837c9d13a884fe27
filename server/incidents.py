"""What the gate refused or doubted in the registry's data, counted by kind and logged once each.

Every tamper the gate notices is an incident of one of ``KINDS``. The same incident seen again at
the next poll (a rolled-back head stays rolled back) is neither logged nor counted again, so the
counts say how many distinct things went wrong and the log says each once, with its cause.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Hashable, Iterable
from typing import Final

__all__ = ["KINDS", "Incidents"]

log = logging.getLogger("server.follower")

_REMEMBERED = 100_000  # incidents remembered (not said twice) at most

KINDS: Final = (
    "bad_head",  # a head that does not verify with the registry key (signature, cosignature)
    "rollback",  # a head (or a cosignature) older than the one held: refused
    "fork",  # two different heads for one serial, or a log that does not extend the one held
    "inconsistent",  # a newer head whose log cannot be shown to extend the one held
    "map_mismatch",  # a newer head whose status map the database's records do not give
    "record_unverified",  # a structure whose current record cannot be verified
    "database_altered",  # a record in the database differs from the verified one the gate holds
    "stale",  # the held head's cosignature too old (or the head superseded): REGISTRY_STALE
    # A gate over a shared cache (server.shared_cache, server.shared_follower), one kind a lie:
    "redis_unavailable",  # Redis down, slow or flushed: the database answers instead
    "redis_entries",  # a bucket's entries that do not give the bucket's node in the held top
    "redis_record",  # a record missing, or whose SHA-256 is not its entry's value
    "redis_head",  # a head that does not verify, or older than the one held
    "redis_log",  # log leaves or a frontier that do not give a verified head's root
    "redis_top",  # a map top or diff that does not give a verified head's map root and count
    "database_bucket",  # the database's records of a bucket do not give its node in the top
)


class Incidents:
    """Counts by kind (``counts[kind]``), each distinct incident once; safe from any thread."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter({kind: 0 for kind in KINDS})
        self._seen: set[tuple[str, Hashable]] = set()
        self._lock = threading.Lock()

    def known(self, kind: str, key: Hashable) -> bool:
        """Incident ``key`` of ``kind`` was reported already."""
        with self._lock:
            return (kind, key) in self._seen

    def report(self, kind: str, key: Hashable, message: str, *args: object) -> bool:
        """Count and log (ERROR) incident ``key`` of ``kind`` unless reported before; True if new.

        ``message`` and ``args`` are formatted as ``logging`` does. The line is logged before
        the count moves, so whoever sees the count finds the line.
        """
        return self.count(kind, (key,), message, *args) > 0

    def count(self, kind: str, keys: Iterable[Hashable], message: str, *args: object) -> int:
        """Count the incidents of ``keys`` not counted before, logging ``message`` once for them
        all (when any is new); returns how many were new."""
        if kind not in self.counts:
            raise ValueError(f"unknown incident kind {kind!r}")
        with self._lock:
            new = {(kind, key) for key in keys} - self._seen
            if not new:
                return 0
            if len(self._seen) + len(new) > _REMEMBERED:  # forgeries rotated: say them again
                self._seen.clear()
            self._seen |= new
            log.error("registry: " + message, *args)
            self.counts[kind] += len(new)
        return len(new)
