"""Attacks on department writes by someone who can write the database (or holds a certificate)
but not a department's current key, on SQLite and PostgreSQL, through the real service."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from department_support import S1, S2, World, make_world
from google.protobuf import json_format
from permitgate_client._statements import DepartmentKey
from sqlalchemy import select

from registry.admin import STATE_NAME
from registry.audit import audit_registry
from registry.demo_pki import make_demo_pki
from registry.department_keys import revoke_department, rotate_department_key
from registry.log import encode_event, write_digest
from registry.notifications import record_notification
from registry.signing import load_verifier
from registry.storage import ReferralRow, WriteRow
from registry.trusted_state import TrustedState
from registry.workdays import CITY_TZ, WorkCalendar, YearCalendar
from registry.writer import open_writer


@pytest.fixture
def world(db_url: str, tmp_path: Path) -> Iterator[World]:
    world = make_world(db_url, tmp_path)
    world.start()
    try:
        yield world
    finally:
        world.stop()


def case_write(cid: str) -> dict[str, object]:
    return {
        "case": {
            "id": cid,
            "structure": S2,
            "kind": "no_planning_permit",
            "stage": "filed",
            "source": "patrol",
            "opened": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }


def verify(world: World) -> list[str]:
    report = audit_registry(world.registry.db, load_verifier(world.registry.keys_dir, "registry"))
    return report.problems


def rpc(call: object) -> tuple[grpc.StatusCode, str]:
    assert isinstance(call, grpc.Call)
    return call.code(), call.details() or ""


def test_a_key_written_into_the_database_is_not_believed(world: World) -> None:
    rogue = DepartmentKey.generate("city-enforcement")
    world.registry.sql(
        "INSERT INTO registry_meta (key, value) VALUES ('department:city-enforcement', :v)",
        v=rogue.verifier.text,
    )
    before = world.counts()
    code, details = world.refused("city-enforcement", "open_case", case_write("C-x"), key=rogue)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert "does not verify with city-enforcement's current key" in details
    assert world.counts() == before


def test_an_unenrolled_department_with_a_certificate_is_refused(world: World) -> None:
    from registry.demo_pki import issue_client_certificate

    issue_client_certificate(world.pki, "rogue-office")
    world.keys["rogue-office"] = DepartmentKey.generate("rogue-office")
    code, details = world.refused("rogue-office", "open_case", case_write("C-x"))
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'rogue-office'" in details and "not enrolled" in details


def test_a_statement_of_a_sent_with_bs_certificate(world: World) -> None:
    envelope = world.statement("city-enforcement", "open_case", case_write("C-x"))
    before = world.counts()
    with pytest.raises(grpc.RpcError) as info:
        world.send(envelope, "open_case", as_="city-planning")
    code, details = rpc(info.value)
    assert code == grpc.StatusCode.PERMISSION_DENIED
    assert "'city-planning'" in details and "'city-enforcement'" in details
    assert world.counts() == before


def test_a_statement_signed_with_another_departments_key(world: World) -> None:
    planning = world.keys["city-planning"]
    forged = DepartmentKey("city-enforcement", planning._key)  # planning's key, enforcement's name
    code, details = world.refused("city-enforcement", "open_case", case_write("C-x"), key=forged)
    assert code == grpc.StatusCode.UNAUTHENTICATED and "signature does not verify" in details


def test_a_certificate_from_another_ca(world: World, tmp_path: Path) -> None:
    other = make_demo_pki(tmp_path / "other-pki", ["city-enforcement"], ca_name="another CA")
    envelope = world.statement("city-enforcement", "open_case", case_write("C-x"))
    before = world.counts()
    with pytest.raises(grpc.RpcError) as info:
        world.send(envelope, "open_case", as_="city-enforcement", pki=other)
    assert rpc(info.value)[0] == grpc.StatusCode.UNAVAILABLE  # the handshake fails
    assert world.counts() == before


def test_no_certificate_and_no_tls(world: World) -> None:
    envelope = world.statement("city-enforcement", "open_case", case_write("C-x"))
    assert world.app is not None
    with grpc.insecure_channel(world.app.address) as channel:
        from permitgate_client.v1 import registry_pb2 as pb
        from permitgate_client.v1 import registry_pb2_grpc

        stub = registry_pb2_grpc.RegistryStub(channel)  # type: ignore[no-untyped-call]
        with pytest.raises(grpc.RpcError) as info:
            stub.OpenCase(pb.SignedWrite(statement=envelope), timeout=10)
    code, details = rpc(info.value)
    assert code == grpc.StatusCode.UNAUTHENTICATED
    assert f"need mutual TLS: call {world.app.departments_address}" in details


def test_a_revoked_key_is_refused_and_earlier_writes_still_verify(world: World) -> None:
    world.write("city-enforcement", "open_case", case_write("C-before"))
    revoke_department(
        world.registry.db,
        world.registry.signer,
        world.state_dir,
        department_id="city-enforcement",
        reason="key lost",
    )
    code, details = world.refused("city-enforcement", "open_case", case_write("C-after"))
    assert code == grpc.StatusCode.PERMISSION_DENIED and "revoked" in details
    assert verify(world) == []


def test_a_rotated_key(world: World) -> None:
    old = world.keys["city-enforcement"]
    world.write("city-enforcement", "open_case", case_write("C-old-key"))
    new = DepartmentKey.generate("city-enforcement")
    rotate_department_key(
        world.registry.db,
        world.registry.signer,
        world.state_dir,
        department_id="city-enforcement",
        key=new.verifier,
    )
    code, details = world.refused("city-enforcement", "open_case", case_write("C-x"), key=old)
    assert code == grpc.StatusCode.UNAUTHENTICATED and new.verifier.keyid_text in details
    world.write("city-enforcement", "open_case", case_write("C-new-key"), key=new)
    assert verify(world) == []


def test_a_replayed_statement_gives_the_stored_result(world: World) -> None:
    envelope = world.statement("city-enforcement", "open_case", case_write("C-once"))
    first = world.send(envelope, "open_case", as_="city-enforcement")
    before = world.counts()
    again = world.send(envelope, "open_case", as_="city-enforcement")
    assert again.replayed and again.seq == first.seq
    assert world.counts() == before


def test_a_statement_altered_in_the_log_is_caught(world: World) -> None:
    result = world.write("city-enforcement", "open_case", case_write("C-alter"))
    [(body,)] = world.registry.sql("SELECT body FROM event WHERE seq = :s", s=result.seq)
    event = json.loads(bytes(body))
    forger = DepartmentKey.generate("city-enforcement")
    statement = forger.statement("open_case", case_write("C-alter"), request_id="forged")
    event["statement"] = json.loads(forger.sign(statement))
    forged = encode_event(event["seq"], event["at"], event["record"], statement=event["statement"])
    world.registry.sql("UPDATE event SET body = :b WHERE seq = :s", b=forged, s=result.seq)
    problems = verify(world)
    assert any(p.startswith(f"event {result.seq}: statement") for p in problems), problems


def test_an_event_inserted_claiming_a_department_wrote_it_is_caught(world: World) -> None:
    size = world.registry.version()
    forger = DepartmentKey.generate("city-planning")
    statement = forger.statement(
        "refer_case", {"case": "C-1", "to": "city-planning"}, request_id="forged"
    )
    body = encode_event(size, "2026-11-30T00:00:00Z", statement=json.loads(forger.sign(statement)))
    world.registry.sql(
        "INSERT INTO event (seq, structure_id, body) VALUES (:s, :i, :b)", s=size, i=S2, b=body
    )
    problems = verify(world)
    assert any(p.startswith(f"event {size}: statement") for p in problems), problems
    assert any("added" in p for p in problems), problems


def test_serve_with_departments_mutual_tls(db_url: str, tmp_path: Path) -> None:
    """``permitgate registry serve --tls-cert --tls-key --client-ca``: department calls on
    their own mutual-TLS port, named in the start line; a write goes through and the service
    stops cleanly."""
    import os
    import re
    import signal
    import subprocess
    import sys

    from gate_helpers import stderr_lines, wait_for

    world = make_world(db_url, tmp_path)
    permitgate = str(Path(sys.executable).with_name("permitgate"))
    process = subprocess.Popen(
        [
            permitgate,
            "registry",
            "serve",
            "--db",
            world.registry.url,
            "--keys",
            str(world.registry.keys_dir),
            "--listen",
            "127.0.0.1:0",
            "--departments-listen",
            "127.0.0.1:0",
            "--heartbeat",
            "0.5",
            "--tls-cert",
            str(world.pki.server_cert),
            "--tls-key",
            str(world.pki.server_key),
            "--client-ca",
            str(world.pki.ca),
        ],
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    lines, reader = stderr_lines(process)
    try:
        line = lines.get(timeout=20)
        match = re.search(r"department calls on (127\.0\.0\.1:\d+) \(mutual TLS\)$", line.strip())
        assert match, line
        address = match.group(1)

        class Started:
            departments_address = address

        world.app = Started()  # type: ignore[assignment]
        envelope = world.statement("city-enforcement", "open_case", case_write("C-served"))

        def written() -> bool | None:
            try:
                return (
                    world.send(envelope, "open_case", as_="city-enforcement").case.id == "C-served"
                    or None
                )
            except grpc.RpcError as exc:
                assert isinstance(exc, grpc.Call)
                if exc.code() != grpc.StatusCode.UNAVAILABLE:  # (still loading)
                    raise
                return None

        wait_for(written, timeout=20)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        world.app = None
        if process.poll() is None:
            process.kill()
            process.wait()
    reader.join(5)
    assert world.registry.sql("SELECT count(*) FROM violation_case WHERE id = 'C-served'") == [(1,)]


# --- what the database says is believed only where the registry's state agrees ----------------


def test_a_write_row_put_into_the_database_is_not_answered_as_done(world: World) -> None:
    """A database writer puts a ``department_write`` row under a department's next request id:
    the write is refused as the database disagreeing with the registry's state, not answered
    ``replayed`` while nothing was done."""
    write = {"case": "C-1", "stage": "stop_order"}
    with world.registry.db.session() as session:
        session.add(
            WriteRow(
                department="city-planning",
                request_id="r-next",
                action="move_case",
                digest=write_digest("move_case", write),
                seq=1,
                written_at=datetime.now(UTC),
                result=json.dumps({"department": "city-planning", "seq": "1"}),
            )
        )
    before = world.counts()
    code, details = world.refused("city-planning", "move_case", write, request_id="r-next")
    assert code == grpc.StatusCode.DATA_LOSS, details
    assert "department_write row city-planning/r-next" in details
    assert "disagrees with the registry's state" in details
    assert world.counts() == before


@pytest.mark.parametrize("damage", ["deleted", "result", "seq"])
def test_a_stored_write_changed_in_the_database_is_not_answered(world: World, damage: str) -> None:
    """A retry of a stored write whose row was deleted, or whose result or event was changed,
    is refused (the registry's state holds the write's digest, event and result digest)."""
    envelope = world.statement("city-enforcement", "open_case", case_write("C-row"))
    first = world.send(envelope, "open_case", as_="city-enforcement")
    [(request_id,)] = world.registry.sql(
        "SELECT request_id FROM department_write WHERE seq = :s", s=first.seq
    )
    where = "department = 'city-enforcement' AND request_id = :r"
    if damage == "deleted":
        world.registry.sql(f"DELETE FROM department_write WHERE {where}", r=request_id)
    elif damage == "result":
        forged = first.__class__()
        forged.CopyFrom(first)
        forged.registry_version += 7
        world.registry.sql(
            f"UPDATE department_write SET result = :j WHERE {where}",
            j=json_format.MessageToJson(forged, indent=None),
            r=request_id,
        )
    else:
        world.registry.sql(f"UPDATE department_write SET seq = 0 WHERE {where}", r=request_id)
    try:
        world.send(envelope, "open_case", as_="city-enforcement")
    except grpc.RpcError as exc:
        code, details = rpc(exc)
        assert code == grpc.StatusCode.DATA_LOSS, details
        assert f"department_write row city-enforcement/{request_id}" in details
    else:
        raise AssertionError(f"a retry over a {damage} row was answered")


@pytest.mark.parametrize("how", ["rebuilt", "caught_up"])
def test_the_write_index_comes_back_from_the_log(world: World, how: str) -> None:
    """The state's index of writes is rebuilt from the statement events: from an empty state
    (rebuilt after the full check), and from a state one head behind (a head another writer
    signed, adopted). A retry is then a replay, and a row put into the database still is not."""
    saved = world.scratch / "state-before"
    if how == "caught_up":
        world.stop()
        shutil.copytree(world.state_dir, saved)
        world.start()
    envelope = world.statement("city-enforcement", "open_case", case_write("C-idx"))
    first = world.send(envelope, "open_case", as_="city-enforcement")
    world.stop()
    shutil.rmtree(world.state_dir)
    if how == "caught_up":
        shutil.copytree(saved, world.state_dir)
    with open_writer(world.registry.db, world.registry.signer, world.state_dir):
        pass  # rebuilds the state, or adopts the head it lacks
    world.start()
    again = world.send(envelope, "open_case", as_="city-enforcement")
    assert again.replayed and again.seq == first.seq
    state = TrustedState(world.state_dir, STATE_NAME)
    try:
        [(request_id,)] = world.registry.sql(
            "SELECT request_id FROM department_write WHERE seq = :s", s=first.seq
        )
        held = state.written("city-enforcement", request_id)
    finally:
        state.close()
    assert held is not None and held[3] == first.seq and held[4] is None, held
    write = {"case": "C-idx", "stage": "dismissed"}
    world.registry.sql(
        "INSERT INTO department_write (department, request_id, action, digest, seq, "
        "written_at, result) VALUES ('city-planning', 'r-forged', 'move_case', :d, :s, :w, '{}')",
        d=write_digest("move_case", write),
        s=first.seq,
        w=datetime.now(UTC),
    )
    code, details = world.refused("city-planning", "move_case", write, request_id="r-forged")
    assert code == grpc.StatusCode.DATA_LOSS, details


def test_a_case_row_deleted_does_not_let_its_id_be_opened_again(world: World) -> None:
    """C-1 (planning's, filed: blocking) is in S1's signed record. Its table row is deleted;
    enforcement 'opens' a case C-1 on S1, dismissed. Refused as the database damaged; the
    signed record keeps planning's case."""
    world.registry.sql("DELETE FROM violation_case WHERE id = 'C-1'")
    signed = "SELECT envelope FROM status_record WHERE structure_id = :s"
    before = world.registry.sql(signed, s=S1)
    write = {
        "case": {
            "id": "C-1",
            "structure": S1,
            "kind": "no_planning_permit",
            "stage": "dismissed",
            "source": "patrol",
            "opened": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    }
    code, details = world.refused("city-enforcement", "open_case", write)
    assert code == grpc.StatusCode.DATA_LOSS, details
    assert "write.case.id" in details and "signed record of" in details
    assert world.registry.sql(signed, s=S1) == before


def test_a_case_opened_again_in_the_log_is_named_by_verify(world: World) -> None:
    """An event that opens, by a department's statement, a case the structure's state already
    holds is named by ``registry verify``."""
    size = world.registry.version()
    write = case_write("C-1")
    write["case"]["structure"] = S1  # type: ignore[index]
    statement = world.keys["city-enforcement"].statement("open_case", write, request_id="again")
    body = encode_event(
        size,
        "2026-11-30T00:00:00Z",
        {"type": "case", **write["case"]},  # type: ignore[dict-item]
        statement=json.loads(world.keys["city-enforcement"].sign(statement)),
    )
    world.registry.sql(
        "INSERT INTO event (seq, structure_id, body) VALUES (:s, :i, :b)", s=size, i=S1, b=body
    )
    problems = verify(world)
    assert any(
        p.startswith(f"event {size}: case C-1 is opened or issued again") for p in problems
    ), problems


# --- the envelope is kept as sent: only what DSSE holds -----------------------------------------


@pytest.mark.parametrize(
    ("change", "named"),
    [
        (lambda e: e.update(junk="x" * 1000), "statement.junk: unknown member"),
        (lambda e: e["signatures"][0].update(note="x"), "statement.signatures[0].note"),
        (lambda e: e.update(payloadType=e["payloadType"] + " " * 30_000), "more than"),
    ],
    ids=["member", "signature-member", "size"],
)
def test_an_envelope_with_more_than_dsse_holds_is_refused(
    world: World, change: Any, named: str
) -> None:
    envelope = json.loads(world.statement("city-enforcement", "open_case", case_write("C-junk")))
    change(envelope)
    before = world.counts()
    try:
        world.send(json.dumps(envelope).encode(), "open_case", as_="city-enforcement")
    except grpc.RpcError as exc:
        code, details = rpc(exc)
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert named in details, details
    else:
        raise AssertionError("the envelope was taken")
    assert world.counts() == before


# --- Art. 19 and the inbox: rows rebuilt from the statements by registry verify -----------------


def test_referral_and_notice_rows_changed_in_the_database_are_named_by_verify(
    world: World,
) -> None:
    """The log's statements say: C-ref found by enforcement and referred to planning, C-done
    decided before it was referred and answered, a notice acknowledged by the working group.
    ``registry verify`` agrees with the rows as written, then names each row a database writer
    changes: a referral marked answered, a referral deleted, an acknowledgement made up or
    taken back."""
    for cid in ("C-ref", "C-done"):
        case = dict(case_write(cid)["case"])  # type: ignore[call-overload]
        case.update(kind="deviates_from_permit", stage="reported")
        world.write("city-enforcement", "open_case", {"case": case})
    world.write("city-planning", "move_case", {"case": "C-done", "stage": "dismissed"})
    for cid in ("C-ref", "C-done"):
        world.write("city-enforcement", "refer_case", {"case": cid, "to": "city-planning"})
    world.write("city-planning", "answer_referral", {"case": "C-done", "answer": "dismissed"})
    notices = [
        record_notification(
            world.registry.db,
            structure_id=S1,
            office="market",
            application_id=f"A-{n}",
            reasons=[{"code": "NO_PERMIT"}],
            at=datetime.now(UTC),
        )
        for n in range(3)
    ]
    for notice in (notices[0], notices[2]):
        world.write("working-group", "acknowledge_notice", {"notice": notice})
    assert verify(world) == []
    now = datetime.now(UTC)
    world.registry.sql(
        "UPDATE referral SET decided_at = :t, answered_at = :t, decision = 'dismissed', "
        "answer = 'forged' WHERE case_id = 'C-ref'",
        t=now,
    )
    world.registry.sql("DELETE FROM referral WHERE case_id = 'C-done'")
    world.registry.sql(
        "UPDATE notification SET acknowledged_at = :t, acknowledged_by = 'working-group' "
        "WHERE id = :i",
        t=now,
        i=notices[1],
    )
    world.registry.sql(
        "UPDATE notification SET acknowledged_at = NULL, acknowledged_by = NULL WHERE id = :i",
        i=notices[2],
    )
    problems = verify(world)
    assert any(p.startswith("referral row of C-ref: answer is 'forged'") for p in problems), (
        problems
    )
    assert "referral row of C-done: missing (the log's statements open it)" in problems
    assert any(p.startswith(f"notice row {notices[1]}: acknowledged by") for p in problems), (
        problems
    )
    assert any(p.startswith(f"notice row {notices[2]}: not acknowledged") for p in problems), (
        problems
    )
    assert not any(notices[0] in p for p in problems), problems


def test_referral_dues_moved_in_the_database_are_named_by_verify(world: World) -> None:
    """The dues are not taken from the rows: ``registry verify`` recomputes them from the times
    the statements give and the working-day calendar. A due moved a week later (an overdue
    referral hidden) or earlier (one made overdue) is named with the due the calendar gives,
    the one the service had written."""
    for cid in ("C-late", "C-decided"):
        case = dict(case_write(cid)["case"])  # type: ignore[call-overload]
        case.update(kind="deviates_from_permit", stage="reported")
        world.write("city-enforcement", "open_case", {"case": case})
    world.write("city-planning", "move_case", {"case": "C-decided", "stage": "dismissed"})
    world.write("city-enforcement", "refer_case", {"case": "C-decided", "to": "city-planning"})
    assert verify(world) == []
    with world.registry.db.snapshot() as session:
        rows = {row.case_id: row for row in session.scalars(select(ReferralRow))}
        answer_due = rows["C-decided"].answer_due
        assert answer_due is not None, "C-decided was decided before it was referred"
        written = {
            ("C-late", "referral_due"): rows["C-late"].referral_due,
            ("C-decided", "answer_due"): answer_due,
        }
    week = timedelta(days=7)
    world.registry.sql(
        "UPDATE referral SET referral_due = :t WHERE case_id = 'C-late'",
        t=written["C-late", "referral_due"] + week,
    )
    world.registry.sql(
        "UPDATE referral SET answer_due = :t WHERE case_id = 'C-decided'",
        t=written["C-decided", "answer_due"] - week,
    )
    problems = verify(world)
    assert len(problems) == 2, problems
    for (cid, name), due in written.items():
        shown = _second_text(due)
        assert any(
            p.startswith(f"referral row of {cid}: {name} is ")
            and f"the working-day calendar gives {shown}" in p
            for p in problems
        ), (shown, problems)


def test_a_due_an_earlier_calendar_gives_is_named_with_that_calendar(world: World) -> None:
    """A case found on 2026-09-30, before National Day: the shipped calendar gives 9 October.
    A row saying 2 October (what a calendar with no 2026 file gives) is named all the same,
    since nothing shows the registry counted by that calendar, with the calendar that gives it;
    a row saying 16 October, which no calendar gives, is named without."""
    case = dict(case_write("C-oct")["case"])  # type: ignore[call-overload]
    case.update(kind="deviates_from_permit", stage="reported", opened="2026-09-30T02:00:00Z")
    world.write("city-enforcement", "open_case", {"case": case})
    assert _referral_time(world, "C-oct", "referral_due") == datetime(2026, 10, 9, 16, tzinfo=UTC)
    assert verify(world) == []
    named = (
        "referral row of C-oct: referral_due is {}, the working-day calendar gives "
        "2026-10-09T16:00:00Z (2 working days from found_at)"
    )
    for due, problem in (
        (
            datetime(2026, 10, 2, 16, tzinfo=UTC),
            named.format("2026-10-02T16:00:00Z")
            + "; the calendar with no file for 2026 gives the row's due: if the registry "
            "counted by that calendar then, re-date the row by it",
        ),
        (datetime(2026, 10, 16, 16, tzinfo=UTC), named.format("2026-10-16T16:00:00Z")),
    ):
        world.registry.sql("UPDATE referral SET referral_due = :t WHERE case_id = 'C-oct'", t=due)
        assert verify(world) == [problem]


def _referral_time(world: World, case_id: str, name: str) -> datetime:
    """A time of a referral row, aware (SQLite gives it back naive, in UTC)."""
    with world.registry.db.snapshot() as session:
        row = session.get(ReferralRow, case_id)
        assert row is not None
        at: datetime = getattr(row, name)
    return at if at.tzinfo is not None else at.replace(tzinfo=UTC)


def test_verify_recomputes_the_dues_with_the_calendar_it_is_given(world: World) -> None:
    """A due moved to what a calendar whose next ten days are all public holidays gives: named
    against the shipped calendar, taken against that one (the audit counts working days by
    the calendar it is given)."""
    case = dict(case_write("C-held")["case"])  # type: ignore[call-overload]
    case.update(kind="deviates_from_permit", stage="reported")
    world.write("city-enforcement", "open_case", {"case": case})
    today = datetime.now(CITY_TZ).date()
    rest = frozenset(today + timedelta(days=n) for n in range(11))
    holidays = WorkCalendar(
        YearCalendar(year, "test", frozenset(d for d in rest if d.year == year), frozenset())
        for year in {day.year for day in rest}
    )
    key = load_verifier(world.registry.keys_dir, "registry")
    assert audit_registry(world.registry.db, key).problems == []
    found_at = _referral_time(world, "C-held", "found_at")
    later = holidays.due(found_at)
    assert later > WorkCalendar.default().due(found_at) + timedelta(days=5)
    world.registry.sql("UPDATE referral SET referral_due = :t WHERE case_id = 'C-held'", t=later)
    problems = audit_registry(world.registry.db, key).problems
    assert len(problems) == 1 and problems[0].startswith(
        "referral row of C-held: referral_due is "
    ), problems
    assert audit_registry(world.registry.db, key, calendar=holidays).problems == []


def _second_text(value: datetime) -> str:
    """A stored time as the audit shows it: UTC, to the second."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")
