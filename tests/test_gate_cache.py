"""What the gate holds and how it comes to hold it: ``server.cache`` and ``server.verifier``.

* The cache: a record is parsed on first use (and an unreadable one answers RECORD_UNVERIFIED,
  counted once); freshness is the age of the held head's cosignature (a head without one is
  never fresh, a superseded one stale at once, one dated ahead of the clock counted from when it
  was seen).
* The verifier, over a real SQLite registry read through ``SqlFeed``: the first poll adopts the
  registry's head and persists it with exactly the map it signs (checked by a map root computed
  by hand); later imports and refreshes are read incrementally; a record the feed leaves out is
  found by a full read; the feed's consistency proofs verify, from a stored frontier or rebuilt
  from the events; a state whose head the key does not verify is refused.

Real signatures and a real database throughout. The attacks on a running gate are in
``test_gate_trust.py``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import GateRegistry, map_root_by_hand, signed_head, urban_ok
from permitgate_client import ForkError
from permitgate_client._proofs import verify_consistency, verify_registry_head

from registry.admin import default_state_dir
from registry.feed import FeedError, SqlFeed
from registry.heads import sign_head
from registry.merkle import CompactTree
from registry.records import Permit, StatusRecord, Structure
from registry.signing import Signer
from registry.status import StatusSigner
from registry.statusmap import StatusMap
from registry.storage import HeadRow
from registry.trust import verify_status_record
from registry.trusted_state import TrustedState
from registry.vocabulary import Area, PermitKind, PermitStatus
from registry.writer import refresh_records
from server.cache import CachedStatus, RegistryCache
from server.incidents import Incidents
from server.verifier import GateStateError, RegistryVerifier, Update

ORIGIN = "permitgate.example/registry"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def signer() -> Signer:
    return Signer(ORIGIN, Ed25519PrivateKey.generate())


def _record(sid: str, tree_size: int) -> StatusRecord:
    permit = Permit(
        f"P-{sid}", sid, PermitKind.CONSTRUCTION_PLANNING, PermitStatus.VALID, NOW - timedelta(1)
    )
    return StatusRecord(
        Structure(sid, Area.URBAN, "110228"), (permit,), (), tree_size, NOW, NOW + timedelta(7)
    )


def _status(envelope: bytes) -> CachedStatus:
    return CachedStatus(envelope, hashlib.sha256(envelope).digest())


def _install(
    cache: RegistryCache,
    signer: Signer,
    records: dict[str, bytes],
    *,
    cosigned_at: datetime | None = None,
) -> None:
    """Hold a head (log size 5) over ``records`` (id to envelope) and the records themselves."""
    statuses = {sid: _status(envelope) for sid, envelope in records.items()}
    entries = {sid: status.digest for sid, status in statuses.items()}
    head = signed_head(signer, entries, size=5, cosigned_at=cosigned_at)
    cache.install(head, statuses, replace=True, doubtful=frozenset(), superseded=None)


# --- the cache -----------------------------------------------------------------------------------


def test_a_record_is_parsed_on_first_use(signer: Signer) -> None:
    cache = RegistryCache(max_staleness=300)
    envelope = StatusSigner(signer, now=NOW).envelope(_record("S-1", 3))
    _install(cache, signer, {"S-1": envelope})
    held = cache._records["S-1"]
    assert held.record is None and held.envelope == envelope  # not parsed yet
    status = cache.get("S-1")
    assert status is held and status.digest == hashlib.sha256(envelope).digest()
    assert status.record == verify_status_record(envelope, signer.verifier)  # signature checked
    assert status.envelope == b""  # the bytes are let go once parsed
    assert cache.get("S-1") is held and not cache.is_doubtful("S-1")


@pytest.mark.parametrize(
    "envelope",
    [b"not json", b'{"payloadType": "text/plain", "payload": "", "signatures": []}', "S-2"],
    ids=["not-an-envelope", "another-payload-type", "another-structures-record"],
)
def test_an_unreadable_record_answers_unverified(signer: Signer, envelope: bytes | str) -> None:
    """A record whose hash the map signs, but which is not S-1's record: doubtful, counted and
    logged once, however often it is asked for."""
    cache = RegistryCache(max_staleness=300)
    if isinstance(envelope, str):
        envelope = StatusSigner(signer, now=NOW).envelope(_record(envelope, 3))
    _install(cache, signer, {"S-1": envelope})
    assert cache.get("S-1") is None and cache.is_doubtful("S-1")
    assert cache.get("S-1") is None
    assert cache.incidents.counts["record_unverified"] == 1


def test_a_record_from_beyond_the_head_is_unreadable(signer: Signer) -> None:
    cache = RegistryCache(max_staleness=300)
    _install(cache, signer, {"S-1": StatusSigner(signer, now=NOW).envelope(_record("S-1", 6))})
    assert cache.get("S-1") is None and cache.is_doubtful("S-1")  # the head's log has 5 events


def test_freshness_is_the_age_of_the_cosignature(signer: Signer) -> None:
    cache = RegistryCache(max_staleness=300)
    assert cache.is_stale() and cache.stale_because() == "no verified registry data yet"
    cosigned = NOW - timedelta(seconds=100)
    _install(cache, signer, {}, cosigned_at=cosigned)
    assert not cache.is_stale(cosigned + timedelta(seconds=300))
    assert cache.is_stale(cosigned + timedelta(seconds=301))
    assert "last cosigned at" in (cache.stale_because(cosigned + timedelta(seconds=301)) or "")


def test_a_head_without_a_cosignature_is_never_fresh(signer: Signer) -> None:
    cache = RegistryCache(max_staleness=300)
    head = signed_head(signer, {}, size=1)
    without = head.note[: head.note.rindex("\u2014".encode())]  # the last line: the cosignature
    bare = verify_registry_head(without, signer.verifier)
    assert bare.cosigned_at is None
    cache.install(bare, {}, replace=True, doubtful=frozenset(), superseded=None)
    assert cache.is_stale(NOW)
    assert cache.stale_because(NOW) == "the registry head held carries no valid cosignature"


def test_a_superseded_head_is_stale_at_once(signer: Signer) -> None:
    cache = RegistryCache(max_staleness=300)
    _install(cache, signer, {})
    assert not cache.is_stale()
    cache.install(cache.head, {}, replace=False, doubtful=frozenset(), superseded="a newer one")
    assert cache.is_stale() and cache.stale_because() == "a newer one"
    cache.install(cache.head, {}, replace=False, doubtful=frozenset(), superseded=None)
    assert not cache.is_stale()


def test_a_cosignature_dated_ahead_counts_from_when_it_was_seen(signer: Signer) -> None:
    cache = RegistryCache(max_staleness=300)
    ahead = signed_head(signer, {}, size=1, cosigned_at=NOW + timedelta(hours=1))
    cache.install(ahead, {}, replace=True, doubtful=frozenset(), superseded=None, now=NOW)
    # installed again later (every poll does), it still counts from when it was first seen
    later = NOW + timedelta(seconds=200)
    cache.install(ahead, {}, replace=False, doubtful=frozenset(), superseded=None, now=later)
    assert not cache.is_stale(NOW + timedelta(seconds=300))
    assert cache.is_stale(NOW + timedelta(seconds=301))


# --- the verifier over a real registry ------------------------------------------------------------


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[GateRegistry]:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    try:
        yield registry
    finally:
        registry.close()


def _verifier(registry: GateRegistry, state_dir: Path) -> RegistryVerifier:
    return RegistryVerifier(registry.signer.verifier, TrustedState(state_dir, "gate"), Incidents())


def _poll(verifier: RegistryVerifier, registry: GateRegistry) -> Update:
    with SqlFeed(registry.db).snapshot() as view:
        return verifier.poll(view)


def _stored_digests(registry: GateRegistry) -> dict[str, bytes]:
    rows = registry.sql("SELECT structure_id, envelope FROM status_record")
    return {sid: hashlib.sha256(bytes(envelope)).digest() for sid, envelope in rows}


def _persisted(verifier: RegistryVerifier) -> dict[str, bytes]:
    return {sid: digest for sid, digest, _ in verifier.state.entries()}


def test_the_first_poll_adopts_and_persists_the_signed_map(
    registry: GateRegistry, tmp_path: Path
) -> None:
    registry.load([*urban_ok("S-1"), *urban_ok("S-2")])
    verifier = _verifier(registry, tmp_path / "state")
    update = _poll(verifier, registry)
    assert update.replace and update.adopted and update.head is not None
    assert update.head.note == registry.checkpoint_note()
    assert set(update.records) == {"S-1", "S-2"} and not update.doubtful
    assert verifier.state.head() == registry.checkpoint_note()
    persisted = _persisted(verifier)
    assert persisted == _stored_digests(registry)
    assert map_root_by_hand(persisted) == update.head.map.root


def test_later_imports_and_refreshes_are_read_incrementally(
    registry: GateRegistry, tmp_path: Path
) -> None:
    registry.load([*urban_ok("S-1"), *urban_ok("S-2")])
    verifier = _verifier(registry, tmp_path / "state")
    _poll(verifier, registry)
    registry.load([{**urban_ok("S-1")[3], "status": "revoked"}])
    update = _poll(verifier, registry)
    assert update.adopted and not update.replace and set(update.records) == {"S-1"}
    assert update.head is not None and update.head.size == registry.version()
    assert _persisted(verifier) == _stored_digests(registry)
    # a refresh re-signs every record at the same log size: found by its later next_update
    refresh_records(
        registry.db,
        registry.signer,
        state_dir=default_state_dir(registry.keys_dir),
        now=NOW + timedelta(hours=1),
        everything=True,
    )
    update = _poll(verifier, registry)
    assert update.adopted and not update.replace and set(update.records) == {"S-1", "S-2"}
    assert update.head is not None and update.head.map.serial == 4
    assert _persisted(verifier) == _stored_digests(registry)
    # nothing new: nothing read, nothing adopted
    update = _poll(verifier, registry)
    assert not update.adopted and not update.records
    assert sum(verifier.incidents.counts.values()) == 0


def test_a_record_the_feed_leaves_out_is_found_by_a_full_read(
    registry: GateRegistry, tmp_path: Path
) -> None:
    """The tree_size column is a hint only: set back, the incremental read misses S-1's new
    record, the map root does not match, and every record is read again."""
    registry.load([*urban_ok("S-1"), *urban_ok("S-2")])
    verifier = _verifier(registry, tmp_path / "state")
    _poll(verifier, registry)
    registry.load([{**urban_ok("S-1")[3], "status": "revoked"}])
    registry.sql("UPDATE status_record SET tree_size = 1, next_update = '2000-01-01 00:00:00'")
    update = _poll(verifier, registry)
    assert update.adopted and update.replace
    assert update.head is not None and update.head.size == registry.version()
    status = update.records["S-1"]
    assert status.digest == _stored_digests(registry)["S-1"]
    assert sum(verifier.incidents.counts.values()) == 0


def test_a_restarted_verifier_holds_its_head_and_reads_its_records_by_hash(
    registry: GateRegistry, tmp_path: Path
) -> None:
    registry.load([*urban_ok("S-1"), *urban_ok("S-2")])
    first = _verifier(registry, tmp_path / "state")
    _poll(first, registry)
    first.state.close()
    again = _verifier(registry, tmp_path / "state")
    assert again.head is not None and again.head.note == registry.checkpoint_note()
    assert not again.loaded
    update = _poll(again, registry)
    assert update.replace and not update.adopted and set(update.records) == {"S-1", "S-2"}


def test_a_restarted_verifier_builds_its_map_from_the_records_it_holds(
    registry: GateRegistry, tmp_path: Path
) -> None:
    """Memory, not trust: the map rebuilt after a restart shares each record's digest object
    rather than holding a copy read from the state (a million of them are 65 MB); it is still
    built at the next poll and checked against the head's root."""
    registry.load([*urban_ok("S-1"), *urban_ok("S-2")])
    first = _verifier(registry, tmp_path / "state")
    _poll(first, registry)
    first.state.close()
    again = _verifier(registry, tmp_path / "state")
    _poll(again, registry)
    serving = again.map
    _poll(again, registry)
    built = again.map
    assert serving is None  # built at the next poll, once the gate serves
    assert built is not None and again.head is not None
    assert built.root() == again.head.map.root
    for sid, status in again.records.items():
        assert built.get(sid) is status.digest


def test_a_state_whose_head_the_key_does_not_verify_is_refused(
    registry: GateRegistry, tmp_path: Path
) -> None:
    registry.load(urban_ok("S-1"))
    other = Signer(ORIGIN, Ed25519PrivateKey.generate())
    state = TrustedState(tmp_path / "state", "gate")
    state.save(signed_head(other, {}, size=1).note)
    with pytest.raises(GateStateError, match="does not verify") as refused:
        RegistryVerifier(registry.signer.verifier, state, Incidents())
    assert "move" in str(refused.value) and str(state.path) in str(refused.value)


def _replace_newest_head(registry: GateRegistry, head: HeadRow) -> None:
    with registry.db.session() as session:
        session.execute(sa.delete(HeadRow).where(HeadRow.serial == head.serial))
        session.add(head)


def _newest(registry: GateRegistry) -> HeadRow:
    with registry.db.session() as session:
        row = session.scalars(sa.select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).one()
        session.expunge(row)
        return row


def test_two_heads_with_one_serial_are_a_fork(registry: GateRegistry, tmp_path: Path) -> None:
    """The registry key signs another head with the serial of the one held: the gate keeps its
    own, keeps both notes as evidence, and is stale at once."""
    registry.load(urban_ok("S-1"))
    verifier = _verifier(registry, tmp_path / "state")
    _poll(verifier, registry)
    held = verifier.head
    assert held is not None
    newest = _newest(registry)
    other = sign_head(
        registry.signer,
        origin=registry.signer.name,
        tree=CompactTree.from_state(newest.size, newest.tree_state),
        status_map=StatusMap([("S-elsewhere", hashlib.sha256(b"x").digest())]),
        serial=newest.serial,
        now=datetime.now(UTC),
    )
    _replace_newest_head(registry, other)
    update = _poll(verifier, registry)
    assert not update.adopted and verifier.head == held
    assert update.superseded is not None and "conflicts with the head held" in update.superseded
    assert verifier.incidents.counts["fork"] == 1
    [evidence] = (tmp_path / "state").glob("evidence-fork-*.txt")
    assert held.note in evidence.read_bytes() and other.note in evidence.read_bytes()
    _poll(verifier, registry)  # seen again: not counted again
    assert verifier.incidents.counts["fork"] == 1


def test_a_newer_head_whose_log_does_not_extend_the_held_one(
    registry: GateRegistry, tmp_path: Path
) -> None:
    """A later head over a log that is not the held one grown (its events are not in the
    database): the consistency proof fails; the head is not adopted, and the held one is
    stale at once."""
    registry.load(urban_ok("S-1"))
    verifier = _verifier(registry, tmp_path / "state")
    _poll(verifier, registry)
    newest = _newest(registry)
    tree = CompactTree.from_state(newest.size, newest.tree_state)
    tree.append(hashlib.sha256(b"an event the database does not hold").digest())
    registry.sql(
        "INSERT INTO event (seq, structure_id, body) VALUES (:n, 'S-1', :b)",
        n=newest.size,
        b=b'{"not":"the event signed"}',
    )
    with registry.db.session() as session:
        session.add(
            sign_head(
                registry.signer,
                origin=registry.signer.name,
                tree=tree,
                status_map=StatusMap(_stored_digests(registry).items()),
                serial=newest.serial + 1,
                now=datetime.now(UTC),
            )
        )
    update = _poll(verifier, registry)
    assert not update.adopted and update.superseded is not None
    assert "cannot be shown to extend" in update.superseded
    assert verifier.incidents.counts["inconsistent"] == 1
    assert list((tmp_path / "state").glob("evidence-inconsistent-*.txt"))


# --- consistency proofs from the feed -------------------------------------------------------------


def _head_sizes(registry: GateRegistry) -> list[tuple[int, bytes]]:
    rows = registry.sql("SELECT size, root_hash FROM head ORDER BY serial")
    return [(int(size), bytes(root)) for size, root in rows]


def _proof(registry: GateRegistry, old: int, new: int) -> list[bytes]:
    with SqlFeed(registry.db).snapshot() as view:
        return view.consistency_proof(old, new)


def test_the_feeds_consistency_proofs_verify(registry: GateRegistry) -> None:
    for n in range(1, 6):
        registry.load(urban_ok(f"S-{n}"))
    heads = _head_sizes(registry)
    for old_size, old_root in heads:
        for new_size, new_root in heads:
            if new_size < old_size:
                continue
            proof = _proof(registry, old_size, new_size)
            verify_consistency(old_size, old_root, new_size, new_root, proof)
    (_, _), (small, small_root), *_, (big, big_root) = heads
    proof = _proof(registry, small, big)
    with pytest.raises(ForkError):
        verify_consistency(small, hashlib.sha256(b"other").digest(), big, big_root, proof)
    # rebuilt from the events when the frontier stored with the head is damaged or gone
    registry.sql("UPDATE head SET tree_state = :s WHERE size = :n", s=b"\x00" * 32, n=small)
    assert _proof(registry, small, big) == proof
    registry.sql("DELETE FROM head WHERE size = :n", n=small)
    assert _proof(registry, small, big) == proof
    verify_consistency(small, small_root, big, big_root, proof)


def test_the_feed_names_a_missing_event(registry: GateRegistry) -> None:
    registry.load(urban_ok("S-1"))
    registry.load(urban_ok("S-2"))
    (_, _), (small, _), (big, _) = _head_sizes(registry)
    registry.sql("DELETE FROM event WHERE seq = :n", n=small + 1)
    with pytest.raises(FeedError, match=f"lacks event {small + 1}"):
        _proof(registry, small, big)
    with pytest.raises(FeedError):
        _proof(registry, big, small)
