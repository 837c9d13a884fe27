"""Notifications to the working group (Art. 13) recorded by a real gate: one per office and
application id, kept in the registry database (so they survive a restart and are shared by
gates), and listed by ``permitgate registry notifications``.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
import pytest
from click.testing import CliRunner
from gate_helpers import (
    GateRegistry,
    Wire,
    batch_check,
    codes,
    connection,
    premises,
    running_gate,
    start_gate,
    verdict,
)
from permitgate_client.v1 import gate_pb2 as pb

from permitgate.cli import main
from registry.demo import SCENARIOS, demo_lines, structure_id

OK = structure_id(0)  # every permit in force, use "residential"
REVOKED = structure_id(1)  # construction planning permit revoked, no property certificate
TAX, CULTURE = pb.OFFICE_TAX, pb.OFFICE_CULTURE


@pytest.fixture
def registry(db_url: str, keys_dir: Path) -> Iterator[GateRegistry]:
    reg = GateRegistry(db_url, keys_dir)
    reg.load(demo_lines(len(SCENARIOS)))
    try:
        yield reg
    finally:
        reg.close()


@pytest.fixture
def sqlite_registry(tmp_path: Path) -> Iterator[GateRegistry]:
    reg = GateRegistry(f"sqlite:///{tmp_path / 'registry.db'}", tmp_path / "keys")
    reg.load(demo_lines(len(SCENARIOS)))
    try:
        yield reg
    finally:
        reg.close()


@contextmanager
def write_locked(registry: GateRegistry) -> Iterator[threading.Event]:
    """The registry's write lock held by another thread (as an import holds it) until the
    event yielded is set, or the block ends."""
    release = threading.Event()
    locked = threading.Event()

    def hold_lock() -> None:
        with registry.db.writer():
            locked.set()
            release.wait(10)

    holder = threading.Thread(target=hold_lock)
    holder.start()
    try:
        assert locked.wait(5)
        yield release
    finally:
        release.set()
        holder.join(10)


def _notify(
    wire: Wire, office: int, application_id: str, sid: str = REVOKED, use: str = "residential"
) -> str:
    decision = wire.ask(premises(sid, office, use, application_id=application_id))
    assert verdict(decision) == "NOTIFY", decision
    assert decision.notification_id
    return decision.notification_id


def _rows(registry: GateRegistry) -> list[tuple[str, str, str, str | None, list[str]]]:
    return [
        (str(i), str(s), str(o), a, [r["code"] for r in json.loads(reasons)])
        for i, s, o, a, reasons in registry.sql(
            "SELECT id, structure_id, office, application_id, reasons FROM notification ORDER BY id"
        )
    ]


def test_same_application_and_office_gives_the_same_notification(
    sqlite_registry: GateRegistry,
) -> None:
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        first = _notify(wire, TAX, "APP-1")
        assert _notify(wire, TAX, "APP-1") == first
        other_office = _notify(wire, CULTURE, "APP-1")
        other_application = _notify(wire, TAX, "APP-2")
    assert len({first, other_office, other_application}) == 3
    rows = _rows(sqlite_registry)
    assert sorted(r[0] for r in rows) == sorted([first, other_office, other_application])
    by_id = {r[0]: r for r in rows}
    assert by_id[first][1:4] == (REVOKED, "tax", "APP-1")
    assert by_id[other_office][1:4] == (REVOKED, "culture", "APP-1")
    assert sorted(by_id[first][4]) == ["MISSING_PERMIT", "PERMIT_REVOKED"]


def test_notification_survives_a_gate_restart(registry: GateRegistry) -> None:
    """The second gate has no memory of the first: the id comes from the database."""
    with running_gate(registry.url, registry.keys_dir) as gate, Wire(gate.target) as wire:
        first = _notify(wire, TAX, "APP-9")
        culture = _notify(wire, CULTURE, "APP-9")
    with running_gate(registry.url, registry.keys_dir) as gate, Wire(gate.target) as wire:
        assert _notify(wire, TAX, "APP-9") == first
        assert _notify(wire, CULTURE, "APP-9") == culture
        assert _notify(wire, TAX, "APP-10") not in {first, culture}
    assert len(_rows(registry)) == 3


def test_two_gates_at_once_record_one_notification(registry: GateRegistry) -> None:
    """Two gates on one registry asked about the same application at the same moment."""
    gates = [start_gate(registry.url, registry.keys_dir) for _ in range(2)]
    try:
        answers: list[str] = []
        start = threading.Barrier(len(gates))

        def ask(target: str) -> None:
            with Wire(target) as wire:
                start.wait(5)
                answers.append(_notify(wire, TAX, "APP-RACE"))

        threads = [threading.Thread(target=ask, args=(g.target,)) for g in gates]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert len(answers) == 2 and answers[0] == answers[1]
    finally:
        for gate in gates:
            gate.stop()
    assert [r[0] for r in _rows(registry)] == answers[:1]


def test_allow_records_no_notification(sqlite_registry: GateRegistry) -> None:
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        decision = wire.ask(premises(OK, TAX, "Residential", application_id="APP-OK"))
        assert verdict(decision) == "ALLOW" and not decision.notification_id
        blocked = wire.ask(premises(REVOKED, pb.OFFICE_FIRE, "residential", application_id="F"))
        assert verdict(blocked) == "DENY" and not blocked.notification_id
    assert _rows(sqlite_registry) == []


def test_unknown_structure_notifies(sqlite_registry: GateRegistry) -> None:
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        decision = wire.ask(premises("nowhere-7", CULTURE, "bar", application_id="APP-U"))
    assert verdict(decision) == "NOTIFY" and codes(decision) == {"NOT_IN_REGISTRY"}
    assert _rows(sqlite_registry) == [
        (decision.notification_id, "nowhere-7", "culture", "APP-U", ["NOT_IN_REGISTRY"])
    ]


def test_cli_lists_the_notifications(sqlite_registry: GateRegistry) -> None:
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        ids = {
            _notify(wire, TAX, "APP-1"),
            _notify(wire, TAX, "APP-1"),
            _notify(wire, CULTURE, "APP-1"),
            _notify(wire, pb.OFFICE_HEALTH, "APP-3", sid=OK, use="clinic"),
        }
    runner = CliRunner()
    listed = runner.invoke(main, ["registry", "notifications", "--db", sqlite_registry.url])
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert len(lines) == 3
    assert {line.split()[0] for line in lines} == ids
    as_json = runner.invoke(
        main, ["registry", "notifications", "--db", sqlite_registry.url, "--json"]
    )
    assert as_json.exit_code == 0, as_json.output
    notices = [json.loads(line) for line in as_json.stdout.splitlines()]
    assert {n["id"] for n in notices} == ids
    assert {(n["office"], n["application_id"]) for n in notices} == {
        ("tax", "APP-1"),
        ("culture", "APP-1"),
        ("health", "APP-3"),
    }
    assert all(n["reasons"] and n["structure_id"] in {OK, REVOKED} for n in notices)


def test_notify_while_the_registry_is_write_locked(sqlite_registry: GateRegistry) -> None:
    """An import holds the registry's write lock: answers from the cache are not held up, a
    NOTIFY (which must write its notification) honours the caller's deadline, and the notice
    it recorded once the lock was released is the one a retry gets."""
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        with write_locked(sqlite_registry):
            started = time.monotonic()
            assert verdict(wire.ask(premises(OK, pb.OFFICE_FIRE, "residential"))) == "ALLOW"
            assert time.monotonic() - started < 0.5
            check = premises(REVOKED, TAX, "residential", application_id="APP-LOCK")
            with pytest.raises(grpc.RpcError) as info:
                wire.ask(check, timeout=0.3)
            assert isinstance(info.value, grpc.Call)
            assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
            assert time.monotonic() - started < 2
        notice = wire.ask(check).notification_id
    assert notice and [r[0] for r in _rows(sqlite_registry)] == [notice]


def test_notice_that_cannot_be_recorded_is_unavailable_not_a_leak(
    sqlite_registry: GateRegistry,
) -> None:
    """When the notice cannot be written, the office gets UNAVAILABLE in plain words (no SQL),
    nothing claims a notification id, and the rest of a batch is still answered."""
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        sqlite_registry.sql("ALTER TABLE notification RENAME TO notification_gone")
        with pytest.raises(grpc.RpcError) as caught:
            wire.ask(premises(REVOKED, pb.OFFICE_TAX, "residential", application_id="A-lost"))
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert caught.value.details() == (
            "the notification to the working group could not be recorded; try again"
        )
        [batch] = wire.batches(
            [
                pb.CheckBatch(
                    checks=[
                        batch_check(
                            "n",
                            premises(REVOKED, pb.OFFICE_TAX, "residential", application_id="A-2"),
                        ),
                        batch_check("c", connection(REVOKED)),
                    ]
                )
            ]
        )
        lost, answered = batch.decisions
        assert lost.error == (
            "checks[0]: the notification to the working group could not be recorded; try again"
        )
        assert not lost.notification_id and lost.verdict == pb.VERDICT_UNSPECIFIED
        assert answered.verdict == pb.VERDICT_DENY and not answered.error
        sqlite_registry.sql("ALTER TABLE notification_gone RENAME TO notification")
        assert _notify(wire, pb.OFFICE_TAX, "A-lost")


def test_same_application_about_another_structure_is_another_notice(
    sqlite_registry: GateRegistry,
) -> None:
    """An application id reused for other premises must not hide the second notice."""
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
    ):
        first = _notify(wire, TAX, "A-9", sid=REVOKED)
        second = _notify(wire, TAX, "A-9", sid="nowhere-0001")
        assert first != second
        assert _notify(wire, TAX, "A-9", sid="nowhere-0001") == second
        assert sorted(r[1] for r in _rows(sqlite_registry)) == sorted([REVOKED, "nowhere-0001"])


def test_checks_after_a_notify_in_a_batch_are_decided_at_a_fresh_moment(
    sqlite_registry: GateRegistry,
) -> None:
    """A NOTIFY in a batch waits for its notice to be written (here: behind an import's write
    lock); the checks after it are decided by the clock after that wait, not the batch's start,
    so a head or a permit that lapsed meanwhile is not taken as current."""
    batch = pb.CheckBatch(
        checks=[
            batch_check("before", connection(OK)),
            batch_check("notify", premises(REVOKED, TAX, "residential", application_id="APP-B")),
            batch_check("after", connection(OK)),
        ]
    )
    with (
        running_gate(sqlite_registry.url, sqlite_registry.keys_dir) as gate,
        Wire(gate.target) as wire,
        write_locked(sqlite_registry) as release,
    ):
        replies = wire.stub.BatchCheck(iter([batch]), timeout=10)
        time.sleep(1.0)  # the batch waits on the lock meanwhile
        released_at = time.time()
        release.set()
        [reply] = list(replies)
    before, notify, after = reply.decisions
    assert [verdict(d) for d in reply.decisions] == ["ALLOW", "NOTIFY", "ALLOW"]
    assert before.decided_at.ToDatetime().timestamp() < released_at - 0.5
    assert after.decided_at.ToDatetime().timestamp() >= released_at - 0.05
    assert notify.notification_id
