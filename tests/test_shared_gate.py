"""The gate in shared mode (``serve --redis``): a map top and a bounded cache of records proved
against it, read from Redis, the database when Redis fails or lies.

Every test runs a real gate on loopback over a registry in PostgreSQL and a private
redis-server filled as ``registry.redis_layout`` describes (``redis_layout_support``). The
attacks are those of someone who writes Redis (and in some, the database too) but holds no key:
a gate never answers ALLOW from data it could not prove, counts each lie in its incidents, and
gives the right answer from the database when the database is genuine.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import grpc
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    GateRegistry,
    Heartbeat,
    RunningGate,
    Wire,
    batch_check,
    case,
    codes,
    connection,
    reasons,
    registration,
    start_gate,
    verdict,
    wait_for,
)
from permitgate_client import Client
from permitgate_client._proofs import map_key
from permitgate_client.v1 import gate_pb2 as pb
from permitgate_client.v1 import gate_pb2_grpc
from processes import PERMITGATE, spawn
from redis_layout_support import LayoutWriter
from redis_support import PrivateRedis, private_redis
from tcp_proxy import TcpProxy

from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.heads import sign_head
from registry.merkle import CompactTree
from registry.signing import Signer
from registry.statusmap import BUCKETS, BucketItem, MapTop, StatusMap, bucket_of, parse_diff
from registry.trust import STATUS_PAYLOAD_TYPE
from server.shared_cache import _LIE_GRACE, SharedCache
from server.shared_follower import SharedFollower

CLEAN = structure_id(0)  # every permit in force: ALLOW
FLAGGED = structure_id(7)  # a stop order: DENY
TARGET = structure_id(14)  # clean at first; a stop order when ``flag_target`` runs
UNKNOWN = "990000-0000-0001"
ALLOW = ("ALLOW", set[str]())
DENIED = ("DENY", {"STRUCTURE_FLAGGED"})
UNVERIFIED = ("REVIEW", {"RECORD_UNVERIFIED"})


@dataclass
class Shared:
    """A registry, a Redis it is published to, and a shared-mode gate on both."""

    registry: GateRegistry
    redis: PrivateRedis
    writer: LayoutWriter
    tmp: Path
    gate: RunningGate | None = None
    gates: list[RunningGate] = field(default_factory=list)

    def start(
        self, *, redis_url: str | None = None, poll_interval: float = 0.2, **options: Any
    ) -> RunningGate:
        options.setdefault("state_dir", self.tmp / "gate-state")
        self.gate = start_gate(
            self.registry.url,
            self.registry.keys_dir,
            poll_interval=poll_interval,
            redis_url=redis_url or self.redis.url,
            **options,
        )
        self.gates.append(self.gate)
        return self.gate

    def stop(self) -> None:
        assert self.gate is not None
        self.gate.stop()

    @property
    def cache(self) -> SharedCache:
        assert self.gate is not None
        cache = self.gate.app.cache
        assert isinstance(cache, SharedCache)
        return cache

    @property
    def follower(self) -> SharedFollower:
        assert self.gate is not None
        follower = self.gate.app.follower
        assert isinstance(follower, SharedFollower)
        return follower

    def ask(self, sid: str) -> pb.Decision:
        assert self.gate is not None
        with Wire(self.gate.target) as wire:
            return wire.ask(connection(sid))

    def answer(self, sid: str) -> tuple[str, set[str]]:
        decision = self.ask(sid)
        return verdict(decision), codes(decision)

    def incidents(self) -> dict[str, int]:
        assert self.gate is not None
        return {kind: n for kind, n in self.gate.app.incidents.counts.items() if n}

    def flag_target(self) -> int:
        return self.registry.load([case(f"C-{TARGET}-stop", TARGET, "stop_order")])

    def envelope(self, sid: str) -> bytes:
        return self.registry.status_envelope(sid)


@pytest.fixture
def shared(pg_url: str, tmp_path: Path) -> Iterator[Shared]:
    registry = GateRegistry(pg_url, tmp_path / "keys")
    try:
        registry.load(demo_lines(2 * len(SCENARIOS)))
        with private_redis() as redis:
            writer = LayoutWriter(redis.client(), registry.sql)
            writer.publish()
            scene = Shared(registry, redis, writer, tmp_path)
            try:
                yield scene
            finally:
                for gate in scene.gates:
                    gate.stop()
    finally:
        registry.close()


def _flip(envelope: bytes) -> bytes:
    """The envelope with one byte of its signed payload changed (its signature kept)."""
    obj = json.loads(envelope)
    payload = bytearray(base64.b64decode(obj["payload"]))
    payload[payload.index(b'"tree_size"') + 1] ^= 0x01
    obj["payload"] = base64.b64encode(bytes(payload)).decode()
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def _same_bucket_as(sid: str) -> str:
    """An id in no registry that falls in ``sid``'s map bucket."""
    index = bucket_of(sid)
    n = 0
    while True:
        candidate = f"990000-{n // 10000:04d}-{n % 10000:04d}"
        if bucket_of(candidate) == index:
            return candidate
        n += 1


# --- answers ---------------------------------------------------------------------------------


def test_answers_match_the_embedded_gate(shared: Shared) -> None:
    """Every demo structure, and unknown ones, answered alike by both gates, one check at a
    time and in a batch; all proved from Redis, nothing from the database, no incident."""
    ids = [structure_id(i) for i in range(2 * len(SCENARIOS))] + [UNKNOWN, "990000-0000-0002"]
    checks = [connection(sid) for sid in ids] + [registration(sid) for sid in ids]
    embedded = start_gate(
        shared.registry.url, shared.registry.keys_dir, state_dir=shared.tmp / "embedded"
    )
    shared.gates.append(embedded)
    gate = shared.start()
    with Wire(embedded.target) as one, Wire(gate.target) as other:
        expected = [(verdict(d), reasons(d)) for d in map(one.ask, checks)]
        got = [(verdict(d), reasons(d)) for d in map(other.ask, checks)]
    assert got == expected
    assert shared.answer(FLAGGED) == DENIED
    assert shared.answer(CLEAN) == ALLOW
    assert shared.answer(UNKNOWN) == ("DENY", {"NOT_IN_REGISTRY"})
    batch = pb.CheckBatch(checks=[batch_check(str(i), c) for i, c in enumerate(checks)])
    fresh = shared.start(state_dir=shared.tmp / "second")
    with Wire(fresh.target) as wire:
        [answered] = wire.batches([batch])
    assert [(verdict(d), reasons(d)) for d in answered.decisions] == expected
    assert shared.cache.fetches["database"] == 0
    assert shared.cache.fetches["redis"] == len(ids)
    assert shared.incidents() == {}


def test_the_cache_holds_at_most_cache_size_structures(shared: Shared) -> None:
    shared.start(cache_size=4)
    ids = [structure_id(i) for i in range(len(SCENARIOS))]
    first = {sid: shared.answer(sid) for sid in ids}
    assert len(shared.cache) <= 4
    assert {sid: shared.answer(sid) for sid in ids} == first
    assert first[FLAGGED] == DENIED and first[CLEAN] == ALLOW


# --- lies in Redis: never ALLOW, counted, the database answers ---------------------------------


def test_a_flipped_byte_in_a_record(shared: Shared) -> None:
    shared.writer.set_record(CLEAN, _flip(shared.envelope(CLEAN)))
    shared.start()
    assert shared.answer(CLEAN) == ALLOW  # from the database's genuine record
    assert shared.incidents() == {"redis_record": 1}
    assert shared.cache.fetches == {"redis": 0, "database": 1}


def test_a_clean_record_filed_under_a_flagged_structure(shared: Shared) -> None:
    shared.writer.set_record(FLAGGED, shared.envelope(CLEAN))
    shared.start()
    assert shared.answer(FLAGGED) == DENIED
    assert shared.incidents() == {"redis_record": 1}


def test_an_older_record_replayed(shared: Shared) -> None:
    older = shared.writer.record(TARGET)
    shared.flag_target()
    shared.writer.publish()
    shared.writer.set_record(TARGET, older)
    shared.start()
    assert shared.answer(TARGET) == DENIED
    assert shared.incidents() == {"redis_record": 1}


def test_a_record_signed_by_another_key(shared: Shared) -> None:
    genuine = json.loads(shared.envelope(CLEAN))
    impostor = Signer(genuine["signatures"][0]["keyid"].split("+")[0], Ed25519PrivateKey.generate())
    payload = base64.b64decode(genuine["payload"]).replace(CLEAN.encode(), FLAGGED.encode())
    shared.writer.set_record(FLAGGED, impostor.sign_envelope(payload, STATUS_PAYLOAD_TYPE))
    shared.start()
    assert shared.answer(FLAGGED) == DENIED
    assert shared.incidents() == {"redis_record": 1}


def test_the_entries_altered_to_hide_a_structure(shared: Shared) -> None:
    """FLAGGED's entry taken out of its bucket's entries (and its record field too): the
    entries no longer give the bucket's node, so no absence is proved from them."""
    index = bucket_of(FLAGGED)
    entries = shared.writer.entries(index)
    key = map_key(FLAGGED)
    at = next(i for i in range(0, len(entries), 64) if entries[i : i + 32] == key)
    shared.writer.set_entries(index, entries[:at] + entries[at + 64 :])
    shared.writer.client.hdel(shared.writer.layout.bucket(index), FLAGGED)
    shared.start()
    assert shared.answer(FLAGGED) == DENIED  # never NOT_IN_REGISTRY
    wait_for(lambda: shared.incidents() or None, timeout=4)  # judged after a grace period
    assert shared.incidents() == {"redis_entries": 1}


def test_a_gate_stopped_before_the_judgement_reports_nothing(shared: Shared) -> None:
    """Entries refused, then the gate stopped within the grace period: the pending judgement
    is dropped with the gate, so a stopped gate reports (and logs) no incident."""
    index = bucket_of(FLAGGED)
    entries = shared.writer.entries(index)
    shared.writer.set_entries(index, entries[64:])
    gate = shared.start()
    assert shared.answer(FLAGGED) == DENIED
    gate.stop()
    time.sleep(_LIE_GRACE + 0.5)
    assert shared.incidents() == {}


def test_a_forged_head(shared: Shared) -> None:
    """A head signed by another key of the same name, with TARGET clean again: refused, and
    the gate keeps following the genuine registry (the database's head, then Redis's)."""
    shared.start()
    older = shared.writer.record(TARGET)
    published = shared.writer.last
    assert published is not None
    shared.flag_target()
    genuine = shared.registry.checkpoint_note()
    impostor = Signer(genuine.split(b"\n", 1)[0].decode(), Ed25519PrivateKey.generate())
    entries = {sid: hashlib.sha256(e).digest() for sid, e in published.envelopes.items()}
    forged = sign_head(
        impostor,
        origin=impostor.name,
        tree=CompactTree(),
        status_map=StatusMap(entries.items()),
        serial=published.serial + 5,
        now=datetime.now(UTC),
    )
    shared.writer.client.set(shared.writer.layout.head, forged.cosigned_note())
    shared.writer.set_record(TARGET, older)
    wait_for(lambda: shared.incidents().get("redis_head"), timeout=3)
    # The database's genuine head is followed meanwhile (its top from the database).
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)
    assert shared.follower.head is not None
    assert shared.follower.head.map.serial == published.serial + 1
    assert "bad_head" not in shared.incidents()


def test_both_redis_and_the_database_altered(shared: Shared) -> None:
    """CLEAN's record altered in Redis and in the database: REVIEW, never ALLOW; an unknown id
    whose bucket neither can prove is not NOT_IN_REGISTRY either."""
    stranger = _same_bucket_as(CLEAN)
    flipped = _flip(shared.envelope(CLEAN))
    shared.writer.set_record(CLEAN, flipped)
    index = bucket_of(CLEAN)
    entries = shared.writer.entries(index)
    shared.writer.set_entries(index, entries[:-1] + bytes([entries[-1] ^ 1]))
    shared.registry.sql(
        "UPDATE status_record SET envelope = :e WHERE structure_id = :sid", e=flipped, sid=CLEAN
    )
    shared.start()
    assert shared.answer(CLEAN) == UNVERIFIED
    assert shared.answer(stranger) == UNVERIFIED
    wait_for(lambda: "redis_entries" in shared.incidents() or None, timeout=4)
    assert shared.incidents().keys() == {"redis_entries", "database_bucket"}


# --- following heads ----------------------------------------------------------------------------


def test_a_new_head_reaches_the_gate_within_a_second(shared: Shared) -> None:
    """With polls 30 s apart, the changes stream wakes the gate: TARGET's stop order is
    answered within a second of being published, the diff applied, listeners told."""
    shared.start(poll_interval=30.0)
    assert shared.answer(TARGET) == ALLOW
    assert shared.answer(CLEAN) == ALLOW
    assert bucket_of(CLEAN) != bucket_of(TARGET)
    told: list[tuple[int, Any]] = []
    shared.cache.listeners.append(lambda version, ids: told.append((version, ids)))
    version = shared.flag_target()
    published_at = time.monotonic()
    shared.writer.publish()
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=1.0)
    assert time.monotonic() - published_at < 1.0
    assert told and told[-1][0] == version
    assert told[-1][1] is not None and TARGET in told[-1][1]
    assert CLEAN in shared.cache  # its bucket unchanged by the diff: still held
    assert shared.cache.fetches["database"] == 0
    assert shared.incidents() == {}


def test_a_head_announced_while_the_stream_reader_reconnects(shared: Shared) -> None:
    """The gate's connections cut (``CLIENT KILL``) and a head announced before its stream
    reader is back: with polls 30 s apart, the reader resumes from the last entry it read (and
    polls once on its return), so the announcement is not lost to a reader restarting "from
    now"."""
    shared.start(poll_interval=30.0)
    assert shared.answer(TARGET) == ALLOW
    shared.flag_target()
    killed = shared.writer.client.client_kill_filter(_type="normal", skipme=True)
    assert int(killed) >= 1
    shared.writer.publish()
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)


def test_a_head_published_unannounced_while_the_reader_reconnects_is_polled_for(
    shared: Shared,
) -> None:
    """The gate's connections cut, and a head published with no word in the stream before its
    reader is back: with polls 30 s apart, the reader's return is itself a reason to poll."""
    shared.start(poll_interval=30.0)
    assert shared.answer(TARGET) == ALLOW
    shared.flag_target()
    assert shared.writer.client.client_kill_filter(_type="normal", skipme=True) >= 1
    shared.writer.publish(announce=False)
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)


def test_a_stream_begun_again_below_where_the_reader_was(shared: Shared) -> None:
    """The changes stream deleted while the gate's connections are cut (a flushed or
    failed-over Redis), its new entries numbered below the last one the reader had read: the
    reader starts again from the new stream's newest entry, so the next head's announcement
    still wakes the gate (polls 30 s apart)."""
    shared.start(poll_interval=30.0)
    assert shared.answer(TARGET) == ALLOW
    layout = shared.writer.layout
    assert shared.writer.client.client_kill_filter(_type="normal", skipme=True) >= 1
    shared.writer.client.delete(layout.changes)
    time.sleep(2.0)  # the reader back, at the new stream's start
    shared.flag_target()
    newer = shared.writer.publish(announce=False)
    shared.writer.client.xadd(
        layout.changes, {"head": newer.serial, "version": newer.size}, id="1-1"
    )
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)


def test_a_change_the_stream_hides(shared: Shared) -> None:
    """A head published without a word in the changes stream: found by the next poll, and
    TARGET's old record is not kept in the cache (its bucket changed)."""
    shared.start(poll_interval=0.2)
    assert shared.answer(TARGET) == ALLOW
    assert TARGET in shared.cache
    shared.flag_target()
    shared.writer.publish(announce=False)
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)
    assert shared.incidents() == {}


def test_redis_ahead_of_the_gate(shared: Shared) -> None:
    """A head published without a word in the stream, polls 30 s apart: a miss finds Redis's
    buckets ahead of the gate's top, wakes the follower and is proved by the new top; no
    incident (Redis did not lie)."""
    shared.start(poll_interval=30.0)
    assert shared.answer(CLEAN) == ALLOW
    shared.flag_target()
    shared.writer.publish(announce=False)
    assert shared.answer(TARGET) == DENIED
    assert shared.cache.fetches["database"] == 0
    assert shared.incidents() == {}


def test_a_forged_diff(shared: Shared) -> None:
    """``diff:<serial>`` altered to leave TARGET's bucket out: it does not give the new map root,
    so the whole top is read instead; TARGET's old record is not kept."""
    shared.start(poll_interval=30.0)
    assert shared.answer(TARGET) == ALLOW
    shared.flag_target()
    newer = shared.writer.publish(announce=False)
    layout = shared.writer.layout
    diff = shared.writer.client.get(layout.diff(newer.serial))
    assert isinstance(diff, bytes) and len(diff) > 8
    shared.writer.client.set(layout.diff(newer.serial), diff[:8])  # no bucket changed
    shared.writer.client.xadd(layout.changes, {"head": newer.serial, "version": newer.size})
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)
    assert shared.incidents() == {"redis_top": 1}


def _lone_entry_moved(top: MapTop, sid: str) -> tuple[int, int, dict[int, BucketItem]]:
    """``sid``'s bucket, an empty neighbour, and the items that move its lone entry there: the
    map hashes a one-entry subtree as its leaf at any depth, so the root stays the same."""
    index = bucket_of(sid)
    neighbour = index ^ 1
    count, entry = top.item(index)
    assert count == 1 and top.item(neighbour)[0] == 0, "a lone entry with an empty neighbour"
    return index, neighbour, {index: (0, bytes(32)), neighbour: (1, entry)}


def _top(shared: Shared, serial: int) -> MapTop:
    raw = shared.writer.client.get(shared.writer.layout.top(serial))
    assert isinstance(raw, bytes)
    return MapTop.from_bytes(raw)


def _raw_items(items: dict[int, BucketItem], *, indexed: bool) -> bytes:
    """Items as the layout encodes them, written here by hand: ``count(4)`` then the payload
    (after a 2-byte bucket index in a diff)."""
    return b"".join(
        (i.to_bytes(2, "big") if indexed else b"") + c.to_bytes(4, "big") + payload
        for i, (c, payload) in sorted(items.items())
    )


def test_a_lone_entry_moved_to_another_bucket_in_the_top(shared: Shared) -> None:
    """``top:<serial>`` with CLEAN's lone entry moved to the empty bucket beside its own (the
    same root, CLEAN's own bucket then empty): refused, since a lone entry's key must lie in
    the bucket that carries it; the top is proved from the database; CLEAN is never "not in
    registry"."""
    layout = shared.writer.layout
    serial = shared.writer.last.serial if shared.writer.last else 0
    top = _top(shared, serial)
    index, _, moved = _lone_entry_moved(top, CLEAN)
    items = {i: top.item(i) for i in range(BUCKETS)} | moved
    shared.writer.client.set(layout.top(serial), _raw_items(items, indexed=False))
    shared.writer.set_entries(index, b"")
    shared.start()
    assert shared.answer(CLEAN) == ALLOW
    assert "redis_top" in shared.incidents()


def test_a_lone_entry_moved_to_another_bucket_in_a_diff(shared: Shared) -> None:
    """A new head's diff that also moves CLEAN's lone entry to an empty neighbouring bucket
    (the root unchanged by the move) is refused; the whole top is read instead."""
    shared.start(poll_interval=30.0)
    assert shared.answer(TARGET) == ALLOW
    shared.flag_target()
    newer = shared.writer.publish(announce=False)
    layout = shared.writer.layout
    top = _top(shared, newer.serial)
    index, _, moved = _lone_entry_moved(top, CLEAN)
    diff = shared.writer.client.get(layout.diff(newer.serial))
    assert isinstance(diff, bytes)
    changes = parse_diff(diff[8:]) | moved
    shared.writer.client.set(
        layout.diff(newer.serial), diff[:8] + _raw_items(changes, indexed=True)
    )
    shared.writer.set_entries(index, b"")
    shared.writer.client.xadd(layout.changes, {"head": newer.serial, "version": newer.size})
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)
    assert "redis_top" in shared.incidents()
    assert shared.answer(CLEAN) == ALLOW  # its emptied bucket in Redis is a lie: the database


def test_log_leaves_altered_in_redis(shared: Shared) -> None:
    """The new head's leaves in Redis's ``log`` altered: they do not give its root, so the gate
    asks the database for a consistency proof instead, and follows the head from it."""
    shared.start(poll_interval=30.0)
    assert shared.answer(TARGET) == ALLOW
    shared.flag_target()
    newer = shared.writer.publish(announce=False)
    layout = shared.writer.layout
    leaves = shared.writer.client.get(layout.log)
    assert isinstance(leaves, bytes)
    shared.writer.client.set(layout.log, leaves[:-1] + bytes([leaves[-1] ^ 1]))
    shared.writer.client.xadd(layout.changes, {"head": newer.serial, "version": newer.size})
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)
    assert "redis_log" in shared.incidents()
    assert shared.follower.frontier is not None
    assert shared.follower.frontier.root() == newer_root(shared)


def test_a_frontier_altered_in_redis_is_not_held(shared: Shared) -> None:
    """A fresh gate finds the head's ``frontier`` in Redis altered: it does not give the signed
    log root, so the gate takes the database's, and follows the next head by it."""
    layout = shared.writer.layout
    assert shared.writer.last is not None
    size = shared.writer.last.size
    state = shared.writer.client.get(layout.frontier(size))
    assert isinstance(state, bytes)
    shared.writer.client.set(layout.frontier(size), bytes([state[0] ^ 1]) + state[1:])
    shared.start(poll_interval=30.0)
    assert shared.follower.frontier is not None
    assert shared.follower.frontier.root() == newer_root(shared)
    shared.flag_target()
    shared.writer.publish()
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)


def newer_root(shared: Shared) -> bytes:
    """The log root the gate's held head signs."""
    head = shared.follower.head
    assert head is not None
    return head.checkpoint.root_hash


def test_a_rolled_back_head_is_refused_after_a_restart(shared: Shared) -> None:
    """The gate follows TARGET's stop order; stopped; Redis and the database both rolled back to
    the head before it; restarted on its state: it holds the head it had, never ALLOWs TARGET."""
    older_note = shared.writer.client.get(shared.writer.layout.head)
    assert isinstance(older_note, bytes)
    shared.start()
    shared.flag_target()
    newer = shared.writer.publish()
    wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)
    shared.stop()
    shared.writer.client.set(shared.writer.layout.head, older_note)
    shared.registry.sql("DELETE FROM head WHERE serial = :s", s=newer.serial)
    shared.start()
    assert shared.follower.head is not None and shared.follower.head.map.serial == newer.serial
    assert shared.follower.frontier is not None  # persisted with it: the next log extends it
    assert shared.follower.frontier.root() == shared.follower.head.checkpoint.root_hash
    assert shared.answer(TARGET) == DENIED  # from Redis's top:<serial> of the held head
    assert shared.incidents().keys() >= {"redis_head", "rollback"}


def test_a_publisher_that_stopped(shared: Shared) -> None:
    """Redis keeps a head whose cosignature ages (its publisher stopped) while the registry
    cosigns on: once past half the staleness bound, the database's cosignature is taken, and
    the gate stays fresh."""
    shared.start(max_staleness=4.0)
    cache = shared.cache
    assert cache.head is not None and cache.head.cosigned_at is not None
    in_redis = cache.head.cosigned_at
    with Heartbeat(shared.registry, interval=0.5):

        def moved_on() -> bool | None:
            head = shared.cache.head
            assert head is not None and head.cosigned_at is not None
            return head.cosigned_at > in_redis or None

        wait_for(moved_on, timeout=4.0)
        assert shared.answer(CLEAN) == ALLOW
    assert shared.incidents() == {}


# --- Redis failing --------------------------------------------------------------------------------


def test_redis_cut_slow_or_flushed(shared: Shared) -> None:
    """Redis cut: answers from the cache and the database, a new head followed through the
    database; slowed: still answered; flushed and published again: proved from Redis again."""
    with TcpProxy("127.0.0.1", shared.redis.port) as proxy:
        shared.start(redis_url=proxy.url())
        assert shared.answer(CLEAN) == ALLOW
        proxy.cut()
        assert shared.answer(CLEAN) == ALLOW  # held
        assert shared.answer(FLAGGED) == DENIED  # from the database
        assert "redis_unavailable" in shared.incidents()
        shared.flag_target()
        wait_for(lambda: shared.answer(TARGET) == DENIED or None, timeout=5)
        proxy.heal()
        proxy.slow(0.3)
        started = time.monotonic()
        assert shared.answer(structure_id(1))[0] == "DENY"  # revoked
        assert time.monotonic() - started < 3.0
        proxy.heal()
        shared.redis.client().flushall()
        assert shared.answer(structure_id(2))[0] == "DENY"  # suspended
        before = shared.cache.fetches["redis"]
        shared.writer.last = None
        shared.writer.publish()
        fresh = iter(range(3, 2 * len(SCENARIOS)))

        def proved_from_redis() -> bool | None:
            shared.ask(structure_id(next(fresh)))
            return shared.cache.fetches["redis"] > before or None

        wait_for(proved_from_redis, timeout=3, interval=0.2)
    assert "redis_entries" not in shared.incidents()
    assert "redis_record" not in shared.incidents()


# --- the command ----------------------------------------------------------------------------------


def test_serve_with_redis_from_the_environment(shared: Shared) -> None:
    """``permitgate serve`` with PERMITGATE_REDIS: says it is shared and how many it caches,
    answers, and stops cleanly on SIGTERM."""
    args = ["serve", "--db", shared.registry.url, "--keys", str(shared.registry.keys_dir)]
    args += ["--state", str(shared.tmp / "cli-state"), "--listen", "127.0.0.1:0"]
    with spawn([*args, "--cache-size", "1000"], {"PERMITGATE_REDIS": shared.redis.url}) as served:
        line = served.wait_for("listening on", timeout=20).string
        assert "(shared, at most 1000 cached)" in line, line
        match = re.search(r"listening on (127\.0\.0\.1:\d+)", line)
        assert match, line
        with Client(match.group(1)) as client:
            answered = wait_for(
                lambda: client.check_connection(FLAGGED, utility="water").verdict == "DENY" or None,
                timeout=10,
            )
            assert answered
            assert client.check_connection(CLEAN, utility="water").verdict == "ALLOW"
        served.process.send_signal(signal.SIGTERM)
        assert served.process.wait(timeout=20) == 0


def test_serve_refuses_a_redis_url_that_is_not_one(shared: Shared) -> None:
    args = ["serve", "--db", shared.registry.url, "--keys", str(shared.registry.keys_dir)]
    done = subprocess.run(
        [PERMITGATE, *args, "--redis", "localhost:6379"], capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 2
    assert "--redis localhost:6379: give a redis://HOST:PORT/DB" in done.stderr


# --- with the registry service publishing ---------------------------------------------------------


def test_gates_over_the_registry_service_publishing(pg_url: str, tmp_path: Path) -> None:
    """The registry service publishes (``registry serve --redis``), two shared gates follow it:
    the same answers as the embedded gate, an import followed within seconds, every record
    proved from Redis, no incident."""
    from test_registry_service import running_service

    registry = GateRegistry(pg_url, tmp_path / "keys")
    try:
        registry.load(demo_lines(2 * len(SCENARIOS)))
        with private_redis() as redis, running_service(registry, tmp_path, redis_url=redis.url):
            client = redis.client()
            wait_for(lambda: client.get("permitgate:published"), timeout=20)
            embedded = start_gate(registry.url, registry.keys_dir, state_dir=tmp_path / "e")
            gates = [
                start_gate(
                    registry.url, registry.keys_dir, state_dir=tmp_path / f"s{n}",
                    redis_url=redis.url,
                )
                for n in (1, 2)
            ]  # fmt: skip
            try:
                ids = [structure_id(i) for i in range(2 * len(SCENARIOS))] + [UNKNOWN]
                expected = _answers(embedded, ids)
                for gate in gates:
                    assert _answers(gate, ids) == expected
                registry.load([case(f"C-{TARGET}-stop", TARGET, "stop_order")])
                for gate in gates:
                    wait_for(partial(_denies, gate, TARGET), timeout=10)
                    cache = gate.app.cache
                    assert isinstance(cache, SharedCache)
                    assert cache.fetches["database"] == 0
                    assert {k: n for k, n in gate.app.incidents.counts.items() if n} == {}
            finally:
                for gate in [embedded, *gates]:
                    gate.stop()
    finally:
        registry.close()


def _answers(gate: RunningGate, ids: list[str]) -> list[tuple[str, list[Any]]]:
    with Wire(gate.target) as wire:
        return [(verdict(d), reasons(d)) for d in map(wire.ask, map(connection, ids))]


def _denies(gate: RunningGate, sid: str) -> bool | None:
    return _answers(gate, [sid])[0][0] == "DENY" or None


# --- WatchStatus over the shared cache ---------------------------------------------------------


def test_a_watch_of_named_structures_hears_a_change_published(shared: Shared) -> None:
    """Named structures are watched as on the embedded gate: their current answers first, then
    TARGET's stop order as it is published; a district or every structure is refused, naming
    the gate that can serve it."""
    gate = shared.start(poll_interval=30.0)
    request = pb.WatchRequest(structure_ids=[TARGET, CLEAN])
    request.question.connection.utility = pb.UTILITY_WATER
    request.question.connection.kind = pb.CONNECTION_KIND_PERMANENT
    with grpc.insecure_channel(gate.target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
        call = stub.WatchStatus(request, timeout=20)
        first = {}
        for message in call:
            if message.cause == pb.CHANGE_CAUSE_PROGRESS:
                break
            first[message.structure_id] = verdict(message.decision)
        assert first == {TARGET: "ALLOW", CLEAN: "ALLOW"}
        shared.flag_target()
        shared.writer.publish()
        for message in call:
            if message.cause != pb.CHANGE_CAUSE_PROGRESS:
                break
        assert message.structure_id == TARGET
        assert message.cause == pb.CHANGE_CAUSE_RECORD_CHANGED
        assert (verdict(message.decision), codes(message.decision)) == DENIED
        call.cancel()
        wide = pb.WatchRequest(district="110101", question=request.question)
        with pytest.raises(grpc.RpcError) as refused:
            next(iter(stub.WatchStatus(wide, timeout=10)))
        assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "without --redis" in (refused.value.details() or "")


def test_a_watched_structure_out_of_the_cache_hears_a_change_the_stream_hides(
    shared: Shared,
) -> None:
    """TARGET is watched but no longer in L1 (a cache of two, then other structures asked);
    its stop order is published with a change stream that names only the head: the changed
    bucket, known from the verified diff, is enough for the watch to decide TARGET again."""
    gate = shared.start(poll_interval=30.0, cache_size=2)
    request = pb.WatchRequest(structure_ids=[TARGET])
    request.question.connection.utility = pb.UTILITY_WATER
    request.question.connection.kind = pb.CONNECTION_KIND_PERMANENT
    with grpc.insecure_channel(gate.target) as channel:
        stub = gate_pb2_grpc.PermitGateStub(channel)  # type: ignore[no-untyped-call]
        call = stub.WatchStatus(request, timeout=20)
        first = next(iter(call))
        assert (first.structure_id, verdict(first.decision)) == (TARGET, "ALLOW")
        for sid in (CLEAN, FLAGGED, structure_id(1), structure_id(2)):
            shared.ask(sid)
        assert TARGET not in shared.cache
        shared.flag_target()
        newer = shared.writer.publish(announce=False)
        layout = shared.writer.layout
        shared.writer.client.xadd(layout.changes, {"head": newer.serial, "version": newer.size})
        for message in call:
            if message.cause != pb.CHANGE_CAUSE_PROGRESS:
                break
        assert message.structure_id == TARGET
        assert (verdict(message.decision), codes(message.decision)) == DENIED
        call.cancel()
