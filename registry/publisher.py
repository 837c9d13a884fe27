"""The registry service's publisher: copies its verified state to Redis, where gates read it.

Many gates share one Redis instead of each reading the database. The service publishes there
only what it holds verified (``registry.service_state.ServedState``), never database rows as
read, and each envelope byte for byte as signed, so that a gate can check everything it reads
against the signed head (the keys are described in ``registry.redis_layout``).

What is published, by the heartbeat's news (``Heartbeat`` calls ``adopted`` and ``cosigned``):

* **Everything**, at start, after a state loaded afresh, and whenever Redis's ``published`` is
  not the serial this publisher last completed (Redis flushed or restarted, or a publish
  failed half way): every bucket (the hash replaced whole, in MULTI/EXEC chunks), the log's
  leaves, ``frontier:<size>``, ``top:<serial>``, then ``head``, then ``published``.
* **A newer head** adopted by applying its changed records: each changed bucket in one
  MULTI/EXEC (its entries and its changed records), the new leaves appended to ``log`` (the
  whole log again when its length is not the old size's), ``frontier``, ``top``, ``diff`` from
  the last published serial, one ``changes`` entry per changed structure and one for the head,
  then ``head``, then ``published``. The previous serial's keys expire after ``KEEP_OLD``.
* **A new cosignature** of the same head: ``head`` alone (it changes nothing a gate holds).

Redis is optional: a failure is logged once per reason (``registry.heartbeat.Job``), the
service goes on answering, and the next beat (every heartbeat interval) checks ``published``
and repairs what is missing. Every Redis call runs in a thread, never on the event loop; while
one reads the held state, the heartbeat waits before ``apply``ing a newer head to it (``lock``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlsplit

import redis

from registry.heartbeat import Job, run_blocking
from registry.redis_layout import (
    DEFAULT_PREFIX,
    ENTRIES_FIELD,
    RedisLayout,
    serial_bytes,
)
from registry.service_state import ServedState
from registry.statusmap import BUCKETS, bucket_of, diff_bytes

__all__ = ["KEEP_OLD", "RedisPublisher", "redis_client"]

log = logging.getLogger(__name__)

KEEP_OLD: Final = 3600
"""Seconds an older ``top``, ``diff`` or ``frontier`` key is kept once a newer one is published
(a gate behind by that much reads everything again)."""
STREAM_LENGTH: Final = 1_000_000
"""About how many entries the ``changes`` stream keeps (trimmed approximately)."""
_CHUNK_RECORDS = 5000
"""Records per MULTI/EXEC of a full publish (about 7 MB of envelopes)."""
_CHUNK_BUCKETS = 4096
_HASH = 32


def redis_client(url: str, *, timeout: float = 5.0) -> redis.Redis:
    """A client of ``url`` whose calls give up after ``timeout`` seconds; ``ValueError`` saying
    why when ``url`` is not a Redis URL (nothing is connected yet)."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
    )


@dataclass(frozen=True, slots=True)
class _Published:
    """What this publisher last completed in Redis."""

    serial: int
    size: int


class RedisPublisher:
    """Publishes the heartbeat's verified state to the Redis at ``url``, under ``prefix``, at
    each beat (``interval`` seconds) and whenever the heartbeat has news."""

    def __init__(
        self, url: str, *, prefix: str = DEFAULT_PREFIX, interval: float, timeout: float = 5.0
    ) -> None:
        self.url = url
        self.layout = RedisLayout(prefix)
        self._client = redis_client(url, timeout=timeout)
        self.lock = asyncio.Lock()
        """Held while a thread reads the state: the heartbeat applies no head to it meanwhile."""
        self._state: ServedState | None = None
        self._changed: set[str] | None = None  # changed since ``_done``; None: publish it all
        self._done: _Published | None = None
        self._head: bytes | None = None  # the head note last SET
        self.full_publishes = 0
        self.increments = 0
        self.heads = 0  # head-only updates (new cosignatures)
        self.job = Job("redis publish", interval, self._publish, retry=interval, max_backoff=0)

    def __str__(self) -> str:
        return f"redis {_where(self.url)} (keys {self.layout.prefix}*)"

    @property
    def failures(self) -> int:
        """Failures in a row, up to now."""
        return self.job.failures

    # --- news from the heartbeat (on the event loop) ----------------------------------------------

    def adopted(self, state: ServedState, changed: Iterable[str] | None) -> None:
        """The heartbeat holds ``state`` now; ``changed``: the structures whose records changed
        since the state it held before (None: loaded afresh, publish it all)."""
        if changed is None or self._changed is None or state is not self._state:
            self._changed = None  # a state of its own (or nothing published yet): all of it
        else:
            self._changed.update(changed)
        self._state = state
        self.job.run_soon()

    def cosigned(self) -> None:
        """The held head has a new cosignature."""
        self.job.run_soon()

    def start(self) -> None:
        self.job.start()

    async def close(self, grace: float = 5.0) -> None:
        await self.job.close(grace)
        self._client.close()

    # --- publishing ---------------------------------------------------------------------------

    async def _publish(self) -> None:
        async with self.lock:
            state = self._state
            if state is None:
                return  # nothing verified yet
            changed, self._changed = self._changed, set()
            try:
                await run_blocking(lambda: self._sync(state, changed), "redis publish")
            except BaseException:
                if changed is None or self._changed is None:
                    self._changed = None
                else:
                    self._changed |= changed
                raise

    def _sync(self, state: ServedState, changed: set[str] | None) -> None:
        """Bring Redis to ``state`` (in a thread; nothing ``apply``s to ``state`` meanwhile)."""
        done = self._done
        raw = self._client.get(self.layout.published)
        intact = done is not None and raw == str(done.serial).encode()
        if not intact or changed is None or done is None:
            if done is not None and not intact:
                log.warning(
                    "%s: published is %r, not serial %d: publishing everything again",
                    self,
                    raw,
                    done.serial,
                )
            self._everything(state)
        elif state.serial != done.serial:
            self._increment(state, changed, done)
        elif state.head.note != self._head:
            self._client.set(self.layout.head, state.head.note)
            self._head = state.head.note
            self.heads += 1

    def _everything(self, state: ServedState) -> None:
        started = time.monotonic()
        self._done = None
        self._client.delete(self.layout.published)  # incomplete until written again, last
        status_map = state.status_map
        by_bucket: list[list[str]] = [[] for _ in range(BUCKETS)]
        for structure_id in state.structure_ids():
            by_bucket[bucket_of(structure_id)].append(structure_id)
        pipe = self._client.pipeline(transaction=True)
        records = buckets = 0
        for index, ids in enumerate(by_bucket):
            key = self.layout.bucket(index)
            pipe.delete(key)
            fields: dict[bytes | str, bytes] = {ENTRIES_FIELD: status_map.bucket_entries(index)}
            for structure_id in ids:
                envelope = state.envelope(structure_id)
                assert envelope is not None
                fields[structure_id] = envelope
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            records += len(ids)
            buckets += 1
            if records >= _CHUNK_RECORDS or buckets >= _CHUNK_BUCKETS:
                pipe.execute()
                records = buckets = 0
        pipe.execute()
        old = self._older_keys(state)
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self.layout.log, state.leaves())
        pipe.set(self.layout.frontier(state.size), state.tree_state())
        pipe.set(self.layout.top(state.serial), status_map.top_bytes())
        for old_key in old:
            pipe.expire(old_key, KEEP_OLD, nx=True)
        self._finish(pipe, state)
        self.full_publishes += 1
        log.info(
            "%s: published everything at head serial %d (%d structures, %d events) in %.3g s",
            self,
            state.serial,
            len(state),
            state.size,
            time.monotonic() - started,
        )

    def _older_keys(self, state: ServedState) -> list[bytes]:
        """The ``top``, ``diff`` and ``frontier`` keys of heads other than ``state``'s."""
        keep = {
            self.layout.top(state.serial).encode(),
            self.layout.diff(state.serial).encode(),
            self.layout.frontier(state.size).encode(),
        }
        older: list[bytes] = []
        for kind in ("top", "diff", "frontier"):
            pattern = f"{_glob_escape(self.layout.prefix)}{kind}:*"
            older += [k for k in self._client.scan_iter(match=pattern, count=1000) if k not in keep]
        return older

    def _finish(self, pipe: Any, state: ServedState) -> None:
        """End a publish: the stream's entry for the head, then ``head``, then ``published``
        (last, so no serial claims to be complete before its data is), all in ``pipe``."""
        pipe.xadd(
            self.layout.changes,
            {"head": str(state.serial), "version": str(state.size)},
            maxlen=STREAM_LENGTH,
            approximate=True,
        )
        pipe.set(self.layout.head, state.head.note)
        pipe.set(self.layout.published, str(state.serial))
        pipe.execute()
        self._head = state.head.note
        self._done = _Published(state.serial, state.size)

    def _increment(self, state: ServedState, changed: set[str], done: _Published) -> None:
        status_map = state.status_map
        by_bucket: dict[int, list[str]] = {}
        for structure_id in sorted(changed):
            by_bucket.setdefault(bucket_of(structure_id), []).append(structure_id)
        for index, ids in sorted(by_bucket.items()):  # each bucket in one MULTI/EXEC
            key = self.layout.bucket(index)
            pipe = self._client.pipeline(transaction=True)
            fields: dict[bytes | str, bytes] = {ENTRIES_FIELD: status_map.bucket_entries(index)}
            removed = []
            for structure_id in ids:
                envelope = state.envelope(structure_id)
                if envelope is None:
                    removed.append(structure_id)
                else:
                    fields[structure_id] = envelope
            pipe.hset(key, mapping=fields)  # type: ignore[arg-type]
            if removed:
                pipe.hdel(key, *removed)
            pipe.execute()
        if self._client.strlen(self.layout.log) == done.size * _HASH:
            self._client.append(self.layout.log, state.leaves(done.size))
        else:
            log.warning("%s: the log is not %d leaves long: writing it whole", self, done.size)
            self._client.set(self.layout.log, state.leaves())
        diff = diff_bytes({index: status_map.bucket_state(index) for index in by_bucket})
        pipe = self._client.pipeline(transaction=True)
        pipe.set(self.layout.frontier(state.size), state.tree_state())
        pipe.set(self.layout.top(state.serial), status_map.top_bytes())
        pipe.set(self.layout.diff(state.serial), serial_bytes(done.serial) + diff)
        pipe.expire(self.layout.top(done.serial), KEEP_OLD)
        pipe.expire(self.layout.diff(done.serial), KEEP_OLD)
        if done.size != state.size:
            pipe.expire(self.layout.frontier(done.size), KEEP_OLD)
        for structure_id in sorted(changed):
            pipe.xadd(
                self.layout.changes,
                {
                    "structure": structure_id,
                    "version": str(state.size),
                    "serial": str(state.serial),
                },
                maxlen=STREAM_LENGTH,
                approximate=True,
            )
        self._finish(pipe, state)
        self.increments += 1
        log.info(
            "%s: published head serial %d (from %d: %d structures changed in %d buckets)",
            self,
            state.serial,
            done.serial,
            len(changed),
            len(by_bucket),
        )


def _where(url: str) -> str:
    """``url`` without its user name and password (for the log)."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def _glob_escape(text: str) -> str:
    """``text`` matched literally in a Redis glob pattern."""
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)
