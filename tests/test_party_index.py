"""The party index (Art. 22) is always that of the verified records, and costs the loop nothing.

* ``PartyIndex.changed`` against the index read from scratch (every envelope parsed, no filter)
  over random sequences of changes (hypothesis): records added, replaced by one naming other
  parties or none, removed, replaced by records that cannot be read (filed under another
  structure, from beyond the head, bytes that are no record), and a cache that installs each
  index answers ``cases_naming`` as the records say, reporting the unreadable ones.
* The verifier over a real registry (SQLite and PostgreSQL), installed by the real follower, at
  each kind of install: the first load, a new head changing records, a case moved to another
  party, a full read (the feed leaving a record out), a rolled-back head refused, a restart
  with a record altered in the database (doubtful, out of the index) and put back (in again).
  After each, the index is that of the verifier's very records, the cache holds the very index
  the verifier made (nothing indexed on the loop), and a cache rebuilt from scratch agrees.
* The same over random sequences of imports (hypothesis, SQLite).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import GateRegistry, signed_head, urban_ok
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from permitgate_client import VerificationError
from registry_support import case as case_line

from registry.feed import SqlFeed
from registry.records import Case, StatusRecord, Structure
from registry.signing import Signer
from registry.status import StatusSigner
from registry.trusted_state import TrustedState
from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage
from server.cache import (
    CachedStatus,
    PartyIndex,
    RegistryCache,
    _may_name_party,
    read_status_record,
)
from server.follower import RegistryFollower
from server.incidents import Incidents
from server.verifier import RegistryVerifier

NOW = datetime.now(UTC).replace(microsecond=0)
ORIGIN = "permitgate.example/registry"
PARTIES = ("91110000MA01ABCD2X", "91110000MA01WXYZ9Q", "91110000MA01QRST5K")
PARTY, OTHER, THIRD = PARTIES
SIDS = tuple(f"S-{n}" for n in range(8))
FAR_FUTURE = 10**9  # a tree size beyond any head of these tests


# --- what the index must be ----------------------------------------------------------------------


def _expected(envelopes: Mapping[str, bytes], size: int) -> tuple[dict[str, set[str]], set[str]]:
    """From scratch: party -> structures, and the structures whose record may name a party but
    cannot be read; every envelope parsed (the filter only decides which failures count)."""
    named: dict[str, set[str]] = {}
    unreadable: set[str] = set()
    for sid, envelope in envelopes.items():
        try:
            record = read_status_record(envelope, sid, size)
        except VerificationError:
            if _may_name_party(envelope):
                unreadable.add(sid)
            continue
        for case in record.cases:
            if case.party is not None:
                named.setdefault(case.party, set()).add(sid)
    return named, unreadable


def _as_found(index: PartyIndex) -> tuple[dict[str, set[str]], set[str]]:
    return {p: set(s) for p, s in index.structures.items()}, set(index.unreadable)


def _consistent(index: PartyIndex) -> None:
    """The two directions of the index agree; no empty entry is left behind."""
    pairs = {(p, s) for p, sids in index.structures.items() for s in sids}
    assert pairs == {(p, s) for s, ps in index.parties.items() for p in ps}
    assert all(index.structures.values()) and all(index.parties.values())


# --- the index alone, over random changes --------------------------------------------------------


def _case(cid: str, sid: str, party: str | None) -> Case:
    return Case(
        cid,
        sid,
        CaseKind.NO_PLANNING_PERMIT,
        CaseStage.STOP_ORDER,
        CaseSource.PATROL,
        NOW - timedelta(days=3),
        party,
        party is not None,
    )


def _envelope(signer: Signer, sid: str, tree_size: int, parties: list[Any]) -> bytes:
    cases = tuple(_case(f"C-{sid}-{n}", sid, party) for n, party in enumerate(parties))
    record = StatusRecord(
        Structure(sid, Area.URBAN, "110228"), (), cases, tree_size, NOW, NOW + timedelta(7)
    )
    return StatusSigner(signer, now=NOW).envelope(record)


_party = st.sampled_from((*PARTIES, None))
_change: st.SearchStrategy[tuple[str, list[Any]]] = st.one_of(
    st.tuples(st.just("record"), st.lists(_party, max_size=3)),
    st.tuples(st.just("remove"), st.just([])),
    st.tuples(st.just("another_structure"), st.lists(_party, min_size=1, max_size=2)),
    st.tuples(st.just("from_the_future"), st.lists(_party, min_size=1, max_size=2)),
    st.tuples(st.just("no_record"), st.just([])),
)
_step = st.dictionaries(st.sampled_from(SIDS), _change, max_size=5)


def _apply(signer: Signer, sid: str, change: tuple[str, list[Any]], size: int) -> bytes | None:
    kind, parties = change
    if kind == "remove":
        return None
    if kind == "record":
        return _envelope(signer, sid, size, parties)
    if kind == "another_structure":  # a genuine record of S-x filed under S-y
        return _envelope(signer, sid + "-elsewhere", size, parties)
    if kind == "from_the_future":
        return _envelope(signer, sid, FAR_FUTURE, parties)
    return b'{"payload": "\\u0041", "note": "no record"}'  # an escape: looked into, unreadable


SIGNER = Signer(ORIGIN, Ed25519PrivateKey.generate())


@settings(max_examples=60, deadline=None)
@given(steps=st.lists(_step, min_size=1, max_size=8))
def test_an_index_changed_step_by_step_is_the_index_from_scratch(
    steps: list[dict[str, tuple[str, list[Any]]]],
) -> None:
    cache = RegistryCache(max_staleness=300)
    envelopes: dict[str, bytes] = {}
    records: dict[str, CachedStatus] = {}
    index = PartyIndex.of(records, 0)
    for number, step in enumerate(steps, start=1):
        size = 10 * number
        changed: dict[str, CachedStatus] = {}
        for sid, change in step.items():
            envelope = _apply(SIGNER, sid, change, size)
            if envelope is None:
                envelopes.pop(sid, None)
            else:
                envelopes[sid] = envelope
                changed[sid] = CachedStatus(envelope, hashlib.sha256(envelope).digest())
        # as the verifier makes them: a new mapping, unchanged structures keep their objects
        records = {sid: s for sid, s in {**records, **changed}.items() if sid in envelopes}
        index = index.changed(records, step.keys(), size)
        assert index.records is records
        _consistent(index)
        assert _as_found(index) == _expected(envelopes, size)
        fresh = {sid: CachedStatus(e, hashlib.sha256(e).digest()) for sid, e in envelopes.items()}
        whole = PartyIndex.of(fresh, size)
        _consistent(whole)
        assert (whole.structures, whole.parties, whole.unreadable.keys()) == (
            index.structures,
            index.parties,
            index.unreadable.keys(),
        )
        # the cache installs it as it is, and answers from it
        entries = {sid: s.digest for sid, s in records.items()}
        head = signed_head(SIGNER, entries, size=size, cosigned_at=NOW)
        cache.install(
            head,
            records,
            replace=True,
            doubtful=frozenset(),
            superseded=None,
            now=NOW,
            parties=index,
        )
        assert cache._parties is index
        named, unreadable = _expected(envelopes, size)
        for party in PARTIES:
            found = cache.cases_naming(party)
            assert {c.structure_id for c in found.cases} == named.get(party, set())
            assert all(c.party == party for c in found.cases)
            assert unreadable <= found.unverified


def test_a_record_no_party_could_be_named_in_is_never_parsed() -> None:
    envelope = _envelope(SIGNER, "S-1", 5, [None])
    plain = {"S-1": CachedStatus(envelope, hashlib.sha256(envelope).digest())}
    index = PartyIndex.of(plain, 5)
    assert not index.structures and plain["S-1"].record is None


def test_an_index_with_other_records_is_not_taken_by_the_cache() -> None:
    """An index made for another mapping is never installed with this one: the cache makes
    its own (never an index of one head with the records of another)."""
    envelope = _envelope(SIGNER, "S-1", 5, [PARTY])
    records = {"S-1": CachedStatus(envelope, hashlib.sha256(envelope).digest())}
    stale_index = PartyIndex.of({}, 5)
    head = signed_head(SIGNER, {"S-1": records["S-1"].digest}, size=5, cosigned_at=NOW)
    cache = RegistryCache(max_staleness=300)
    cache.install(
        head,
        records,
        replace=True,
        doubtful=frozenset(),
        superseded=None,
        now=NOW,
        parties=stale_index,
    )
    assert cache._parties is not stale_index
    assert [c.structure_id for c in cache.cases_naming(PARTY).cases] == ["S-1"]


# --- the verifier over a real registry, installed by the follower -------------------------------


class Following:
    """A verifier over ``registry`` whose polls the real follower installs in a cache."""

    def __init__(self, registry: GateRegistry, state_dir: Path) -> None:
        self.registry = registry
        self.state_dir = state_dir
        self.loop = asyncio.new_event_loop()
        self.start()

    def start(self) -> None:
        self.verifier = RegistryVerifier(
            self.registry.signer.verifier, TrustedState(self.state_dir, "gate"), Incidents()
        )
        self.cache = RegistryCache(max_staleness=300, incidents=self.verifier.incidents)
        self.follower = RegistryFollower(SqlFeed(self.registry.db), self.cache, self.verifier)

    def restart(self) -> None:
        self.verifier.state.close()
        self.start()

    def poll(self) -> None:
        self.loop.run_until_complete(self.follower.poll())
        self.check()

    def check(self) -> None:
        """The index held is that of the verified records, made by the verifier."""
        records, index = self.verifier.verified
        assert self.verifier.head is not None
        size = self.verifier.head.size
        assert index.records is records and self.cache._parties is index
        _consistent(index)
        envelopes = {sid: self.registry.status_envelope(sid) for sid in records}
        assert all(hashlib.sha256(e).digest() == records[s].digest for s, e in envelopes.items())
        assert _as_found(index) == _expected(envelopes, size)
        # a cache handed the same records afresh (no index: made whole there) agrees
        fresh = {sid: CachedStatus(e, records[sid].digest) for sid, e in envelopes.items()}
        scratch = RegistryCache(max_staleness=300)
        scratch.install(self.cache.head, fresh, replace=True, doubtful=frozenset(), superseded=None)
        assert _as_found(scratch._parties) == _as_found(index)

    def naming(self, party: str) -> tuple[list[str], set[str]]:
        found = self.cache.cases_naming(party)
        return [c.id for c in found.cases], set(found.unverified)

    def close(self) -> None:
        self.loop.run_until_complete(self.follower.close())
        self.loop.close()
        self.verifier.state.close()


def _suspension(cid: str, sid: str, party: str) -> dict[str, Any]:
    line = case_line(cid, sid, "stop_order", "no_planning_permit", "patrol")
    line["party"] = party
    line["party_suspended"] = True
    return line


@pytest.fixture
def registry(db_url: str, tmp_path: Path) -> Iterator[GateRegistry]:
    registry = GateRegistry(db_url, tmp_path / "keys")
    try:
        yield registry
    finally:
        registry.close()


def test_every_kind_of_install_leaves_the_index_of_the_verified_records(
    registry: GateRegistry, tmp_path: Path
) -> None:
    registry.load(
        [
            *urban_ok("S-1"),
            *urban_ok("S-2"),
            *urban_ok("S-3"),
            _suspension("C-1", "S-1", PARTY),
            _suspension("C-3", "S-3", OTHER),
        ]
    )
    following = Following(registry, tmp_path / "state")
    try:
        following.poll()  # the first load: every record read
        assert following.naming(PARTY) == (["C-1"], set())
        assert following.naming(OTHER) == (["C-3"], set())
        # a new head changing one record: read incrementally
        registry.load([_suspension("C-2", "S-2", PARTY)])
        following.poll()
        assert following.naming(PARTY) == (["C-1", "C-2"], set())
        # a case moved to another party
        registry.load([_suspension("C-1", "S-1", THIRD)])
        following.poll()
        assert following.naming(PARTY) == (["C-2"], set())
        assert following.naming(THIRD) == (["C-1"], set())
        # the feed leaves the change out: the root does not match, every record is read
        registry.load([_suspension("C-3", "S-3", PARTY)])
        registry.sql("UPDATE status_record SET tree_size = 1, next_update = '2000-01-01 00:00:00'")
        following.poll()
        assert following.naming(PARTY) == (["C-2", "C-3"], set())
        assert following.naming(OTHER) == ([], set())
        # a rolled-back head is refused: nothing changes
        newest = registry.sql("SELECT max(serial) FROM head")[0][0]
        kept = registry.sql("SELECT * FROM head WHERE serial = :s", s=newest)
        assert kept
        registry.sql("DELETE FROM head WHERE serial = :s", s=newest)
        before = following.verifier.party_index
        following.poll()
        assert following.verifier.party_index is before
        assert following.verifier.incidents.counts.get("rollback")
    finally:
        following.close()


def test_a_doubtful_record_leaves_the_index_and_comes_back(
    registry: GateRegistry, tmp_path: Path
) -> None:
    registry.load([*urban_ok("S-1"), *urban_ok("S-2"), _suspension("C-1", "S-1", PARTY)])
    following = Following(registry, tmp_path / "state")
    try:
        following.poll()
        assert following.naming(PARTY) == (["C-1"], set())
        genuine = registry.status_envelope("S-1")
        altered = registry.status_envelope("S-2")  # genuine, but not the record the map signs
        registry.sql("UPDATE status_record SET envelope = :e WHERE structure_id = 'S-1'", e=altered)
        following.restart()  # the held head's records read back by hash: S-1 is doubtful
        following.loop.run_until_complete(following.follower.poll())
        assert "S-1" in following.verifier.doubtful and "S-1" not in following.verifier.records
        index = following.verifier.party_index
        assert "S-1" not in index.parties and following.cache._parties is index
        assert following.naming(PARTY) == ([], {"S-1"})  # never ALLOW over it
        registry.sql("UPDATE status_record SET envelope = :e WHERE structure_id = 'S-1'", e=genuine)
        following.poll()  # read again: verified again, in the index again
        assert not following.verifier.doubtful
        assert following.naming(PARTY) == (["C-1"], set())
    finally:
        following.close()


# --- the verifier over random imports -----------------------------------------------------------

_import_step = st.dictionaries(
    st.sampled_from(("S-1", "S-2", "S-3", "S-4")),
    st.sampled_from((*PARTIES, None)),
    min_size=1,
    max_size=3,
)


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(steps=st.lists(_import_step, min_size=1, max_size=4))
def test_random_imports_leave_the_index_of_the_verified_records(
    steps: list[dict[str, str | None]],
) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        where = Path(scratch)
        registry = GateRegistry(f"sqlite:///{where / 'registry.db'}", where / "keys")
        following: Following | None = None
        try:
            registry.load([line for sid in ("S-1", "S-2", "S-3", "S-4") for line in urban_ok(sid)])
            following = Following(registry, where / "state")
            following.poll()
            for step in steps:
                lines = []
                for sid, party in step.items():
                    line = case_line(f"C-{sid}", sid, "stop_order", "no_planning_permit", "patrol")
                    if party is not None:
                        line["party"] = party
                    lines.append(line)
                registry.load(lines)
                following.poll()
        finally:
            if following is not None:
                following.close()
            registry.close()


def test_base64_of_party_is_what_the_filter_looks_for() -> None:
    """The filter the index relies on finds a party in a real signed envelope."""
    envelope = _envelope(SIGNER, "S-1", 5, [PARTY])
    payload = base64.b64decode(json.loads(envelope)["payload"])
    assert b'"party"' in payload and _may_name_party(envelope)
