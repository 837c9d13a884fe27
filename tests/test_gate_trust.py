"""Attacks on a gate by someone who can write the registry's database but holds no key.

Each attack runs against a real gate on loopback, on SQLite and on PostgreSQL, first while the
gate runs, then across a restart of the gate on the same state directory. The registry cosigns
its newest head every 0.2 s meanwhile (``Heartbeat``, as the registry service does), and the gate
re-reads every record every 0.5 s (``audit_interval``). In every case:

* a structure under a stop order is never ALLOWed (a thread asks for it all along: ``Watch``);
* the gate answers REVIEW with the right reason: REGISTRY_STALE when it cannot show the
  registry's data fresh (no fresh cosignature of the head it holds, a rolled-back or forged
  head, a newer head it cannot verify), RECORD_UNVERIFIED for a structure whose current record
  cannot be verified;
* the cause is logged, and counted in ``GateApp.incidents``;
* a restarted gate holds the head it had verified, never an older one.

The control: while the registry cosigns its head and nobody tampers, a clean structure stays
ALLOW, across a restart too.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import os
import sqlite3
import struct
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from gate_helpers import (
    GateRegistry,
    Heartbeat,
    RunningGate,
    Wire,
    case,
    codes,
    connection,
    cosigned_at,
    signed_head,
    start_gate,
    verdict,
    wait_for,
)
from permitgate_client._proofs import CosignerKey, RegistryHead
from permitgate_client.v1 import gate_pb2 as pb

from registry.demo import SCENARIOS, demo_lines, structure_id
from registry.feed import FeedError
from registry.heads import sign_head
from registry.merkle import CompactTree
from registry.signing import Signer
from registry.statusmap import StatusMap
from registry.storage import Base, HeadRow
from registry.trusted_state import TrustedState
from server.verifier import GateStateError, held_head

MAX_STALENESS = 3.0
CLEAN = structure_id(0)  # every permit in force: ALLOW
FLAGGED = structure_id(7)  # a stop order since the first import: DENY
TARGET = structure_id(14)  # clean in the first import; a stop order in the second

STALE = {"REGISTRY_STALE"}
UNVERIFIED = {"RECORD_UNVERIFIED"}
REGISTRY_TABLES = ("registry_meta", "structure", "permit", "violation_case", "event", "head")
RECORD_COLUMNS = "tree_size, next_update, digest, envelope"


# --- the scene -------------------------------------------------------------------------------


@dataclass
class Scene:
    """A registry of demo structures, its heartbeat, and a gate on it with a state directory
    that outlives the gate (``restart``)."""

    registry: GateRegistry
    tmp: Path
    heartbeat: Heartbeat
    gate: RunningGate | None = None
    first_version: int = 0

    def start(self) -> RunningGate:
        self.gate = start_gate(
            self.registry.url,
            self.registry.keys_dir,
            poll_interval=0.1,
            max_staleness=MAX_STALENESS,
            audit_interval=0.5,
            state_dir=self.tmp / "gate-state",
        )
        return self.gate

    def restart(self) -> RegistryHead:
        """Stop the gate and start another on the same state; returns the head the stopped
        gate held, after checking that the new one holds the same (not an older one)."""
        assert self.gate is not None
        held = self.gate.app.verifier.head
        assert held is not None
        self.gate.stop()
        self.start()
        assert self.gate.app.verifier.head is not None
        assert self.gate.app.verifier.head.checkpoint == held.checkpoint
        return held

    @property
    def app(self) -> Any:
        assert self.gate is not None
        return self.gate.app

    def ask(self, sid: str) -> pb.Decision:
        assert self.gate is not None
        with Wire(self.gate.target) as wire:
            return wire.ask(connection(sid))

    def answer(self, sid: str) -> tuple[str, set[str]]:
        decision = self.ask(sid)
        return verdict(decision), codes(decision)

    def becomes(self, sid: str, expected: tuple[str, set[str]], timeout: float) -> pb.Decision:
        """Wait until ``sid`` is answered ``expected`` (verdict, reason codes)."""

        def probe() -> pb.Decision | None:
            decision = self.ask(sid)
            return decision if (verdict(decision), codes(decision)) == expected else None

        return wait_for(probe, timeout)

    def incidents(self) -> dict[str, int]:
        return {kind: n for kind, n in self.app.incidents.counts.items() if n}

    def flag_target(self) -> int:
        """The registry records a stop order on TARGET; returns the new version."""
        return self.registry.load([case(f"C-{TARGET}-stop", TARGET, "stop_order")])


@dataclass
class Watch:
    """Asks for the structures under a stop order every 20 ms, all along (across restarts
    too), and remembers every verdict: none may be ALLOW. ``watch(sid)`` adds one from now on
    (once the gate has seen its stop order: until it looks again, a gate answers from the head
    it holds)."""

    scene: Scene
    ids: list[str]
    verdicts: list[tuple[str, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> Watch:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join(10)
        allowed = [(sid, v) for sid, v in self.verdicts if v.startswith("ALLOW")]
        assert not allowed, allowed
        assert self.verdicts

    def watch(self, sid: str) -> None:
        self.ids = [*self.ids, sid]

    def _run(self) -> None:
        while not self._stop.wait(0.02):
            gate = self.scene.gate
            if gate is None or gate.stopped:
                continue
            try:
                with Wire(gate.target, timeout=2) as wire:
                    for sid in self.ids:
                        self.verdicts.append((sid, verdict(wire.ask(connection(sid)))))
            except grpc.RpcError:
                continue  # a gate stopping or starting


@pytest.fixture
def scene(db_url: str, tmp_path: Path) -> Iterator[Scene]:
    """Demo structures loaded (twice the scenarios), the heartbeat on, a gate serving them."""
    with _scene(db_url, tmp_path) as scene:
        yield scene


@pytest.fixture
def sqlite_scene(tmp_path: Path) -> Iterator[Scene]:
    with _scene(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path) as scene:
        yield scene


@contextmanager
def _scene(db_url: str, tmp_path: Path) -> Iterator[Scene]:
    registry = GateRegistry(db_url, tmp_path / "keys")
    heartbeat = Heartbeat(registry)
    scene = Scene(registry, tmp_path, heartbeat)
    try:
        scene.first_version = registry.load(demo_lines(2 * len(SCENARIOS)))
        with heartbeat:
            scene.start()
            assert scene.answer(CLEAN) == ("ALLOW", set())
            assert scene.answer(FLAGGED) == ("DENY", {"STRUCTURE_FLAGGED"})
            assert scene.answer(TARGET) == ("ALLOW", set())
            yield scene
    finally:
        if scene.gate is not None:
            scene.gate.stop()
        registry.close()


def _said(caplog: pytest.LogCaptureFixture, *words: str) -> list[str]:
    """The gate's log lines that hold every one of ``words``."""
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("server.")]
    return [line for line in lines if all(word in line for word in words)]


def _stale(scene: Scene, timeout: float = MAX_STALENESS + 3, clean: str = CLEAN) -> None:
    """Every answer turns REGISTRY_STALE: a clean structure REVIEW, FLAGGED DENY still."""
    scene.becomes(clean, ("REVIEW", STALE), timeout)
    assert scene.answer(FLAGGED) == ("DENY", {"STRUCTURE_FLAGGED", *STALE})


# --- what the attacker does, in each dialect ---------------------------------------------------


def _dialect(scene: Scene) -> str:
    return scene.registry.db.dialect


def _sql(scene: Scene, *statements: str, **params: Any) -> None:
    for statement in statements:
        scene.registry.sql(statement, **params)


def _record_row(scene: Scene, sid: str) -> dict[str, Any]:
    [row] = scene.registry.sql(
        f"SELECT {RECORD_COLUMNS} FROM status_record WHERE structure_id = :sid", sid=sid
    )
    return dict(zip(("t", "n", "d", "e"), row, strict=True))


def _put_record(scene: Scene, sid: str, row: dict[str, Any]) -> None:
    scene.registry.sql(
        "UPDATE status_record SET tree_size = :t, next_update = :n, digest = :d, envelope = :e "
        "WHERE structure_id = :sid",
        sid=sid,
        **row,
    )


def _put_back_on_every_head(scene: Scene, sid: str) -> None:
    """A trigger: whenever the registry writes a head, ``sid``'s record as it is now is put
    back (in the registry's own transaction, so no reader sees the new one)."""
    _sql(
        scene,
        f"CREATE TABLE stash AS SELECT structure_id, {RECORD_COLUMNS} FROM status_record "
        "WHERE structure_id = :sid",
        sid=sid,
    )
    columns = ("tree_size", "next_update", "digest", "envelope")
    if _dialect(scene) == "sqlite":
        sets = ", ".join(
            f"{c} = (SELECT {c} FROM stash WHERE stash.structure_id = status_record.structure_id)"
            for c in columns
        )
        _sql(
            scene,
            "CREATE TRIGGER put_back AFTER INSERT ON head BEGIN UPDATE status_record SET "
            f"{sets} WHERE structure_id IN (SELECT structure_id FROM stash); END",
        )
    else:
        sets = ", ".join(f"{c} = t.{c}" for c in columns)
        _sql(
            scene,
            "CREATE FUNCTION put_back() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"UPDATE status_record s SET {sets} FROM stash t "
            "WHERE s.structure_id = t.structure_id; RETURN NULL; END $$",
            "CREATE TRIGGER put_back AFTER INSERT ON head FOR EACH ROW EXECUTE FUNCTION put_back()",
        )


def _freeze_heads(scene: Scene) -> None:
    """Triggers that silently drop every new head and every new cosignature."""
    if _dialect(scene) == "sqlite":
        _sql(
            scene,
            "CREATE TRIGGER freeze_insert BEFORE INSERT ON head BEGIN SELECT RAISE(IGNORE); END",
            "CREATE TRIGGER freeze_update BEFORE UPDATE ON head BEGIN SELECT RAISE(IGNORE); END",
        )
    else:
        _sql(
            scene,
            "CREATE FUNCTION drop_heads() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "RETURN NULL; END $$",
            "CREATE TRIGGER drop_heads BEFORE INSERT OR UPDATE ON head FOR EACH ROW "
            "EXECUTE FUNCTION drop_heads()",
        )


def _forge_cosignatures(scene: Scene, line: bytes) -> None:
    """A trigger that replaces every cosignature the registry writes with ``line``."""
    blob = "BLOB" if _dialect(scene) == "sqlite" else "BYTEA"
    _sql(scene, f"CREATE TABLE forged (cosignature {blob})")
    _sql(scene, "INSERT INTO forged VALUES (:line)", line=line)
    if _dialect(scene) == "sqlite":
        _sql(
            scene,
            "CREATE TRIGGER forge AFTER UPDATE OF cosignature ON head BEGIN UPDATE head SET "
            "cosignature = (SELECT cosignature FROM forged) WHERE serial = NEW.serial; END",
        )
    else:
        _sql(
            scene,
            "CREATE FUNCTION forge() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            "NEW.cosignature := (SELECT cosignature FROM forged); RETURN NEW; END $$",
            "CREATE TRIGGER forge BEFORE UPDATE ON head FOR EACH ROW EXECUTE FUNCTION forge()",
        )
    _sql(scene, "UPDATE head SET cosignature = :line", line=line)


def _backup(scene: Scene) -> dict[str, list[dict[str, Any]]]:
    """Every row of the registry's tables (a logical backup)."""
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    with scene.registry.db.engine.connect() as conn:
        return {
            name: [dict(row._mapping) for row in conn.execute(sa.select(tables[name]))]
            for name in (*REGISTRY_TABLES, "status_record")
        }


def _restore(scene: Scene, backup: dict[str, list[dict[str, Any]]]) -> None:
    """Put the backup back, in one transaction, as a restore would."""
    tables = {t.name: t for t in Base.metadata.sorted_tables}
    with scene.registry.db.engine.begin() as conn:
        for name in reversed(list(backup)):
            conn.execute(sa.delete(tables[name]))
        for name, rows in backup.items():
            if rows:
                conn.execute(sa.insert(tables[name]), rows)


def _newest_head(scene: Scene) -> HeadRow:
    with scene.registry.db.session() as session:
        row = session.scalars(sa.select(HeadRow).order_by(HeadRow.serial.desc()).limit(1)).one()
        session.expunge(row)
        return row


# --- the control ---------------------------------------------------------------------------------


def test_a_clean_structure_stays_allowed_while_the_head_is_cosigned(scene: Scene) -> None:
    with Watch(scene, [FLAGGED]):
        until = time.monotonic() + 2 * MAX_STALENESS
        while time.monotonic() < until:
            assert scene.answer(CLEAN) == ("ALLOW", set())
            time.sleep(0.1)
        held = scene.restart()
        assert scene.answer(CLEAN) == ("ALLOW", set())
        assert scene.app.verifier.head.map.serial == held.map.serial
    assert scene.incidents() == {}


# --- records ---------------------------------------------------------------------------------


def test_an_older_record_put_back_by_a_trigger_whenever_the_registry_writes(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """The registry signs a stop order on TARGET; a trigger puts TARGET's older, genuine,
    clean record back in the same transaction. The new head's map does not match the records:
    the gate does not adopt it, and since a newer head exists, its own is stale at once."""
    caplog.set_level(logging.INFO, logger="server")
    _put_back_on_every_head(scene, TARGET)
    with Watch(scene, [FLAGGED]) as watch:
        scene.flag_target()
        scene.becomes(TARGET, ("REVIEW", STALE), timeout=3)
        watch.watch(TARGET)
        _stale(scene, timeout=1)
        assert scene.incidents()["map_mismatch"] == 1
        # the records are exactly those of the head it holds: TARGET's was put back
        assert _said(caplog, "do not give the status map", "they are the records of the head held")
        held = scene.restart()
        assert held.size == scene.first_version  # the head it could verify, kept
        assert scene.answer(TARGET) == ("REVIEW", STALE)
        _stale(scene, timeout=1)
        assert scene.incidents()["map_mismatch"] == 1


def test_a_newest_record_replaced_by_an_older_genuine_one(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """The running gate answers from the records it verified (and its audit names the
    altered one); restarted, TARGET alone answers RECORD_UNVERIFIED."""
    caplog.set_level(logging.INFO, logger="server")
    older = _record_row(scene, TARGET)
    with Watch(scene, [FLAGGED]) as watch:
        version = scene.flag_target()
        scene.becomes(TARGET, ("DENY", {"STRUCTURE_FLAGGED"}), timeout=3)
        watch.watch(TARGET)
        _put_record(scene, TARGET, older)
        wait_for(lambda: scene.incidents().get("database_altered"), timeout=3)
        assert _said(caplog, "the database's records of 1 structures", TARGET)
        assert scene.answer(TARGET) == ("DENY", {"STRUCTURE_FLAGGED"})
        assert scene.answer(CLEAN) == ("ALLOW", set())
        held = scene.restart()
        assert held.size == version
        assert scene.answer(TARGET) == ("REVIEW", UNVERIFIED)
        assert scene.answer(CLEAN) == ("ALLOW", set())
        assert scene.answer(FLAGGED) == ("DENY", {"STRUCTURE_FLAGGED"})
        assert scene.incidents() == {"record_unverified": 1}
        assert _said(caplog, "1 structures have no record in the database", TARGET)


def test_a_clean_record_copied_onto_a_flagged_structure(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server")
    with Watch(scene, [FLAGGED]):
        _put_record(scene, FLAGGED, _record_row(scene, CLEAN))
        wait_for(lambda: scene.incidents().get("database_altered"), timeout=3)
        assert _said(caplog, "the database's records of 1 structures", FLAGGED)
        assert scene.answer(FLAGGED) == ("DENY", {"STRUCTURE_FLAGGED"})
        scene.restart()
        assert scene.answer(FLAGGED) == ("REVIEW", UNVERIFIED)
        assert scene.answer(CLEAN) == ("ALLOW", set())
        assert scene.incidents() == {"record_unverified": 1}


# --- heads -----------------------------------------------------------------------------------


def test_the_newest_head_deleted(scene: Scene, caplog: pytest.LogCaptureFixture) -> None:
    """The previous head is the newest in the database again (and the heartbeat cosigns it):
    the gate refuses the rollback and keeps its head, which turns stale."""
    caplog.set_level(logging.INFO, logger="server")
    with Watch(scene, [FLAGGED]) as watch:
        version = scene.flag_target()
        scene.becomes(TARGET, ("DENY", {"STRUCTURE_FLAGGED"}), timeout=3)
        watch.watch(TARGET)
        newest = _newest_head(scene)
        scene.registry.sql("DELETE FROM head WHERE serial = :s", s=newest.serial)
        wait_for(lambda: scene.incidents().get("rollback"), timeout=3)
        assert _said(caplog, "is older than the head this gate verified", "refused")
        _stale(scene)
        assert scene.answer(TARGET) == ("DENY", {"STRUCTURE_FLAGGED", *STALE})
        assert scene.ask(CLEAN).registry_version == version
        held = scene.restart()
        assert held.size == version and held.map.serial == newest.serial
        assert scene.ask(CLEAN).registry_version == version
        _stale(scene, timeout=1)
        assert scene.answer(TARGET) == ("DENY", {"STRUCTURE_FLAGGED", *STALE})
        assert scene.incidents()["rollback"] == 1


def test_a_head_signed_by_another_key(scene: Scene, caplog: pytest.LogCaptureFixture) -> None:
    """A head signed by another key of the same name, claiming TARGET's clean record is
    current again: refused; the gate's own head gets no newer cosignature and turns stale."""
    caplog.set_level(logging.INFO, logger="server")
    with Watch(scene, [FLAGGED]) as watch:
        older = _record_row(scene, TARGET)
        scene.flag_target()
        scene.becomes(TARGET, ("DENY", {"STRUCTURE_FLAGGED"}), timeout=3)
        watch.watch(TARGET)
        genuine = _newest_head(scene)
        impostor = Signer(genuine.note.split(b"\n", 1)[0].decode(), Ed25519PrivateKey.generate())
        entries = {
            sid: bytes(d)
            for sid, d in scene.registry.sql("SELECT structure_id, digest FROM status_record")
        }
        entries[TARGET] = bytes(older["d"])
        forged = sign_head(
            impostor,
            origin=impostor.name,
            tree=CompactTree.from_state(genuine.size, genuine.tree_state),
            status_map=StatusMap(entries.items()),
            serial=genuine.serial + 1,
            now=datetime.now(UTC),
        )
        with scene.registry.db.session() as session:
            session.add(forged)
        _put_record(scene, TARGET, older)
        wait_for(lambda: scene.incidents().get("bad_head"), timeout=3)
        assert _said(caplog, "does not verify with", "refused")
        _stale(scene)
        assert scene.answer(TARGET) == ("DENY", {"STRUCTURE_FLAGGED", *STALE})
        held = scene.restart()
        assert held.map.serial == genuine.serial
        _stale(scene, timeout=1)
        assert scene.answer(TARGET) == ("REVIEW", UNVERIFIED)  # its record in the database
        assert scene.incidents().keys() >= {"bad_head", "record_unverified"}


def test_cosignatures_by_another_key_or_forged(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """A trigger replaces every cosignature the registry writes: first with one by another key
    (not the registry's: ignored, the head counts as never cosigned), then with one that names
    the registry's key but does not verify (the head is refused). Neither keeps the gate
    fresh."""
    caplog.set_level(logging.INFO, logger="server")
    head = _newest_head(scene)
    body = head.note[: head.note.index(b"\n\n") + 1]
    now = int(time.time())
    other = Signer(scene.registry.signer.name, Ed25519PrivateKey.generate())
    with Watch(scene, [FLAGGED]):
        _forge_cosignatures(scene, other.cosign(body, now + 3600))
        wait_for(lambda: scene.incidents().get("bad_head"), timeout=3)
        assert _said(caplog, "carries no cosignature by")
        _stale(scene)
        cosigner = CosignerKey.of(scene.registry.signer.verifier)
        blob = cosigner.id + struct.pack(">Q", now + 3600) + os.urandom(64)
        line = f"\u2014 {cosigner.name} {base64.b64encode(blob).decode()}\n".encode()
        scene.registry.sql("UPDATE forged SET cosignature = :line", line=line)
        wait_for(lambda: True if scene.incidents().get("bad_head") == 2 else None, timeout=3)
        assert _said(caplog, "cosignature by", "does not verify")
        held = scene.restart()
        assert held.checkpoint.body() == body
        _stale(scene, timeout=1)
        assert scene.incidents()["bad_head"] == 1


def test_the_whole_database_restored_from_an_older_backup(
    scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server")
    backup = _backup(scene)
    with Watch(scene, [FLAGGED]) as watch:
        version = scene.flag_target()
        scene.becomes(TARGET, ("DENY", {"STRUCTURE_FLAGGED"}), timeout=3)
        watch.watch(TARGET)
        _restore(scene, backup)
        wait_for(lambda: scene.incidents().get("rollback"), timeout=3)
        _stale(scene)
        assert scene.answer(TARGET) == ("DENY", {"STRUCTURE_FLAGGED", *STALE})
        assert scene.incidents().get("database_altered")
        held = scene.restart()
        assert held.size == version
        assert scene.answer(TARGET) == ("REVIEW", UNVERIFIED)
        _stale(scene, timeout=1)
        assert scene.incidents().keys() >= {"rollback", "record_unverified"}
        assert _said(caplog, "1 structures have no record in the database", TARGET)


def test_the_sqlite_file_swapped_for_an_older_copy(
    sqlite_scene: Scene, caplog: pytest.LogCaptureFixture
) -> None:
    """Under the running gate, the file is replaced by a copy taken before TARGET's stop
    order. Whichever file the gate's connection reads, its head turns stale: the old one is
    no longer cosigned, the new one is a rollback."""
    scene = sqlite_scene
    caplog.set_level(logging.INFO, logger="server")
    path = Path(scene.registry.db.engine.url.database or "")
    older = path.with_name("older.db")
    with sqlite3.connect(path) as source, sqlite3.connect(older) as copy:
        source.backup(copy)
    with Watch(scene, [FLAGGED]) as watch:
        version = scene.flag_target()
        scene.becomes(TARGET, ("DENY", {"STRUCTURE_FLAGGED"}), timeout=3)
        watch.watch(TARGET)
        os.replace(older, path)
        for extra in ("-wal", "-shm"):
            Path(f"{path}{extra}").unlink(missing_ok=True)
        scene.registry.db.dispose()  # the registry (and its heartbeat) open the new file
        _stale(scene)
        assert scene.answer(TARGET) == ("DENY", {"STRUCTURE_FLAGGED", *STALE})
        wait_for(lambda: scene.incidents().get("stale"), timeout=1)  # rolled back, or frozen
        held = scene.restart()
        assert held.size == version
        assert scene.answer(TARGET) == ("REVIEW", UNVERIFIED)
        _stale(scene, timeout=1)
        assert scene.incidents().keys() >= {"rollback", "record_unverified"}


# --- freshness -------------------------------------------------------------------------------


def test_a_frozen_registry(scene: Scene, caplog: pytest.LogCaptureFixture) -> None:
    """Triggers drop every new head and cosignature; the registry goes on writing (a case on
    CLEAN, whose head is dropped). The gate's head gets no newer cosignature: stale."""
    caplog.set_level(logging.INFO, logger="server")
    with Watch(scene, [FLAGGED]):
        _freeze_heads(scene)
        assert scene.gate is not None
        held = cosigned_at(scene.gate)
        scene.registry.load([case("C-frozen", CLEAN, "reported")])
        _stale(scene)
        assert datetime.now(UTC) > held + timedelta(seconds=MAX_STALENESS)  # not before
        wait_for(lambda: scene.incidents().get("stale"), timeout=1)
        assert _said(caplog, "data stale", "more than 3 s ago")
        scene.restart()
        _stale(scene, timeout=1, clean=TARGET)
        # CLEAN's record in the database is the registry's newer one, which no head signs
        assert scene.answer(CLEAN) == ("REVIEW", UNVERIFIED)


def test_a_head_cosigned_long_ago(scene: Scene) -> None:
    """The registry stops cosigning, and a newer genuine head is signed with a cosignature an
    hour old: the gate adopts it (it is genuine and newer) and is stale at once."""
    scene.heartbeat.pause()
    newest = _newest_head(scene)
    with Watch(scene, [FLAGGED]):
        with scene.registry.db.session() as session:
            status_map = StatusMap(
                (sid, bytes(d))
                for sid, d in session.execute(
                    sa.text("SELECT structure_id, digest FROM status_record")
                )
            )
            session.add(
                sign_head(
                    scene.registry.signer,
                    origin=scene.registry.signer.name,
                    tree=CompactTree.from_state(newest.size, newest.tree_state),
                    status_map=status_map,
                    serial=newest.serial + 1,
                    now=datetime.now(UTC) - timedelta(hours=1),
                )
            )
        _stale(scene, timeout=3)
        assert scene.app.verifier.head.map.serial == newest.serial + 1
        assert scene.incidents() == {"stale": 1}
        held = scene.restart()
        assert held.map.serial == newest.serial + 1
        _stale(scene, timeout=1)


def test_a_poll_lost_after_the_head_was_adopted_leaves_no_old_record_under_it(
    sqlite_scene: Scene,
) -> None:
    """The snapshot's end fails (a connection dropped at commit) after the verifier adopted a
    newer head: the next poll must hand the cache that head's records, not the head alone."""
    app = sqlite_scene.app
    feed = app.follower._feed
    real = feed.snapshot
    armed = {"on": False, "fired": 0}

    @contextlib.contextmanager
    def snapshot() -> Iterator[object]:
        with real() as view:
            yield view
        if armed["on"]:
            armed["fired"] += 1
            raise FeedError("cannot read the registry database: connection lost at commit")

    feed.snapshot = snapshot
    verifier = app.verifier
    assert verifier.head is not None
    before = verifier.head.map.serial
    armed["on"] = True
    version = sqlite_scene.flag_target()
    wait_for(lambda: True if verifier.head and verifier.head.map.serial > before else None, 10)
    armed["on"] = False
    wait_for(lambda: True if app.cache.size == version else None, 10)
    assert armed["fired"] >= 1
    assert sqlite_scene.answer(TARGET)[0] != "ALLOW"
    assert sqlite_scene.answer(CLEAN)[0] == "ALLOW"


def test_a_held_head_the_registry_key_does_not_verify_is_refused_naming_what_to_do(
    tmp_path: Path,
) -> None:
    """A state directory holding a head signed by another key (the registry's key changed, or
    the directory was written by someone without it): both kinds of gate refuse to start from
    it, saying to move it aside; never a head believed without the key."""
    name = "permitgate.example/registry"
    ours = Signer(name, Ed25519PrivateKey.generate())
    theirs = Signer(name, Ed25519PrivateKey.generate())  # the same name, another key
    state = TrustedState(tmp_path / "state", "gate")
    try:
        state.save(signed_head(theirs, {"S-1": bytes(32)}, size=3).note)
        with pytest.raises(GateStateError, match=r"does not verify .*move .* aside"):
            held_head(state, ours.verifier)
        assert held_head(state, theirs.verifier) is not None
    finally:
        state.close()
