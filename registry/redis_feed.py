"""Reading the registry's data from Redis, as ``registry.redis_layout`` lays it out: the async
reads a gate in shared mode makes, each bounded by a short timeout.

This module reads and never believes: it returns the bytes found (None where a key or field is
missing) and leaves every check to the gate (``server.shared_cache``, ``server.shared_follower``),
which verifies heads with the registry key and everything else by hash against a verified head.
Redis being down, slow or flushed is therefore only a loss of speed: every read that fails
raises ``RedisFeedError`` whose message says which read and why, in one line, and the gate falls
back to the database.

Two connections: one for the reads, with a timeout of ``timeout`` seconds (a gate must not hold
a request for a slow Redis longer than that), and one for the blocking ``XREAD`` on the changes
stream, whose timeout is the block time plus ``timeout``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Sequence
from typing import Any, Final
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from registry.redis_layout import DEFAULT_PREFIX, ENTRIES_FIELD, RedisLayout

__all__ = ["DEFAULT_TIMEOUT", "Change", "RedisFeed", "RedisFeedError"]

DEFAULT_TIMEOUT: Final = 0.2
"""Seconds a read may take before it counts as failed (Redis answers in well under 1 ms)."""

_HASH = 32

Change = dict[bytes, bytes]
"""One entry of the changes stream: its fields as written (a hint, never believed)."""


class RedisFeedError(Exception):
    """A read from Redis failed; the message says which and why, in one line."""


def _where(url: str) -> str:
    """The URL without any password, for messages."""
    parts = urlsplit(url)
    host = parts.hostname or "?"
    return f"{parts.scheme}://{host}:{parts.port or 6379}{parts.path}"


class RedisFeed:
    """The layout's keys under ``prefix`` on the Redis at ``url``, read with a timeout."""

    def __init__(
        self, url: str, *, prefix: str = DEFAULT_PREFIX, timeout: float = DEFAULT_TIMEOUT
    ) -> None:
        self.url = url
        self.where = _where(url)
        self.layout = RedisLayout(prefix)
        self.timeout = timeout
        self._client = aioredis.Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        self._stream_client: aioredis.Redis | None = None
        self._block: float = 0.0

    def __repr__(self) -> str:
        return f"RedisFeed({self.where}, prefix {self.layout.prefix!r})"

    async def _read(self, what: str, read: Awaitable[Any], timeout: float | None = None) -> Any:
        """``read`` awaited within the timeout (redis-py types its replies loosely: the callers
        name what each is)."""
        try:
            async with asyncio.timeout(self.timeout if timeout is None else timeout):
                return await read
        except TimeoutError:
            raise RedisFeedError(
                f"redis {self.where}: {what}: no answer within {self.timeout:g} s"
            ) from None
        except (RedisError, OSError) as exc:
            why = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RedisFeedError(f"redis {self.where}: {what}: {why}") from exc

    async def head(self) -> bytes | None:
        """The newest head note (with its cosignature), None when none is published."""
        note: bytes | None = await self._read("GET head", self._client.get(self.layout.head))
        return note

    async def published(self) -> int | None:
        """The serial whose data is complete in Redis, None when none is."""
        raw: bytes | None = await self._read(
            "GET published", self._client.get(self.layout.published)
        )
        if raw is None:
            return None
        try:
            return int(raw)
        except ValueError:
            raise RedisFeedError(
                f"redis {self.where}: published: {raw[:20]!r} is not a serial"
            ) from None

    async def frontier(self, size: int) -> bytes | None:
        state: bytes | None = await self._read(
            f"GET frontier:{size}", self._client.get(self.layout.frontier(size))
        )
        return state

    async def leaves(self, start: int, end: int) -> list[bytes]:
        """The log's leaf hashes ``[start, end)``; ``RedisFeedError`` unless all are there."""
        if end <= start:
            return []
        raw: bytes = await self._read(
            f"GETRANGE log {start}..{end}",
            self._client.getrange(self.layout.log, start * _HASH, end * _HASH - 1),
        )
        if len(raw) != (end - start) * _HASH:
            raise RedisFeedError(
                f"redis {self.where}: log holds {len(raw) // _HASH} of the leaves {start}..{end}"
            )
        return [raw[i : i + _HASH] for i in range(0, len(raw), _HASH)]

    async def top(self, serial: int) -> bytes | None:
        top: bytes | None = await self._read(
            f"GET top:{serial}", self._client.get(self.layout.top(serial))
        )
        return top

    async def diff(self, serial: int) -> bytes | None:
        diff: bytes | None = await self._read(
            f"GET diff:{serial}", self._client.get(self.layout.diff(serial))
        )
        return diff

    async def buckets(
        self, wanted: Sequence[tuple[int, str]]
    ) -> list[tuple[bytes | None, bytes | None]]:
        """For each ``(bucket index, structure id)``: the bucket's entries and the structure's
        envelope (None where missing), in one round trip."""
        if not wanted:
            return []
        pipe = self._client.pipeline(transaction=False)
        for index, structure_id in wanted:
            pipe.hmget(self.layout.bucket(index), [ENTRIES_FIELD, structure_id])
        rows: list[list[bytes | None]] = await self._read("HMGET of buckets", pipe.execute())
        return [(row[0], row[1]) for row in rows]

    async def changes(self, after: bytes, block: float) -> list[tuple[bytes, Change]]:
        """Entries of the changes stream after id ``after`` (``b"$"``: from now), waiting up to
        ``block`` seconds for one."""
        if self._stream_client is None or block != self._block:
            if self._stream_client is not None:
                await self._stream_client.aclose()
            self._block = block
            self._stream_client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=block + self.timeout,
                socket_connect_timeout=self.timeout,
                retry_on_timeout=False,
            )
        reply: list[tuple[bytes, list[tuple[bytes, Change]]]] | None = await self._read(
            "XREAD changes",
            self._stream_client.xread(
                {self.layout.changes: after}, count=1000, block=max(1, int(block * 1000))
            ),
            timeout=block + self.timeout,
        )
        out: list[tuple[bytes, Change]] = []
        for _stream, entries in reply or ():
            out.extend((entry_id, fields) for entry_id, fields in entries)
        return out

    async def last_change(self) -> tuple[bytes, Change | None]:
        """The newest entry of the changes stream: its id and fields (``b"0-0"`` and None when
        the stream is empty)."""
        reply: list[tuple[bytes, Change]] = await self._read(
            "XREVRANGE changes", self._client.xrevrange(self.layout.changes, count=1)
        )
        return reply[0] if reply else (b"0-0", None)

    async def close(self) -> None:
        for client in (self._client, self._stream_client):
            if client is not None:
                await client.aclose()
