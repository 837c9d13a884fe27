"""Filling a private Redis with a registry's data exactly as ``registry.redis_layout`` says, for
the shared-gate tests: written here from the layout's description (from the database's rows and
a ``StatusMap`` built from them), not by the registry's publisher, so that a gate test does not
rest on the code a publisher test checks."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

from registry.merkle import CompactTree, leaf_hash
from registry.redis_layout import ENTRIES_FIELD, RedisLayout, serial_bytes
from registry.statusmap import BUCKETS, StatusMap, bucket_of, diff_bytes

__all__ = ["LayoutWriter", "Published"]


@dataclass
class Published:
    """What was last written: the head's serial and size, its map, each record's envelope."""

    serial: int
    size: int
    note: bytes
    status_map: StatusMap
    envelopes: dict[str, bytes] = field(default_factory=dict)


class LayoutWriter:
    """Writes the registry behind ``sql`` (a function running one SQL statement) into Redis."""

    def __init__(
        self,
        client: redis.Redis,
        sql: Callable[[str], list[tuple[Any, ...]]],
        prefix: str = "permitgate:",
    ) -> None:
        self.client = client
        self.sql = sql
        self.layout = RedisLayout(prefix)
        self.last: Published | None = None

    def _rows(self, statement: str) -> list[tuple[Any, ...]]:
        return self.sql(statement)

    def publish(self, *, announce: bool = True) -> Published:
        """Publish the database's newest head: head, log, frontier, top, diff from the head
        published before (when any), the buckets that changed, ``published``, and the changes
        stream's entries."""
        [(serial, size, note, cosignature)] = self._rows(
            "SELECT serial, size, note, cosignature FROM head ORDER BY serial DESC LIMIT 1"
        )
        serial, size = int(serial), int(size)
        note_bytes = bytes(note) + bytes(cosignature or b"")
        envelopes = {
            str(sid): bytes(env)
            for sid, env in self._rows("SELECT structure_id, envelope FROM status_record")
        }
        status_map = StatusMap(
            (sid, hashlib.sha256(env).digest()) for sid, env in envelopes.items()
        )
        leaves = [
            leaf_hash(bytes(body)) for (body,) in self._rows("SELECT body FROM event ORDER BY seq")
        ]
        tree = CompactTree()
        for leaf in leaves[:size]:
            tree.append(leaf)
        previous = self.last
        if previous is None:
            changed = [i for i in range(BUCKETS) if status_map.bucket_state(i)[0]]
        else:
            changed = [
                i
                for i in range(BUCKETS)
                if status_map.bucket_state(i) != previous.status_map.bucket_state(i)
            ]
        by_bucket: dict[int, list[str]] = {}
        for sid in envelopes:
            by_bucket.setdefault(bucket_of(sid), []).append(sid)
        layout = self.layout
        pipe = self.client.pipeline(transaction=True)
        pipe.set(layout.head, note_bytes)
        pipe.set(layout.log, b"".join(leaves[:size]))
        pipe.set(layout.frontier(size), tree.state)
        pipe.set(layout.top(serial), status_map.top_bytes())
        if previous is not None:
            diff = {i: status_map.bucket_state(i) for i in changed}
            pipe.set(layout.diff(serial), serial_bytes(previous.serial) + diff_bytes(diff))
        for index in changed:
            pipe.delete(layout.bucket(index))
            mapping: dict[Any, bytes] = {ENTRIES_FIELD: status_map.bucket_entries(index)}
            for sid in by_bucket.get(index, ()):
                mapping[sid] = envelopes[sid]
            pipe.hset(layout.bucket(index), mapping=mapping)
        pipe.set(layout.published, str(serial))
        pipe.execute()
        if announce:
            moved = (
                set(envelopes)
                if previous is None
                else {sid for sid, env in envelopes.items() if previous.envelopes.get(sid) != env}
            )
            for sid in sorted(moved):
                self.client.xadd(
                    layout.changes, {"structure": sid, "version": size, "serial": serial}
                )
            self.client.xadd(layout.changes, {"head": serial, "version": size})
        self.last = Published(serial, size, note_bytes, status_map, envelopes)
        return self.last

    # --- tampering, for the attack tests -----------------------------------------------------

    def set_record(self, structure_id: str, envelope: bytes) -> None:
        """File ``envelope`` under ``structure_id``'s field of its bucket."""
        self.client.hset(self.layout.bucket(bucket_of(structure_id)), structure_id, envelope)

    def record(self, structure_id: str) -> bytes:
        value = self.client.hget(self.layout.bucket(bucket_of(structure_id)), structure_id)
        assert isinstance(value, bytes), structure_id
        return value

    def set_entries(self, index: int, entries: bytes) -> None:
        self.client.hset(self.layout.bucket(index), ENTRIES_FIELD, entries)

    def entries(self, index: int) -> bytes:
        value = self.client.hget(self.layout.bucket(index), ENTRIES_FIELD)
        assert isinstance(value, bytes), index
        return value
