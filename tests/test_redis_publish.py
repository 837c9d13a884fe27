"""The registry service publishing to a private Redis (``permitgate registry serve --redis``).

What lies in Redis is checked by paths that do not go through the publisher: the head with the
client package's verifier and by hand; the log's leaves against the event rows hashed here and
the signed root; each bucket's entries against the top and each record's SHA-256, each record
byte for byte against the database's envelope and through the service's own map proof. Redis
is flushed, stopped and restarted under the running service, which keeps answering.
"""

from __future__ import annotations

import hashlib
import logging
import signal
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from gate_helpers import GateRegistry, wait_for
from permitgate_client._proofs import MapProof, RegistryHead, map_key, verify_map_proof
from processes import spawn
from redis_support import PrivateRedis, private_redis
from registry_support import invoke
from test_registry_service import (
    RunningService,
    import_beside,
    new_structure,
    running_service,
    start_service,
    verified,
)

from registry.demo import demo_lines
from registry.merkle import CompactTree
from registry.publisher import RedisPublisher
from registry.redis_layout import ENTRIES_FIELD, RedisLayout, serial_of
from registry.statusmap import BUCKETS, MapTop, bucket_node, entry_in, parse_diff

STRUCTURES = 40
LAYOUT = RedisLayout("pg-test:")


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[GateRegistry]:
    registry = GateRegistry(db_url, tmp_path / "keys")
    registry.load(demo_lines(STRUCTURES))
    try:
        yield registry
    finally:
        registry.close()


def leaf_root(leaves: list[bytes]) -> bytes:
    """RFC 6962's MTH over leaf hashes already computed, from the definition."""
    if len(leaves) == 1:
        return leaves[0]
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return hashlib.sha256(b"\x01" + leaf_root(leaves[:k]) + leaf_root(leaves[k:])).digest()


@dataclass(frozen=True)
class Published:
    """What Redis holds, once checked: the head and the top it verified."""

    head: RegistryHead
    top: MapTop


def got(client: redis.Redis, key: str) -> bytes | None:
    """GET ``key`` (the client answers bytes: it does not decode)."""
    value = client.get(key)
    assert value is None or isinstance(value, bytes)
    return value


def published_serial(client: redis.Redis) -> int | None:
    raw = got(client, LAYOUT.published)
    return None if raw is None else int(raw)


def check_published(
    client: redis.Redis, registry: GateRegistry, service: RunningService | None = None
) -> Published:
    """Everything under ``LAYOUT`` verifies against the signed head, by paths of its own."""
    note = got(client, LAYOUT.head)
    assert note is not None
    head = verified(registry, note)  # the registry key's signature and a cosignature
    assert published_serial(client) == head.map.serial
    # The log: the event rows hashed here, and the signed root from them and from the frontier.
    bodies = [bytes(b) for (b,) in registry.sql("SELECT body FROM event ORDER BY seq")]
    leaves_raw = got(client, LAYOUT.log)
    assert leaves_raw is not None and len(leaves_raw) == head.size * 32
    leaves = [leaves_raw[i : i + 32] for i in range(0, len(leaves_raw), 32)]
    assert leaves == [hashlib.sha256(b"\x00" + body).digest() for body in bodies[: head.size]]
    assert leaf_root(leaves) == head.checkpoint.root_hash
    frontier = got(client, LAYOUT.frontier(head.size))
    assert frontier is not None
    assert CompactTree.from_state(head.size, frontier).root() == head.checkpoint.root_hash
    # The top gives the signed map root and count.
    top_raw = got(client, LAYOUT.top(head.map.serial))
    assert top_raw is not None
    top = MapTop.from_bytes(top_raw)
    assert top.gives(head.map.root, head.map.count)
    # Every bucket: its entries hash to the top's node; each record is the database's, byte
    # for byte, its SHA-256 the entry's value; no field but the entries and those records.
    rows = {
        sid: bytes(envelope)
        for sid, envelope in registry.sql("SELECT structure_id, envelope FROM status_record")
    }
    assert len(rows) == head.map.count
    seen: set[str] = set()
    pipe = client.pipeline(transaction=False)
    for index in range(BUCKETS):
        pipe.hgetall(LAYOUT.bucket(index))
    for index, fields in enumerate(pipe.execute()):
        entries = fields.pop(ENTRIES_FIELD, None)
        assert entries is not None, f"bucket {index} has no entries field"
        assert bucket_node(entries, index) == top.bucket(index), f"bucket {index}"
        assert len(fields) == len(entries) // 64, f"bucket {index}: {sorted(fields)}"
        for field, envelope in fields.items():
            sid = field.decode()
            assert envelope == rows[sid], sid
            assert entry_in(entries, map_key(sid)) == hashlib.sha256(envelope).digest()
            seen.add(sid)
    assert seen == set(rows)
    if service is None:
        return Published(head, top)
    # And one record through the service's own proof (the client's verifier).
    sid = min(rows)
    status = service.status(sid)
    verify_map_proof(
        head.map.root,
        sid,
        hashlib.sha256(rows[sid]).digest(),
        MapProof.from_bytes(status.map_proof),
    )
    return Published(head, top)


def publishing(
    registry: GateRegistry, tmp_path: Path, server: PrivateRedis
) -> AbstractContextManager[RunningService]:
    return running_service(registry, tmp_path, redis_url=server.url, redis_prefix=LAYOUT.prefix)


def wait_published(client: redis.Redis, serial: int | None = None, timeout: float = 20) -> int:
    def probe() -> int | None:
        try:
            found = published_serial(client)
        except redis.RedisError:
            return None
        return found if found is not None and (serial is None or found >= serial) else None

    return wait_for(probe, timeout)


# --- tests ---------------------------------------------------------------------------------------


def test_serve_publishes_what_verifies_and_an_import_as_a_diff(
    registry: GateRegistry, tmp_path: Path
) -> None:
    with private_redis() as server, publishing(registry, tmp_path, server) as service:
        client = server.client()
        wait_published(client)
        before = check_published(client, registry, service)
        old_serial = before.head.map.serial
        changed = {"NEW-1", "NEW-2"}
        import_beside(registry, tmp_path, [new_structure(sid) for sid in sorted(changed)])
        wait_published(client, old_serial + 1)
        after = check_published(client, registry, service)
        new_serial = after.head.map.serial
        assert new_serial == old_serial + 1
        # The diff, applied to the old top, gives the new head's root: no other bucket changed.
        diff = got(client, LAYOUT.diff(new_serial))
        assert diff is not None
        since, items = serial_of(diff)
        assert since == old_serial
        changes = parse_diff(items)
        assert set(changes) == {bucket_of_id(sid) for sid in changed}
        assert before.top.with_buckets(changes).gives(after.head.map.root, after.head.map.count)
        # The stream: one entry per changed structure, then the head.
        entries: Any = client.xrange(LAYOUT.changes)
        mine = [
            fields for _, fields in entries if fields.get(b"serial") == str(new_serial).encode()
        ]
        assert {f[b"structure"].decode() for f in mine} == changed
        assert all(f[b"version"] == str(after.head.size).encode() for f in mine)
        last = entries[-1][1]
        assert last == {
            b"head": str(new_serial).encode(),
            b"version": str(after.head.size).encode(),
        }
        # The old head's top expires; the newest does not.
        assert 0 < client.ttl(LAYOUT.top(old_serial)) <= 3600
        assert client.ttl(LAYOUT.top(new_serial)) == -1
        assert client.ttl(LAYOUT.frontier(after.head.size)) == -1
        publisher = service.app.publisher
        assert publisher is not None and (publisher.full_publishes, publisher.increments) == (1, 1)


def bucket_of_id(structure_id: str) -> int:
    key = hashlib.sha256(structure_id.encode()).digest()  # the map key, by its definition
    return int.from_bytes(key[:2], "big")


def test_a_new_cosignature_updates_the_head_and_adds_nothing_to_the_stream(
    registry: GateRegistry, tmp_path: Path
) -> None:
    with private_redis() as server, publishing(registry, tmp_path, server) as service:
        client = server.client()
        wait_published(client)
        first = verified(registry, got(client, LAYOUT.head) or b"")
        length = client.xlen(LAYOUT.changes)
        assert first.cosigned_at is not None

        def newer() -> RegistryHead | None:
            head = verified(registry, got(client, LAYOUT.head) or b"")
            assert head.cosigned_at is not None
            return head if head.cosigned_at > first.cosigned_at else None  # type: ignore[operator]

        later = wait_for(newer, timeout=10)
        assert later.same_head(first)
        assert client.xlen(LAYOUT.changes) == length
        publisher = service.app.publisher
        assert publisher is not None
        wait_for(lambda: publisher.heads or None, timeout=10)  # counted once the SET returned


def test_redis_flushed_or_restarted_is_published_again_while_the_service_answers(
    registry: GateRegistry, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    with private_redis() as server, publishing(registry, tmp_path, server) as service:
        client = server.client()
        wait_published(client)
        check_published(client, registry, service)
        client.flushall()
        wait_published(client)
        check_published(client, registry, service)
        publisher = service.app.publisher
        assert publisher is not None and publisher.full_publishes == 2
        # Stopped: the service answers throughout, and the failure is logged once.
        caplog.set_level(logging.ERROR, logger="registry.heartbeat")
        server.stop()
        failed_beats = publisher.job.runs
        wait_for(lambda: True if publisher.job.runs >= failed_beats + 4 else None, timeout=20)
        for _ in range(3):
            assert verified(registry, service.head().note)
            time.sleep(0.1)
        failures = [r for r in caplog.records if "redis publish failed" in r.getMessage()]
        # Logged once per reason, not at every beat: Redis killed in the middle of a read
        # resets the connection first, and refuses the next ones.
        messages = [r.getMessage() for r in failures]
        assert 1 <= len(messages) <= 2 and len(set(messages)) == len(messages), messages
        assert publisher.failures >= 4
        server.start()  # empty
        wait_published(server.client())
        check_published(server.client(), registry, service)
        assert publisher.failures == 0 and publisher.full_publishes == 3
        assert verified(registry, service.head().note)


def test_serve_refuses_a_redis_url_that_is_not_one(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    registry.close()
    args = ["registry", "serve", "--db", registry.url, "--keys", str(registry.keys_dir)]
    result = invoke([*args, "--redis", "http://127.0.0.1:1/0"])
    assert result.exit_code == 2
    assert "--redis 'http://127.0.0.1:1/0': Redis URL must specify" in result.stderr
    from_env = invoke(args, PERMITGATE_REDIS="redis://127.0.0.1:port/0")
    assert from_env.exit_code == 2
    assert "--redis 'redis://127.0.0.1:port/0': Port could not be" in from_env.stderr


def test_a_database_that_does_not_verify_publishes_nothing(
    registry: GateRegistry, tmp_path: Path
) -> None:
    """Someone who writes the database swaps one structure's record for another's (each
    genuinely signed): the service loads nothing it cannot verify, so Redis stays empty."""
    with private_redis() as server:
        client = server.client()
        with publishing(registry, tmp_path, server):
            wait_published(client)
        client.flushall()
        ids = sorted(sid for (sid,) in registry.sql("SELECT structure_id FROM status_record"))
        first, second = ids[:2]
        registry.sql(
            "UPDATE status_record SET envelope = :e WHERE structure_id = :sid",
            e=registry.status_envelope(second),
            sid=first,
        )
        service = start_service(
            registry, tmp_path / "registry-state", redis_url=server.url, redis_prefix=LAYOUT.prefix
        )
        try:
            beat = service.app.heartbeat.beat
            wait_for(lambda: True if beat.runs >= 3 else None, timeout=20)
            assert service.app.heartbeat.refusal is not None
            assert "do not give the map root" in service.app.heartbeat.refusal
            assert client.keys("*") == []
            publisher = service.app.publisher
            assert publisher is not None and publisher.job.runs >= 3
        finally:
            service.stop()


def test_the_serve_command_publishes_to_the_redis_it_is_given(tmp_path: Path) -> None:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    registry.load(demo_lines(5))
    args = ["registry", "serve", "--db", registry.url, "--keys", str(registry.keys_dir),
            "--listen", "127.0.0.1:0", "--heartbeat", "0.2",
            "--redis-prefix", LAYOUT.prefix]  # fmt: skip
    try:
        with private_redis() as server, spawn(args, {"PERMITGATE_REDIS": server.url}) as served:
            line = served.wait_for(".+", timeout=20).string
            where = f"publishing to redis {server.url} (keys {LAYOUT.prefix}*)"
            assert line.rstrip().endswith(where), line
            client = server.client()
            wait_published(client)
            check_published(client, registry)
            served.process.send_signal(signal.SIGTERM)
            assert served.process.wait(timeout=20) == 0
    finally:
        registry.close()


def test_the_log_never_shows_the_redis_password() -> None:
    publisher = RedisPublisher("redis://user:s3cret@127.0.0.1:1/0", interval=1.0)
    assert str(publisher) == "redis redis://127.0.0.1:1/0 (keys permitgate:*)"


def test_a_log_cut_short_in_redis_is_written_whole_with_the_next_head(
    registry: GateRegistry, tmp_path: Path
) -> None:
    with private_redis() as server, publishing(registry, tmp_path, server) as service:
        client = server.client()
        old_serial = wait_published(client)
        client.set(LAYOUT.log, b"\x00" * 32)  # one wrong leaf where there were many
        import_beside(registry, tmp_path, [new_structure("NEW-3")])
        wait_published(client, old_serial + 1)
        check_published(client, registry, service)  # the whole log, as the event rows give it
        publisher = service.app.publisher
        assert publisher is not None and (publisher.full_publishes, publisher.increments) == (1, 1)
