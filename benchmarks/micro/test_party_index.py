"""The party index (Art. 22) at a million structures: what the event loop pays per change.

What is measured, over 1,000,000 structures held in memory (1% of them with a case naming one
of 1,000 parties, each of those records signed as the registry signs it; the others share one
real envelope naming no party) under a real signed head:

* ``RegistryCache.install`` of a new mapping in which one record changed (it moves a case from
  one party to another), with the index the verifier made for it: the work on the event loop at
  each registry change. Twice: as the follower does it (the cache holds the last reference to
  the mapping it replaces, so that mapping's million entries are released there), and with the
  mapping replaced still referenced elsewhere (the install's own work);
* the next mapping of records, with that one record changed: a whole dict copied, as the
  verifier once made it, beside ``HeldRecords.changed``, which copies only the shard the record
  falls in (the GIL is held for the whole copy, so the event loop waits on it too);
* ``PartyIndex.changed`` for that one record: the work in the verifier's thread;
* ``PartyIndex.of`` over the million records (each looked into, those naming a party parsed):
  the first load, in the verifier's thread.

Each is run over the records held as a plain dict and as ``HeldRecords``, side by side.

Why it matters: every check in flight waits while the loop installs; with departments writing
many times a second, a change lands at almost every poll. The install must not grow with the
registry.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import count
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from permitgate_client._proofs import RegistryHead, verify_registry_head

from registry.heads import sign_head
from registry.merkle import CompactTree, leaf_hash
from registry.records import Case, StatusRecord, Structure
from registry.signing import Signer
from registry.status import StatusSigner
from registry.statusmap import StatusMap
from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage
from server.cache import CachedStatus, PartyIndex, RegistryCache
from server.held_records import HeldRecords

STRUCTURES = 1_000_000
NAMING = STRUCTURES // 100  # structures whose record names a party
PARTIES = 1_000
TREE_SIZE = 64  # the log size of the head held; every record's tree size is below it

pytestmark = pytest.mark.benchmark(max_time=0.3)


@dataclass
class Million:
    now: datetime
    signer: StatusSigner
    head: RegistryHead
    records: dict[str, CachedStatus] | HeldRecords
    index: PartyIndex
    cache: RegistryCache
    naming: dict[str, bytes]  # the structures whose record names a party: their envelopes
    order: list[str]  # those structures, in order


def party_id(n: int) -> str:
    return f"91110000MA{n:07d}X"


def status_record(sid: str, party: str | None, now: datetime) -> StatusRecord:
    case = Case(
        f"C-{sid}",
        sid,
        CaseKind.NO_PLANNING_PERMIT,
        CaseStage.STOP_ORDER,
        CaseSource.PATROL,
        now - timedelta(days=30),
        party,
        party is not None,
    )
    return StatusRecord(
        Structure(sid, Area.URBAN, "110228"), (), (case,), 10, now, now + timedelta(days=7)
    )


def held(envelope: bytes) -> CachedStatus:
    return CachedStatus(envelope, hashlib.sha256(envelope).digest())


def build_million(
    structures: int = STRUCTURES,
) -> tuple[datetime, StatusSigner, RegistryHead, dict[str, CachedStatus], dict[str, bytes]]:
    """The records of ``structures`` structures (1% naming a party), a head to hold them under
    (its map is not theirs: ``install`` does not look), and the envelopes of those naming one."""
    now = datetime.now(UTC).replace(microsecond=0)
    registry = Signer("bench.example/registry", Ed25519PrivateKey.generate())
    signer = StatusSigner(registry, now=now)
    plain = signer.envelope(status_record("110228-0000-0000", None, now))
    plain_digest = hashlib.sha256(plain).digest()
    records: dict[str, CachedStatus] = {}
    naming: dict[str, bytes] = {}
    step = structures // (structures // 100)
    for n in range(structures):
        sid = f"110228-{n // 10000:04d}-{n % 10000:04d}"
        if n % step == 0:
            envelope = signer.envelope(status_record(sid, party_id(n % PARTIES), now))
            records[sid] = held(envelope)
            naming[sid] = envelope
        else:
            records[sid] = CachedStatus(plain, plain_digest)
    tree = CompactTree()
    for index in range(TREE_SIZE):
        tree.append(leaf_hash(b"event %d" % index))
    row = sign_head(
        registry,
        origin=registry.name,
        tree=tree,
        status_map=StatusMap([("110228-0000-0000", plain_digest)]),
        serial=1,
        now=now,
    )
    head = verify_registry_head(row.cosigned_note(), registry.verifier)
    return now, signer, head, records, naming


@pytest.fixture(scope="module", params=["dict", "HeldRecords"])
def million(request: pytest.FixtureRequest) -> Million:
    now, signer, head, plain, naming = build_million()
    records = plain if request.param == "dict" else HeldRecords(plain)
    index = PartyIndex.of(records, head.size)
    cache = RegistryCache(max_staleness=3600)
    cache.install(
        head, records, replace=True, doubtful=frozenset(), superseded=None, now=now, parties=index
    )
    return Million(now, signer, head, records, index, cache, naming, list(naming))


def _one_change(million: Million, turn: int) -> tuple[dict[str, CachedStatus] | HeldRecords, str]:
    """The next mapping as the verifier makes it: one record changed (its case now names
    another party)."""
    sid, status = _changed_record(million, turn)
    return _next_mapping(million.records, sid, status), sid


def _changed_record(million: Million, turn: int) -> tuple[str, CachedStatus]:
    sid = million.order[turn % len(million.order)]
    envelope = million.signer.envelope(status_record(sid, party_id(PARTIES + turn), million.now))
    return sid, held(envelope)


def _next_mapping(
    records: dict[str, CachedStatus] | HeldRecords, sid: str, status: CachedStatus
) -> dict[str, CachedStatus] | HeldRecords:
    if isinstance(records, HeldRecords):
        return records.changed({sid: status})
    return {**records, sid: status}


def test_next_mapping_of_one_changed_record_in_the_verifiers_thread(
    benchmark: Any, million: Million
) -> None:
    turns = count(500)

    def next_record() -> tuple[tuple[Any, ...], dict[str, Any]]:
        sid, status = _changed_record(million, next(turns))
        return (million.records, sid, status), {}

    made = benchmark.pedantic(_next_mapping, setup=next_record, rounds=20, iterations=1)
    assert len(made) == STRUCTURES


@pytest.mark.parametrize("replaced", ["released", "kept"])
def test_install_of_one_changed_record_on_the_loop(
    benchmark: Any, million: Million, replaced: str
) -> None:
    turns = count(0 if replaced == "released" else 100)
    last: list[int] = []
    kept: list[dict[str, CachedStatus] | HeldRecords] = []

    def next_mapping() -> tuple[tuple[Any, ...], dict[str, Any]]:
        last.append(next(turns))
        if replaced == "kept":
            kept[:] = [million.records]
        records, sid = _one_change(million, last[-1])
        index = million.index.changed(records, (sid,), million.head.size)  # the thread's part
        million.records, million.index = records, index
        return (million.head, records), {
            "replace": True,
            "doubtful": frozenset(),
            "superseded": None,
            "now": million.now,
            "parties": index,
        }

    benchmark.pedantic(million.cache.install, setup=next_mapping, rounds=20, iterations=1)
    named = million.cache.cases_naming(party_id(PARTIES + last[-1]))
    assert len(named.cases) == 1 and million.cache._parties is million.index


def test_index_change_of_one_record_in_the_verifiers_thread(
    benchmark: Any, million: Million
) -> None:
    turns = count(1_000)

    def next_mapping() -> tuple[tuple[Any, ...], dict[str, Any]]:
        records, sid = _one_change(million, next(turns))
        return (records, (sid,), million.head.size), {}

    benchmark.pedantic(million.index.changed, setup=next_mapping, rounds=20, iterations=1)


def test_index_of_a_million_made_whole_in_the_verifiers_thread(
    benchmark: Any, million: Million
) -> None:
    def unparsed() -> tuple[tuple[Any, ...], dict[str, Any]]:
        """Every record as read from the database: not parsed yet."""
        records = dict(million.records)
        records.update((sid, held(envelope)) for sid, envelope in million.naming.items())
        return (records, million.head.size), {}

    index = benchmark.pedantic(PartyIndex.of, setup=unparsed, rounds=2, iterations=1)
    assert sum(len(s) for s in index.structures.values()) == NAMING
