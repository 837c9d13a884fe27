"""Where the registry's signed data lies in Redis: the one description the publisher (the registry
service) and the readers (the gates) share.

Redis is untrusted storage. Everything here is either signed by the registry key or checked by
hash against something that is, so a reader believes nothing for having read it here:

* ``head``: the newest registry head as a C2SP note with its newest cosignature (what the
  registry service's ``GetHead`` answers). Verified with the registry key.
* ``frontier:<size>``: the log's compact tree state at ``size`` (``CompactTree.state``), for each
  head published; it must give the root a verified head of that size signs.
* ``log``: the log's leaf hashes, 32 bytes an event, in order (``APPEND``ed as the log grows);
  the slice after a held size, appended to the held frontier, must give the new head's root.
* ``top:<serial>``: the status map's top at head ``serial`` (``StatusMap.top_bytes``: each
  bucket's entry count and node, or for a bucket of one entry that entry, whose key must lie in
  the bucket: ``statusmap.BucketItem``); it must give the head's map root and count.
* ``diff:<serial>``: from which serial, and the buckets that changed to reach ``serial``
  (8-byte big-endian serial, then ``statusmap.diff_bytes``); applied to the held top it must
  give the new head's map root and count, which proves no other bucket changed.
* ``bucket:<index>``: a Redis hash per map bucket: field ``""`` holds the bucket's entries
  (``StatusMap.bucket_entries``), which must hash to the bucket's node in a verified top; field
  ``<structure id>`` holds that structure's status record, the exact signed DSSE envelope,
  whose SHA-256 must be its entry's value.
* ``changes``: a Redis Stream of what changed, for waking readers at once: one entry per
  structure whose record a new head changed (``structure``, ``version`` = the head's log size,
  ``serial``), then one entry for the head itself (``head`` = its serial, ``version``). A hint
  only: a reader learns what changed from verified diffs, never from this stream alone.
* ``published``: the serial whose data is complete in Redis (written last); a publisher that
  finds it missing or older (Redis flushed or restarted) publishes everything again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

__all__ = ["DEFAULT_PREFIX", "ENTRIES_FIELD", "RedisLayout", "serial_bytes", "serial_of"]

DEFAULT_PREFIX: Final = "permitgate:"
ENTRIES_FIELD: Final = b""
"""The field of a ``bucket:<index>`` hash that holds the bucket's entries (no structure id is
empty, so it cannot collide with a record's field)."""
_SERIAL = 8


def serial_bytes(serial: int) -> bytes:
    return serial.to_bytes(_SERIAL, "big")


def serial_of(data: bytes) -> tuple[int, bytes]:
    """The serial at the start of ``data``, and the rest; ``ValueError`` when too short."""
    if len(data) < _SERIAL:
        raise ValueError("too short to begin with a serial")
    return int.from_bytes(data[:_SERIAL], "big"), data[_SERIAL:]


@dataclass(frozen=True, slots=True)
class RedisLayout:
    """The keys under one prefix (several registries can share a Redis under different ones)."""

    prefix: str = DEFAULT_PREFIX

    @property
    def head(self) -> str:
        return f"{self.prefix}head"

    @property
    def log(self) -> str:
        return f"{self.prefix}log"

    @property
    def changes(self) -> str:
        return f"{self.prefix}changes"

    @property
    def published(self) -> str:
        return f"{self.prefix}published"

    def frontier(self, size: int) -> str:
        return f"{self.prefix}frontier:{size}"

    def top(self, serial: int) -> str:
        return f"{self.prefix}top:{serial}"

    def diff(self, serial: int) -> str:
        return f"{self.prefix}diff:{serial}"

    def bucket(self, index: int) -> str:
        return f"{self.prefix}bucket:{index}"
