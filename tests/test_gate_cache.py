"""What the gate's cache (``server.cache.RegistryCache``) trusts: only records and checkpoints the
registry key signed, that fit together, and that never roll the cache back.

Unit level, with real signatures; the last test shows the same rule end to end (a forged status
record in the database is not served by a running gate).
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    GateRegistry,
    Wire,
    codes,
    connection,
    running_gate,
    urban_ok,
    verdict,
)
from permitgate_client import (
    BadSignatureError,
    ForkError,
    FromTheFutureError,
    RollbackError,
    WrongOriginError,
    WrongStructureError,
)
from permitgate_client.formats import Checkpoint

from registry.records import Permit, StatusRecord, Structure
from registry.signing import Signer
from registry.status import StatusSigner
from registry.vocabulary import Area, PermitKind, PermitStatus
from server.cache import CachedStatus, RegistryCache

ORIGIN = "permitgate.example/registry"
NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def signer() -> Signer:
    return Signer(ORIGIN, Ed25519PrivateKey.generate())


@pytest.fixture
def cache(signer: Signer) -> RegistryCache:
    return RegistryCache(signer.verifier, origin=ORIGIN, max_staleness=300)


def _note(signer: Signer, size: int, origin: str = ORIGIN, salt: bytes = b"") -> bytes:
    root = hashlib.sha256(b"root %d" % size + salt).digest()
    return signer.sign_note(Checkpoint(origin, size, root).body())


def _record(sid: str, tree_size: int, status: PermitStatus = PermitStatus.VALID) -> StatusRecord:
    permit = Permit(
        f"P-{sid}-{tree_size}",
        sid,
        PermitKind.CONSTRUCTION_PLANNING,
        status,
        NOW - timedelta(days=100),
    )
    return StatusRecord(
        Structure(sid, Area.URBAN, "110228"),
        (permit,),
        (),
        tree_size,
        NOW,
        NOW + timedelta(days=7),
    )


def _envelope(signer: Signer, record: StatusRecord) -> bytes:
    return StatusSigner(signer, now=NOW).envelope(record)


def _load(
    cache: RegistryCache, signer: Signer, size: int, rows: list[tuple[str, bytes]]
) -> tuple[int, list[tuple[str, type]]]:
    """Verify and install checkpoint ``size`` with ``rows``: (records taken, [(id rejected,
    type of its error)])."""
    note = _note(signer, size)
    checkpoint = cache.verify_checkpoint(note)
    accepted, rejected = cache.verify_records(rows, checkpoint)
    taken = cache.install(checkpoint, note, accepted)
    return taken, [(r.structure_id, type(r.error)) for r in rejected]


def test_genuine_record_is_taken(cache: RegistryCache, signer: Signer) -> None:
    envelope = _envelope(signer, _record("S-1", 3))
    assert _load(cache, signer, 5, [("S-1", envelope)]) == (1, [])
    held = cache.get("S-1")
    assert isinstance(held, CachedStatus)
    assert held.record == _record("S-1", 3)
    assert held.digest == hashlib.sha256(envelope).digest()
    assert cache.size == 5 and len(cache) == 1


def test_record_signed_by_another_key_is_rejected(cache: RegistryCache, signer: Signer) -> None:
    impostor = Signer(ORIGIN, Ed25519PrivateKey.generate())  # same name, other key
    forged = _envelope(impostor, _record("S-1", 3))
    checkpoint = cache.verify_checkpoint(_note(signer, 5))
    accepted, rejected = cache.verify_records([("S-1", forged)], checkpoint)
    assert accepted == []
    assert [(r.structure_id, type(r.error)) for r in rejected] == [("S-1", BadSignatureError)]
    assert rejected[0].why == str(rejected[0].error)  # what the follower logs
    assert rejected[0].error.__traceback__ is None  # holds no verifier frames (nor envelopes)


def test_record_filed_under_another_structure_is_rejected(
    cache: RegistryCache, signer: Signer
) -> None:
    envelope = _envelope(signer, _record("S-1", 3))
    assert _load(cache, signer, 5, [("S-2", envelope)]) == (0, [("S-2", WrongStructureError)])
    assert cache.get("S-1") is None and cache.get("S-2") is None


def test_record_beyond_the_checkpoint_is_rejected(cache: RegistryCache, signer: Signer) -> None:
    envelope = _envelope(signer, _record("S-1", 6))
    assert _load(cache, signer, 5, [("S-1", envelope)]) == (0, [("S-1", FromTheFutureError)])
    assert cache.get("S-1") is None


def test_older_checkpoint_is_refused(cache: RegistryCache, signer: Signer) -> None:
    _load(cache, signer, 10, [])
    older = _note(signer, 9)
    with pytest.raises(RollbackError):
        cache.verify_checkpoint(older)
    # Even a verified older checkpoint handed straight to install does not roll back.
    stale = RegistryCache(signer.verifier, origin=ORIGIN, max_staleness=300).verify_checkpoint(
        older
    )
    assert cache.install(stale, older, [CachedStatus(_record("S-9", 9), b"")]) == 0
    assert cache.size == 10 and cache.get("S-9") is None


def test_two_roots_for_one_size_are_refused(cache: RegistryCache, signer: Signer) -> None:
    _load(cache, signer, 10, [])
    with pytest.raises(ForkError):
        cache.verify_checkpoint(_note(signer, 10, salt=b"fork"))


def test_checkpoint_of_another_origin_or_key_is_refused(
    cache: RegistryCache, signer: Signer
) -> None:
    with pytest.raises(WrongOriginError):
        cache.verify_checkpoint(_note(signer, 3, origin="elsewhere.example/registry"))
    impostor = Signer(ORIGIN, Ed25519PrivateKey.generate())
    with pytest.raises(BadSignatureError):
        cache.verify_checkpoint(_note(impostor, 3))
    assert cache.checkpoint is None


def test_newer_record_is_never_replaced_by_an_older_one(
    cache: RegistryCache, signer: Signer
) -> None:
    newer = _envelope(signer, _record("S-1", 8, PermitStatus.REVOKED))
    older = _envelope(signer, _record("S-1", 6))
    assert _load(cache, signer, 10, [("S-1", newer)]) == (1, [])
    assert _load(cache, signer, 12, [("S-1", older)]) == (0, [("S-1", RollbackError)])
    held = cache.get("S-1")
    assert held is not None and held.record.tree_size == 8
    assert held.record.permits[0].status is PermitStatus.REVOKED
    assert cache.size == 12  # the checkpoint still advances
    # Even an older record handed straight to install is not taken.
    checkpoint = cache.verify_checkpoint(_note(signer, 12))
    assert cache.install(checkpoint, _note(signer, 12), [CachedStatus(_record("S-1", 6), b"")]) == 0
    assert cache.get("S-1") == held


def test_record_re_signed_later_at_the_same_tree_size_is_taken(
    cache: RegistryCache, signer: Signer
) -> None:
    """``registry refresh`` re-signs unchanged records: same tree size, later ``this_update``."""
    first = _record("S-1", 8)
    assert _load(cache, signer, 10, [("S-1", _envelope(signer, first))]) == (1, [])
    later = NOW + timedelta(days=3)
    refreshed = StatusSigner(signer, now=later).envelope(
        StatusRecord(first.structure, first.permits, (), 8, later, later + timedelta(days=7))
    )
    assert _load(cache, signer, 10, [("S-1", refreshed)]) == (1, [])
    held = cache.get("S-1")
    assert held is not None and held.record.this_update == later
    # And the first one, offered again after it, is a rollback.
    assert _load(cache, signer, 10, [("S-1", _envelope(signer, first))]) == (
        0,
        [("S-1", RollbackError)],
    )


def test_staleness_is_measured_from_the_last_confirmed_poll(
    cache: RegistryCache, signer: Signer
) -> None:
    assert cache.is_stale()  # nothing loaded
    cache.confirm_fresh(at=1000.0)
    assert cache.is_stale(now=1001.0)  # confirmed, but no checkpoint held
    _load(cache, signer, 1, [])
    assert not cache.is_stale(now=1000.0 + 300)
    assert cache.is_stale(now=1000.0 + 300.5)


def test_running_gate_does_not_serve_a_forged_status_record(tmp_path: Path) -> None:
    """A status record in the database signed by another key: rejected when loaded. The log
    says the structure exists, so the gate answers REVIEW (RECORD_UNVERIFIED): neither the ALLOW
    the forgery claims nor a false NOT_IN_REGISTRY."""
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    try:
        registry.load([*urban_ok("S-1"), *urban_ok("S-2")])
        registry.load([{**urban_ok("S-1")[3], "status": "revoked"}])  # an id once per file
        [(tree_size,)] = registry.sql(
            "SELECT tree_size FROM status_record WHERE structure_id = 'S-1'"
        )
        impostor = Signer(ORIGIN, Ed25519PrivateKey.generate())
        genuine_state = _record("S-1", int(tree_size))
        forged = _envelope(impostor, genuine_state)
        registry.sql("UPDATE status_record SET envelope = :e WHERE structure_id = 'S-1'", e=forged)
        with running_gate(registry.url, registry.keys_dir) as gate, Wire(gate.target) as wire:
            decision = wire.ask(connection("S-1"))
            assert verdict(decision) == "REVIEW" and codes(decision) == {"RECORD_UNVERIFIED"}
            assert verdict(wire.ask(connection("S-2"))) == "ALLOW"
            assert gate.app.follower.rejected == 1
    finally:
        registry.close()


def test_record_swapped_back_for_an_older_genuine_one_answers_review(tmp_path: Path) -> None:
    """S-1's permit is revoked in a later import, but the database is made to show S-1's older
    (genuine, ALLOW) record again: the log says S-1 changed after that record, so the gate
    answers REVIEW for S-1 instead of serving the old record as current."""
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    try:
        registry.load([*urban_ok("S-1"), *urban_ok("S-2")])
        [old] = registry.sql(
            "SELECT tree_size, next_update, digest, envelope FROM status_record "
            "WHERE structure_id = 'S-1'"
        )
        registry.load([{**urban_ok("S-1")[3], "status": "revoked"}])
        registry.sql(
            "UPDATE status_record SET tree_size = :t, next_update = :n, digest = :d, "
            "envelope = :e WHERE structure_id = 'S-1'",
            t=old[0],
            n=old[1],
            d=old[2],
            e=old[3],
        )
        with running_gate(registry.url, registry.keys_dir) as gate, Wire(gate.target) as wire:
            decision = wire.ask(connection("S-1"))
            assert verdict(decision) == "REVIEW" and codes(decision) == {"RECORD_UNVERIFIED"}
            assert verdict(wire.ask(connection("S-2"))) == "ALLOW"
    finally:
        registry.close()


def test_doubt_is_lifted_only_by_a_record_showing_the_last_change(
    signer: Signer, cache: RegistryCache
) -> None:
    """Event 4 changed S-1: no record (or one showing size 4, i.e. events 0..3) is doubtful."""
    assert _load(cache, signer, 10, []) == (0, [])
    assert cache.doubt([], [("S-1", 4)]) == 1 and cache.is_doubtful("S-1")
    assert _load(cache, signer, 10, [("S-1", _envelope(signer, _record("S-1", 4)))]) == (1, [])
    assert cache.doubt([], [("S-1", 4)]) == 1 and cache.is_doubtful("S-1")
    assert _load(cache, signer, 10, [("S-1", _envelope(signer, _record("S-1", 5)))]) == (1, [])
    assert not cache.is_doubtful("S-1")
    assert cache.doubt(["S-2"], []) == 1 and cache.is_doubtful("S-2")  # a rejected record
