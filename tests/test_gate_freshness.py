"""A running gate follows the registry, and never fails open.

* An import is visible to a running gate within 2 s (measured by polling the gate).
* Fresh means the head the gate holds was cosigned by the registry within ``max_staleness``;
  when it was not (the database breaks, the follower stops, the registry stops cosigning, the
  database was never there), nothing is ALLOWed: REVIEW with REGISTRY_STALE (DENY where a DENY
  reason applies anyway). A poll that succeeds proves nothing by itself.
* A status record past its ``next_update`` is stale on its own.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gate_helpers import (
    STATUS_TYPE,
    AnyCheck,
    GateRegistry,
    Heartbeat,
    Wire,
    codes,
    connection,
    gate_loop,
    open_dsse,
    parse_key,
    premises,
    registration,
    running_gate,
    start_gate,
    urban_ok,
    verdict,
    wait_for,
)
from permitgate_client.v1 import gate_pb2 as pb

from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.errors import DatabaseMissing
from registry.records import parse_time
from registry.signing import ensure_signer
from server.app import GateApp

OK = structure_id(0)  # urban, every permit in force
NEW = "X-new-structure"

# Checks that are ALLOW on the demo's first structure while the data is fresh.
ALLOWED: list[AnyCheck] = [
    connection(OK),
    connection(OK, pb.UTILITY_POWER),
    registration(OK, pb.REGISTRATION_KIND_TRANSFER),
    premises(OK, pb.OFFICE_FIRE, "residential"),
    premises(OK, pb.OFFICE_TAX, "residential", application_id="L-1"),
]


def _demo() -> list[dict[str, Any]]:
    return list(demo_lines(len(SCENARIOS)))


def _revoked_planning_permit(records: list[dict[str, Any]], sid: str) -> dict[str, Any]:
    [cp] = [
        r
        for r in records
        if r["type"] == "permit" and r["structure"] == sid and r["kind"] == "construction_planning"
    ]
    return {**cp, "status": "revoked"}


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[GateRegistry]:
    registry = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    try:
        yield registry
    finally:
        registry.close()


def _all_stale(wire: Wire) -> None:
    """Every formerly-ALLOW check now answers REVIEW + REGISTRY_STALE (and notifies nobody)."""
    for check in ALLOWED:
        decision = wire.ask(check)
        assert verdict(decision) == "REVIEW", (check, decision)
        assert codes(decision) == {"REGISTRY_STALE"}
        assert not decision.notification_id


def _stale_probe(wire: Wire) -> pb.Decision | None:
    decision = wire.ask(connection(OK))
    return decision if verdict(decision) != "ALLOW" else None


# --- following the registry ----------------------------------------------------------------------


def test_import_is_visible_within_two_seconds(db_url: str, keys_dir: Path) -> None:
    registry = GateRegistry(db_url, keys_dir)
    try:
        demo = _demo()
        registry.load(demo)
        with running_gate(db_url, keys_dir, poll_interval=0.2) as gate, Wire(gate.target) as wire:
            assert verdict(wire.ask(connection(OK))) == "ALLOW"
            assert codes(wire.ask(connection(NEW))) == {"NOT_IN_REGISTRY"}
            version = registry.load([_revoked_planning_permit(demo, OK), *urban_ok(NEW)])
            imported = time.monotonic()

            def seen() -> pb.Decision | None:
                decision = wire.ask(connection(OK))
                return decision if decision.registry_version == version else None

            decision = wait_for(seen, timeout=2.0)
            elapsed = time.monotonic() - imported
            assert elapsed < 2.0
            assert verdict(decision) == "DENY" and codes(decision) == {"PERMIT_REVOKED"}
            new = wire.ask(connection(NEW))
            assert verdict(new) == "ALLOW" and new.registry_version == version
    finally:
        registry.close()


# --- never fail open -------------------------------------------------------------------------


def test_broken_registry_database_turns_allow_into_review(sqlite_registry: GateRegistry) -> None:
    """The follower's reads fail (the head table is gone; the registry cannot cosign either):
    once the held head's cosignature is older than max_staleness, REVIEW; once the table is
    back and cosigned again, the gate is fresh again."""
    sqlite_registry.load(_demo())
    with (
        Heartbeat(sqlite_registry),
        running_gate(
            sqlite_registry.url, sqlite_registry.keys_dir, poll_interval=0.1, max_staleness=2
        ) as gate,
        Wire(gate.target) as wire,
    ):
        assert verdict(wire.ask(connection(OK))) == "ALLOW"
        sqlite_registry.sql("ALTER TABLE head RENAME TO head_gone")
        broken = time.monotonic()
        decision = wait_for(lambda: _stale_probe(wire), timeout=5.0)
        # not before the bound: the cosignature held was at most a poll, a beat and the second
        # it is rounded down to older than the break
        assert time.monotonic() - broken >= 2 - 1.3
        assert verdict(decision) == "REVIEW" and codes(decision) == {"REGISTRY_STALE"}
        _all_stale(wire)
        assert gate.app.follower.failure is not None
        sqlite_registry.sql("ALTER TABLE head_gone RENAME TO head")
        wait_for(lambda: True if verdict(wire.ask(connection(OK))) == "ALLOW" else None, 5.0)


def test_stopped_follower_turns_allow_into_review(sqlite_registry: GateRegistry) -> None:
    """The registry goes on cosigning, but the gate no longer reads it: its head ages."""
    sqlite_registry.load(_demo())
    with (
        Heartbeat(sqlite_registry),
        running_gate(
            sqlite_registry.url, sqlite_registry.keys_dir, poll_interval=0.1, max_staleness=2
        ) as gate,
        Wire(gate.target) as wire,
    ):
        assert verdict(wire.ask(connection(OK))) == "ALLOW"
        gate.run(gate.app.follower.close())
        wait_for(lambda: _stale_probe(wire), timeout=5.0)
        _all_stale(wire)
        denied = wire.ask(connection(structure_id(1)))
        assert verdict(denied) == "DENY"
        assert codes(denied) == {"PERMIT_REVOKED", "REGISTRY_STALE"}
        # a structure the gate does not hold, on stale data: it may have been added since, so
        # REVIEW + REGISTRY_STALE only, for a notifying office too (and no notice recorded)
        for check in (connection(NEW), premises(NEW, pb.OFFICE_TAX, "shop", application_id="L")):
            unknown = wire.ask(check)
            assert (verdict(unknown), codes(unknown)) == ("REVIEW", {"REGISTRY_STALE"})
    assert sqlite_registry.sql("SELECT count(*) FROM notification") == [(0,)]


def test_a_registry_that_stops_cosigning_turns_stale(sqlite_registry: GateRegistry) -> None:
    """Polls keep succeeding, but no new cosignature comes: that is not fresh. REVIEW once the
    last cosignature is older than max_staleness; fresh again when cosigning resumes."""
    sqlite_registry.load(_demo())
    with (
        Heartbeat(sqlite_registry) as heartbeat,
        running_gate(
            sqlite_registry.url, sqlite_registry.keys_dir, poll_interval=0.1, max_staleness=2
        ) as gate,
        Wire(gate.target) as wire,
    ):
        assert verdict(wire.ask(connection(OK))) == "ALLOW"
        heartbeat.pause()
        paused = time.monotonic()
        wait_for(lambda: _stale_probe(wire), timeout=5.0)
        assert time.monotonic() - paused >= 2 - 1.3
        _all_stale(wire)
        assert gate.app.follower.failure is None  # every poll succeeded meanwhile
        heartbeat.resume()
        wait_for(lambda: True if verdict(wire.ask(connection(OK))) == "ALLOW" else None, 5.0)


def test_a_head_cosigned_long_ago_is_stale_from_the_start(sqlite_registry: GateRegistry) -> None:
    """A registry imported an hour ago whose head nobody cosigned since: genuine, not fresh."""
    sqlite_registry.load(_demo(), now=datetime.now(UTC) - timedelta(hours=1))
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        assert gate.app.cache.size == sqlite_registry.version()  # loaded and verified
        _all_stale(wire)
        sqlite_registry.cosign()
        wait_for(lambda: True if verdict(wire.ask(connection(OK))) == "ALLOW" else None, 5.0)


def test_gate_on_an_empty_database_never_allows(tmp_path: Path) -> None:
    """No schema at all: the gate serves, answers REVIEW/DENY with REGISTRY_STALE, and picks the
    registry up once it is initialised and loaded."""
    (tmp_path / "empty.db").touch()  # an empty file is an empty SQLite database
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    keys = tmp_path / "keys"
    ensure_signer(keys, "registry", "permitgate.example/registry")
    with running_gate(url, keys, poll_interval=0.1) as gate, Wire(gate.target) as wire:
        for check in ALLOWED:
            decision = wire.ask(check)
            # never loaded: the gate cannot tell whether OK exists, so no NOT_IN_REGISTRY either
            assert (verdict(decision), codes(decision)) == ("REVIEW", {"REGISTRY_STALE"})
            assert decision.registry_version == 0 and not decision.notification_id
        registry = GateRegistry(url, keys)
        try:
            registry.load(_demo())
            wait_for(lambda: True if verdict(wire.ask(connection(OK))) == "ALLOW" else None, 3.0)
        finally:
            registry.close()


def test_gate_on_a_missing_sqlite_file_creates_none(tmp_path: Path) -> None:
    """A gate reads a registry, it never makes one: a mistyped SQLite path is an error naming
    the file, and no empty database is left behind."""
    keys = tmp_path / "keys"
    ensure_signer(keys, "registry", "permitgate.example/registry")
    missing = tmp_path / "no-such-registry.db"
    with pytest.raises(DatabaseMissing, match=re.escape(str(missing))):
        gate_loop().run(
            GateApp.create(db_url=f"sqlite:///{missing}", keys_dir=keys, listen="127.0.0.1:0")
        )
    assert not missing.exists()


def test_gate_on_an_unreachable_database_never_allows(tmp_path: Path) -> None:
    keys = tmp_path / "keys"
    ensure_signer(keys, "registry", "permitgate.example/registry")
    gate = start_gate("postgresql://postgres@127.0.0.1:1/nothing", keys, poll_interval=0.1)
    try:
        with Wire(gate.target) as wire:
            for check in ALLOWED:
                decision = wire.ask(check)
                assert (verdict(decision), codes(decision)) == ("REVIEW", {"REGISTRY_STALE"})
    finally:
        gate.stop(grace=0.1)


def test_status_record_past_next_update_is_stale(sqlite_registry: GateRegistry) -> None:
    """Records signed 8 days ago (valid 7) are stale however fresh the poll; newer ones are not."""
    old = datetime.now(UTC) - timedelta(days=8)
    sqlite_registry.load(urban_ok("X-old"), now=old)
    sqlite_registry.load(urban_ok("X-fresh"))
    signed = open_dsse(
        sqlite_registry.status_envelope("X-old"),
        parse_key(sqlite_registry.signer.verifier.text),
        STATUS_TYPE,
    )
    assert parse_time(signed["next_update"]) < datetime.now(UTC)
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        stale = wire.ask(connection("X-old"))
        assert verdict(stale) == "REVIEW" and codes(stale) == {"REGISTRY_STALE"}
        notifying = wire.ask(premises("X-old", pb.OFFICE_TAX, "office", application_id="L-1"))
        assert verdict(notifying) == "REVIEW" and not notifying.notification_id
        assert codes(notifying) == {"REGISTRY_STALE", "USE_MISMATCH"}
        assert verdict(wire.ask(connection("X-fresh"))) == "ALLOW"


def test_registry_rolled_back_is_refused(sqlite_registry: GateRegistry) -> None:
    """The newest head disappears from the database (a restore of an old backup) and the
    registry's heartbeat cosigns the older one: the gate keeps the newer head it verified,
    does not go back, counts the rollback, and turns stale once its head is too old."""
    demo = _demo()
    older = sqlite_registry.load(demo)
    newer = sqlite_registry.load([_revoked_planning_permit(demo, OK)])
    with (
        Heartbeat(sqlite_registry),
        running_gate(
            sqlite_registry.url, sqlite_registry.keys_dir, poll_interval=0.1, max_staleness=2
        ) as gate,
        Wire(gate.target) as wire,
    ):
        assert codes(wire.ask(connection(OK))) == {"PERMIT_REVOKED"}
        sqlite_registry.sql("DELETE FROM head WHERE size = :n", n=newer)
        assert sqlite_registry.version() == older

        def stale() -> pb.Decision | None:
            decision = wire.ask(connection(OK))
            return decision if "REGISTRY_STALE" in codes(decision) else None

        decision = wait_for(stale, timeout=5.0)
        assert codes(decision) == {"PERMIT_REVOKED", "REGISTRY_STALE"}
        assert decision.registry_version == newer
        assert gate.app.cache.size == newer
        assert gate.app.incidents.counts["rollback"] == 1
