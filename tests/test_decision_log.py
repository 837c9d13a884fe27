"""The decision log never jams and never loses an answer silently, on both backends.

* The store writes every record it can: a record it refuses (NUL in a text column on
  PostgreSQL, a decision id stored already) is set aside (counted, logged with the reason,
  appended to ``refused.jsonl``) and the records around it are written.
* A store that cannot be written at all keeps the whole batch, and writes nothing of it.
* Records still unwritten at shutdown are kept in ``unwritten.jsonl`` and written first by the
  next start; the log says so at both ends.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from gate_helpers import GateRegistry, Wire, connection, start_gate, urban_ok, wait_for
from sqlalchemy import select

from registry.decisions import DecisionRecord, SqlDecisionStore, StoreUnavailable
from registry.storage import Database, DecisionRow
from server.checks import ConnectionRequest
from server.decision_log import REFUSED_FILE, UNWRITTEN_FILE

NUL_ID = "S-1\x00; DROP"


def _record(decision_id: str, structure_id: str = "S-1") -> DecisionRecord:
    return DecisionRecord(
        decision_id=decision_id,
        decided_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        caller="ipv4:127.0.0.1:4000",
        check_type="connection",
        structure_id=structure_id,
        request='{"type":"connection"}',
        verdict="ALLOW",
        reasons="[]",
        registry_version=7,
        notification_id=None,
    )


def _stored(registry: GateRegistry) -> dict[str, str]:
    return {
        str(d): str(s)
        for d, s in registry.sql("SELECT decision_id, structure_id FROM decision_log")
    }


def _lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text("utf-8").splitlines()]


# --- the store -----------------------------------------------------------------------------------


def test_store_writes_what_it_can_and_returns_what_it_refuses(db_url: str, keys_dir: Path) -> None:
    registry = GateRegistry(db_url, keys_dir)
    try:
        registry.sql(
            "INSERT INTO decision_log (decision_id, decided_at, caller, check_type, "
            "structure_id, request, verdict, reasons, registry_version) VALUES "
            "('D-old', :t, 'c', 'connection', 'S-0', '{}', 'ALLOW', '[]', 1)",
            t=datetime(2026, 1, 1, tzinfo=UTC),
        )
        store = SqlDecisionStore(registry.db)
        batch = [
            _record("D-1"),
            _record("D-2", NUL_ID),
            _record("D-3"),
            _record("D-old"),  # stored already
            _record("D-1"),  # twice in the batch: the second is refused
            _record("D-4"),
        ]
        refused = store.write(batch)
        postgres = registry.db.dialect == "postgresql"
        expected_refused = ["D-2", "D-old", "D-1"] if postgres else ["D-old", "D-1"]
        assert sorted(r.record.decision_id for r in refused) == sorted(expected_refused)
        assert all(r.reason for r in refused)
        if postgres:
            [nul] = [r for r in refused if r.record.structure_id == NUL_ID]
            assert "NUL" in nul.reason
        stored = _stored(registry)
        written = (
            {"D-old", "D-1", "D-3", "D-4"} if postgres else {"D-old", "D-1", "D-2", "D-3", "D-4"}
        )
        assert set(stored) == written
        assert stored["D-old"] == "S-0"  # the stored row was not replaced
        assert store.write([]) == []
    finally:
        registry.close()


def test_store_that_cannot_be_written_writes_nothing_of_the_batch(
    db_url: str, keys_dir: Path
) -> None:
    registry = GateRegistry(db_url, keys_dir)
    try:
        store = SqlDecisionStore(registry.db)
        registry.sql("ALTER TABLE decision_log RENAME TO decision_log_away")
        with pytest.raises(StoreUnavailable, match="decision_log"):
            store.write([_record("D-1"), _record("D-2", NUL_ID)])
        registry.sql("ALTER TABLE decision_log_away RENAME TO decision_log")
        assert _stored(registry) == {}
    finally:
        registry.close()


def test_store_on_an_unreachable_database_is_unavailable() -> None:
    db = Database("postgresql://postgres@127.0.0.1:1/nothing")  # nothing listens on port 1
    try:
        with pytest.raises(StoreUnavailable, match=r"(?i)connect"):
            SqlDecisionStore(db).write([_record("D-1")])
    finally:
        db.dispose()


def test_record_json_round_trip_and_errors() -> None:
    record = _record("D-1", NUL_ID)
    assert DecisionRecord.from_json(json.loads(json.dumps(record.to_json()))) == record
    with pytest.raises(ValueError, match="registry_version"):
        DecisionRecord.from_json({**record.to_json(), "registry_version": "7"})
    with pytest.raises(ValueError, match="caller"):
        DecisionRecord.from_json({k: v for k, v in record.to_json().items() if k != "caller"})


# --- the log on a running gate -------------------------------------------------------------------


def test_refused_entry_is_set_aside_and_the_log_keeps_flowing(
    db_url: str, keys_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Entries appended straight to the gate's decision log, a NUL structure id and a duplicate
    decision id between good ones: the good ones are written, the refused ones are in the file,
    and answers given afterwards are written as usual."""
    caplog.set_level(logging.INFO, logger="server.decision_log")
    registry = GateRegistry(db_url, keys_dir)
    registry.load(urban_ok("S-1"))
    state = tmp_path / "state"
    gate = start_gate(db_url, keys_dir, state_dir=state)
    try:
        log = gate.app.gate.decision_log
        request = ConnectionRequest.from_wire(connection("S-1"), datetime.now(UTC))

        async def scenario() -> list[str]:
            first = await gate.app.gate.answer(request, caller="test")
            nul = dataclasses.replace(request, structure_id=NUL_ID)
            log.append((nul, "test", dataclasses.replace(first, decision_id="D-nul")))
            second = await gate.app.gate.answer(request, caller="test")
            log.append((request, "test", first))  # the same decision id again
            third = await gate.app.gate.answer(request, caller="test")
            await log.flush()
            return [first.decision_id, second.decision_id, third.decision_id]

        good = gate.run(scenario())
        postgres = registry.db.dialect == "postgresql"
        stored = _stored(registry)
        assert set(good) <= set(stored)
        assert ("D-nul" in stored) is not postgres  # SQLite stores NUL; PostgreSQL cannot
        refused = _lines(state / REFUSED_FILE)
        assert [line["decision"]["decision_id"] for line in refused] == (  # type: ignore[index]
            ["D-nul", good[0]] if postgres else [good[0]]
        )
        assert all(line["reason"] and line["refused_at"] for line in refused)
        assert log.refused == len(refused)
        if postgres:
            assert refused[0]["decision"]["structure_id"] == NUL_ID  # type: ignore[index]
        for line in refused:  # each logged once, with the reason
            decision_id = line["decision"]["decision_id"]  # type: ignore[index]
            said = [m for m in caplog.messages if f"refused decision {decision_id} " in m]
            assert said == [
                f"decision log: the store refused decision {decision_id} "
                f"({line['reason']}); set aside in {state / REFUSED_FILE}"
            ]
        with Wire(gate.target) as wire:
            later = wire.ask(connection("S-1"))
        wait_for(lambda: True if later.decision_id in _stored(registry) else None, timeout=5)
        # The row is visible before the flush that wrote it returns to the loop and clears it.
        wait_for(lambda: True if log.waiting == 0 else None, timeout=5)
        assert not log.full
    finally:
        gate.stop()
        registry.close()


def test_unwritten_at_shutdown_are_kept_and_written_by_the_next_start(
    db_url: str, keys_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.decision_log")
    registry = GateRegistry(db_url, keys_dir)
    registry.load(urban_ok("S-1"))
    state = tmp_path / "state"
    try:
        gate = start_gate(db_url, keys_dir, state_dir=state)
        try:
            registry.sql(
                "ALTER TABLE decision_log RENAME TO decision_log_away"
            )  # the store is down
            with Wire(gate.target) as wire:
                decisions = [wire.ask(connection("S-1")) for _ in range(3)]
            answered = [d.decision_id for d in decisions]
        finally:
            gate.stop()
        kept = _lines(state / UNWRITTEN_FILE)
        assert [line["decision_id"] for line in kept] == answered
        assert any(
            m.startswith("decision log: 3 answers could not be written (")
            and m.endswith(f"kept in {state / UNWRITTEN_FILE}, which the next start writes first")
            for m in caplog.messages
        ), caplog.messages

        registry.sql("ALTER TABLE decision_log_away RENAME TO decision_log")
        assert _stored(registry) == {}
        caplog.clear()
        gate = start_gate(db_url, keys_dir, state_dir=state)
        try:
            kept_file = state / UNWRITTEN_FILE
            assert (
                f"decision log: 3 answers left unwritten by an earlier run ({kept_file}) are "
                "written before any new one"
            ) in caplog.messages
            wait_for(lambda: True if set(answered) <= set(_stored(registry)) else None, timeout=5)
            wait_for(lambda: True if not (state / UNWRITTEN_FILE).exists() else None, timeout=5)
            assert (
                f"decision log: wrote the 3 answers kept by an earlier run; removed "
                f"{state / UNWRITTEN_FILE}"
            ) in caplog.messages
        finally:
            gate.stop()
        assert not (state / REFUSED_FILE).exists()
        with registry.db.session() as session:  # times survive the file to the microsecond
            rows = session.execute(select(DecisionRow.decision_id, DecisionRow.decided_at))
            stored_times = {decision_id: at for decision_id, at in rows}
        assert stored_times == {
            d.decision_id: d.decided_at.ToDatetime(tzinfo=UTC) for d in decisions
        }
    finally:
        registry.close()


def test_a_long_outage_converts_each_entry_once_backs_off_and_writes_all_when_back(
    pg_url: str, keys_dir: Path, tmp_path: Path
) -> None:
    """The store is down for 3 s (its table renamed) while 2,000 answers wait: each entry is
    converted once however many flushes fail, the flusher backs off (every 0.5 s it would fail 6
    times), and once the table is back every answer is written, nothing twice."""
    registry = GateRegistry(pg_url, keys_dir)
    registry.load(urban_ok("S-1"))
    gate = start_gate(pg_url, keys_dir, state_dir=tmp_path / "state")
    try:
        log = gate.app.gate.decision_log
        request = ConnectionRequest.from_wire(connection("S-1"), datetime.now(UTC))
        registry.sql("ALTER TABLE decision_log RENAME TO decision_log_away")

        async def answer_many(count: int) -> list[str]:
            return [
                (await gate.app.gate.answer(request, caller="test")).decision_id
                for _ in range(count)
            ]

        answered = gate.run(answer_many(2_000))
        wait_for(lambda: True if log.failures >= 1 else None, timeout=5)
        outage = time.monotonic()
        time.sleep(3.0)
        failed = log.failures
        assert 2 <= failed <= 4, f"{failed} failed flushes in 3 s"
        assert log.converted == len(answered) and log.waiting == len(answered)
        registry.sql("ALTER TABLE decision_log_away RENAME TO decision_log")
        wait_for(lambda: True if log.waiting == 0 else None, timeout=15)
        back = time.monotonic() - outage
        assert (log.written, log.refused) == (len(answered), 0)
        assert _stored(registry).keys() == set(answered)
        assert log.converted == len(answered) and log.written == len(answered)
        assert log.failures == 0
        assert back < 3.0 + 8.0 + 1.0  # within the capped backoff of the table's return
    finally:
        gate.stop()
        registry.close()
