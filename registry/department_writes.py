"""A department's write, as itself: checked, applied all or nothing, and kept with its signature.

The service (``registry.service``) hands over each write's signed statement (a DSSE envelope,
``permitgate_client._statements``) with the department its client certificate names. Writes
are taken in groups (``DepartmentWrites.write``): every write waiting is checked on its own,
in order, against the registry's state as the writes before it in the group left it; a write
refused gets its own ``WriteRefused`` and changes nothing; the others are applied in ONE
``open_writer`` transaction under one new head. For each write, in this order:

0. **as sent**: the envelope holds DSSE's members only and at most ``MAX_ENVELOPE`` bytes (it
   is kept in the log as sent);
1. **who**: the statement's department is the one the certificate names, is enrolled in the
   registry's own state (``registry.department_keys``; never the database), and the signature
   verifies with its current key (not rotated out, not revoked);
2. **once**: the same department and request id again is the stored result (``replayed``) when
   the write is the same (``log.write_digest``), else ``ALREADY_EXISTS``; the stored row is
   believed only where it agrees with the registry's own state (``Writer.written``: digest,
   first event, result digest), else ``DATA_LOSS``;
3. **when**: the statement was signed within ``MAX_SKEW`` of the registry's clock;
4. **what**: the write's arguments, validated like an import line (``registry.records``; an
   error names the field, ``write.case.stage: ...``), the department's remit
   (``registry.departments``; the refusal names the rule), and the change against each
   structure's current *signed* state (``registry.record_checks``: the structure exists, an id
   is not another's nor held by the structure's signed record, a case's stage moves as
   ``registry.vocabulary`` allows);
5. **apply**: the changed records' rows and one event each carrying the statement (a write that
   changes no record: one statement event), the structures' status records re-signed, the
   referral and notice rows (Art. 19 dues from ``registry.workdays``), and the
   ``department_write`` row that makes a retry a replay; then the head.

What each action's ``write`` holds: ``spec/department-write.md``.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any, Final

import orjson
from google.protobuf import json_format
from permitgate_client import VerificationError
from permitgate_client._errors import MalformedError
from permitgate_client._statements import WriteStatement, statement_department, verify_statement
from permitgate_client._trust import parse_envelope
from permitgate_client.v1 import registry_pb2 as pb
from sqlalchemy import bindparam, insert, select, tuple_
from sqlalchemy.orm import Session

from registry.department_messages import (
    case_message,
    notice_message,
    permit_message,
    referral_message,
    timestamp,
)
from registry.departments import (
    DECISION_STAGES,
    ORDER_STAGES,
    REFERRAL_DAYS,
    Refusal,
    Role,
    in_remit,
    may_acknowledge,
    may_change_permit,
    may_issue_permit,
    may_move_case,
    may_open_case,
    may_receive_referral,
    may_suspend_party,
)
from registry.inbox import case_view, notice_view, permit_view, referral_view
from registry.log import DepartmentEntry, encode_event, write_digest
from registry.merkle import leaf_hash
from registry.record_checks import filed_elsewhere, stage_move_error, unknown_structure
from registry.records import (
    Case,
    InvalidRecord,
    Permit,
    Record,
    Structure,
    format_time,
    parse_record,
)
from registry.signing import Signer
from registry.status import SigningPipeline, StatusSigner, state_parts
from registry.storage import (
    CaseRow,
    Database,
    EventRow,
    NotificationRow,
    PermitRow,
    ReferralRow,
    StructureRow,
    WriteRow,
    id_in,
    table_of,
    values_of,
)
from registry.vocabulary import CaseStage, PermitStatus
from registry.workdays import WorkCalendar
from registry.writer import HeldMap, Writer, open_writer

__all__ = [
    "MAX_SKEW",
    "DepartmentWrites",
    "Refused",
    "WriteRefused",
    "WriteRequest",
]

log = logging.getLogger(__name__)

ENVELOPE_MEMBERS: Final = frozenset({"payload", "payloadType", "signatures"})
SIGNATURE_MEMBERS: Final = frozenset({"keyid", "sig"})
MAX_SIGNATURES: Final = 4
MAX_ENVELOPE: Final = 24 * 1024
"""The largest envelope taken, in bytes: a 16 KiB payload's base64 (21,848 characters) and its
type, with room for a few signatures. The envelope is kept in the log as sent."""
MAX_SKEW: Final = timedelta(minutes=5)
"""How far a statement's signed_at may be from the registry's clock (a replay excepted)."""
ANSWER_MAX: Final = 2000


class Refused(StrEnum):
    """Why a write was refused, as the gRPC status the service answers with."""

    INVALID_ARGUMENT = "INVALID_ARGUMENT"
    NOT_FOUND = "NOT_FOUND"
    ALREADY_EXISTS = "ALREADY_EXISTS"
    FAILED_PRECONDITION = "FAILED_PRECONDITION"
    PERMISSION_DENIED = "PERMISSION_DENIED"
    UNAUTHENTICATED = "UNAUTHENTICATED"
    DATA_LOSS = "DATA_LOSS"
    """The database disagrees with the registry's own state: nothing is done or answered."""


class WriteRefused(Exception):
    """A write that was not made (nothing of it was written); the message says why."""

    def __init__(self, code: Refused, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True, slots=True)
class WriteRequest:
    """One write as it arrived: the signed statement, the action of the RPC it came by, and the
    department the caller's client certificate names."""

    envelope: bytes
    action: str
    peer: str


WriteOutcome = pb.WriteResult | WriteRefused


# --- The state a group of writes works on ------------------------------------------------------


@dataclass
class _Held:
    """One structure's records: its signed state, with the group's changes so far."""

    structure: Structure
    permits: dict[str, Permit]
    cases: dict[str, Case]


@dataclass
class _Change:
    """What one write does, before it is applied to the group."""

    department: DepartmentEntry
    statement: WriteStatement
    envelope: dict[str, Any]
    digest: bytes
    records: list[Record] = field(default_factory=list)
    statement_under: str | None = None  # a statement event's structure (no record changed)
    referral: ReferralRow | None = None
    new_referral: bool = False
    notice: NotificationRow | None = None
    notice_district: str = ""


@dataclass(frozen=True)
class _Again:
    """A write sent again into the group that holds its first sending."""

    first: _Change


class _Group:
    """The writes of one ``open_writer`` transaction, checked one by one."""

    def __init__(
        self, writer: Writer, now: datetime, calendar: WorkCalendar, skew: timedelta
    ) -> None:
        self.writer = writer
        self.session = writer.session
        self.now = now
        self.calendar = calendar
        self.skew = skew
        self.held: dict[str, _Held] = {}
        self.touched: set[str] = set()
        self.new_ids: dict[tuple[str, str], str] = {}  # (permit|case, id) -> structure
        self.done: dict[tuple[str, str], _Change] = {}  # this group's writes by request id
        self.changes: list[_Change] = []
        self.stored: dict[tuple[str, str], WriteRow] = {}  # the group's request ids written before
        self.filed: dict[tuple[str, str], str | None] = {}  # prefetched: where the tables file ids

    # --- reading --------------------------------------------------------------------------

    def prefetch(self, structures: set[str], permits: set[str], cases: set[str]) -> None:
        """Read what the group's writes name in a few queries: where each permit and case id
        is filed, and the signed state of every structure involved."""
        dialect = self.session.get_bind().dialect.name
        wanted = set(structures)
        for what, row, ids in (("permit", PermitRow, permits), ("case", CaseRow, cases)):
            if not ids:
                continue
            self.filed.update({(what, rid): None for rid in ids})
            query = select(row.id, row.structure_id).where(id_in(row.id, ids, dialect))
            for rid, sid in self.session.execute(query):
                self.filed[(what, rid)] = sid
                wanted.add(sid)
        known = [sid for sid in wanted if sid not in self.held and self.writer.knows(sid)]
        for sid, record in self.writer.verified_records(known).items():
            self.held[sid] = _Held(
                record.structure,
                {p.id: p for p in record.permits},
                {c.id: c for c in record.cases},
            )

    def structure(self, sid: str) -> _Held | None:
        held = self.held.get(sid)
        if held is None and self.writer.knows(sid):
            record = self.writer.verified_records([sid]).get(sid)
            if record is not None:
                held = _Held(
                    record.structure,
                    {p.id: p for p in record.permits},
                    {c.id: c for c in record.cases},
                )
                self.held[sid] = held
        return held

    def filed_under(self, what: str, rid: str) -> str | None:
        """The structure the tables (or this group) file a permit or case id under."""
        if (what, rid) in self.new_ids:
            return self.new_ids[(what, rid)]
        if (what, rid) in self.filed:
            return self.filed[(what, rid)]
        row = PermitRow if what == "permit" else CaseRow
        return self.session.scalar(select(row.structure_id).where(row.id == rid))

    def permit(self, pid: str) -> tuple[_Held, Permit]:
        sid = self.filed_under("permit", pid)
        held = None if sid is None else self.structure(sid)
        permit = None if held is None else held.permits.get(pid)
        if held is None or permit is None:
            raise WriteRefused(Refused.NOT_FOUND, f"write.permit: no permit {pid!r}")
        return held, permit

    def case(self, cid: str) -> tuple[_Held, Case]:
        sid = self.filed_under("case", cid)
        held = None if sid is None else self.structure(sid)
        case = None if held is None else held.cases.get(cid)
        if held is None or case is None:
            raise WriteRefused(Refused.NOT_FOUND, f"write.case: no case {cid!r}")
        return held, case

    def referral(self, cid: str) -> ReferralRow | None:
        for change in self.changes:
            if change.referral is not None and change.referral.case_id == cid:
                return change.referral
        return self.session.get(ReferralRow, cid)

    def ensure_new(self, what: str, rid: str, sid: str) -> None:
        filed = self.filed_under(what, rid)
        if filed is None:
            held = self.structure(sid)
            if held is not None and rid in (held.permits if what == "permit" else held.cases):
                raise WriteRefused(
                    Refused.DATA_LOSS,
                    f"write.{what}.id: the registry's signed record of {sid} holds {what} "
                    f"{rid}, but the database's {what} table does not: the database disagrees "
                    "with the registry's state (nothing was written; the registry's operator "
                    "must restore the database)",
                )
            return
        held = self.structure(filed)
        owned = held is not None and rid in (held.permits if what == "permit" else held.cases)
        why = filed_elsewhere(what, rid, filed, sid, owned)
        raise WriteRefused(Refused.ALREADY_EXISTS, f"write.{what}.id: {why}")

    # --- applying to the group ------------------------------------------------------------

    def accept(self, change: _Change) -> None:
        for record in change.records:
            if isinstance(record, Structure):
                self.held[record.id] = _Held(record, {}, {})
            elif isinstance(record, Permit):
                held = self.held[record.structure]
                if record.id not in held.permits:
                    self.new_ids[("permit", record.id)] = record.structure
                held.permits[record.id] = record
            else:
                held = self.held[record.structure]
                if record.id not in held.cases:
                    self.new_ids[("case", record.id)] = record.structure
                held.cases[record.id] = record
            self.touched.add(record.structure_id)
        if change.new_referral and change.referral is not None:
            self.session.add(change.referral)
        self.changes.append(change)
        key = (change.statement.department, change.statement.request_id)
        self.done[key] = change


# --- The writes, one function per action -----------------------------------------------------

_Handler = Callable[[_Group, _Change, Role], None]


def _refuse_rule(refusal: Refusal | None) -> None:
    if refusal is not None:
        raise WriteRefused(Refused.PERMISSION_DENIED, str(refusal))


def _fields(
    write: dict[str, Any], required: frozenset[str], optional: frozenset[str] = frozenset()
) -> None:
    for name in sorted(write.keys() - required - optional):
        raise WriteRefused(Refused.INVALID_ARGUMENT, f"write.{name}: unknown field")
    for name in sorted(required - write.keys()):
        raise WriteRefused(Refused.INVALID_ARGUMENT, f"write.{name}: missing")


def _text(write: dict[str, Any], name: str) -> str:
    value = write.get(name)
    if not isinstance(value, str) or not value.strip():
        raise WriteRefused(Refused.INVALID_ARGUMENT, f"write.{name}: must be a non-empty string")
    return value


def _record(write: dict[str, Any], name: str, kind: str) -> Record:
    """``write[name]`` as an import line of type ``kind`` (without "type")."""
    obj = write.get(name)
    if not isinstance(obj, dict):
        raise WriteRefused(Refused.INVALID_ARGUMENT, f"write.{name}: must be a JSON object")
    if "type" in obj:
        raise WriteRefused(Refused.INVALID_ARGUMENT, f"write.{name}.type: unknown field")
    try:
        return parse_record({"type": kind, **obj})
    except InvalidRecord as exc:
        shown = "; ".join(f"write.{name}.{e.field}: {e.why}" for e in exc.errors)
        raise WriteRefused(Refused.INVALID_ARGUMENT, shown) from exc


def _enum(value: Any, name: str, kind: type[StrEnum]) -> Any:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise WriteRefused(
            Refused.INVALID_ARGUMENT, f"write.{name}: unknown value {value!r} (one of: {allowed})"
        ) from None


def _issue_permit(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"permit"}))
    permit = _record(write, "permit", "permit")
    assert isinstance(permit, Permit)
    _refuse_rule(may_issue_permit(role, permit.kind))
    if group.structure(permit.structure) is None:
        why = unknown_structure(permit.structure)
        raise WriteRefused(Refused.NOT_FOUND, f"write.permit.structure: {why}")
    group.ensure_new("permit", permit.id, permit.structure)
    change.records.append(permit)


def _change_permit_status(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"permit", "status"}))
    status = _enum(write["status"], "status", PermitStatus)
    _, permit = group.permit(_text(write, "permit"))
    _refuse_rule(may_change_permit(role, permit.kind))
    if permit.status is status:
        raise WriteRefused(
            Refused.FAILED_PRECONDITION, f"permit {permit.id} is {status.value} already"
        )
    change.records.append(replace(permit, status=status))


def _open_case(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"case"}), frozenset({"structure"}))
    case = _record(write, "case", "case")
    assert isinstance(case, Case)
    if case.party_suspended:
        raise WriteRefused(
            Refused.INVALID_ARGUMENT,
            "write.case.party_suspended: a party is suspended by suspend_party, not when the "
            "case is opened",
        )
    if case.opened > group.now + group.skew:
        raise WriteRefused(
            Refused.INVALID_ARGUMENT, "write.case.opened: in the future (when it was found)"
        )
    _refuse_rule(may_open_case(role, case.kind, case.stage))
    structure: Structure | None = None
    if "structure" in write:
        made = _record(write, "structure", "structure")
        assert isinstance(made, Structure)
        if made.id != case.structure:
            raise WriteRefused(
                Refused.INVALID_ARGUMENT,
                f"write.structure.id: {made.id!r} is not the case's structure {case.structure!r}",
            )
        if group.structure(made.id) is not None:
            raise WriteRefused(
                Refused.ALREADY_EXISTS,
                f"write.structure.id: structure {made.id} exists already (leave write.structure "
                "out to open a case on it)",
            )
        structure = made
        change.records.append(made)
    else:
        held = group.structure(case.structure)
        if held is None:
            why = unknown_structure(case.structure)
            raise WriteRefused(Refused.NOT_FOUND, f"write.case.structure: {why}")
        structure = held.structure
    group.ensure_new("case", case.id, case.structure)
    change.records.append(case)
    if not in_remit(role, case.kind):  # opened as reported: on the Art. 19 clock
        change.referral = ReferralRow(
            case_id=case.id,
            structure_id=case.structure,
            district=structure.district,
            case_kind=case.kind.value,
            found_by=change.department.id,
            found_at=case.opened,
            referral_due=group.calendar.due(case.opened, REFERRAL_DAYS),
        )
        change.new_referral = True


def _move_case(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"case", "stage"}))
    stage = _enum(write["stage"], "stage", CaseStage)
    _, case = group.case(_text(write, "case"))
    _refuse_rule(may_move_case(role, case.kind))
    if case.stage is stage:
        raise WriteRefused(
            Refused.FAILED_PRECONDITION, f"case {case.id} is at {stage.value} already"
        )
    moved = stage_move_error(case.id, case.stage, stage)
    if moved is not None:
        raise WriteRefused(Refused.FAILED_PRECONDITION, moved)
    change.records.append(replace(case, stage=stage))
    referral = group.referral(case.id)
    if (
        referral is not None
        and referral.referred_to is not None
        and referral.decided_at is None
        and stage in DECISION_STAGES
        and _same_role(group, referral.referred_to, change.department)
    ):
        referral.decided_at = group.now
        referral.decision = stage.value
        referral.answer_due = group.calendar.due(group.now, REFERRAL_DAYS)
        change.referral = referral


def _same_role(group: _Group, department_id: str, decider: DepartmentEntry) -> bool:
    """Whether ``decider`` is ``department_id`` or holds the same role (the decision on a case
    is its remit role's, whichever department of that role made it)."""
    if decider.id == department_id:
        return True
    referred = group.writer.department(department_id)
    return referred is not None and referred.role == decider.role


def _refer_case(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"case", "to"}))
    held, case = group.case(_text(write, "case"))
    to = _text(write, "to")
    referral = group.referral(case.id)
    if referral is None:
        raise WriteRefused(
            Refused.FAILED_PRECONDITION,
            f"case {case.id} is not on the Art. 19 clock (it was opened in its finder's remit)",
        )
    if referral.found_by != change.department.id:
        raise WriteRefused(
            Refused.PERMISSION_DENIED,
            f"Art. 19: case {case.id} is referred by its finder, {referral.found_by}, not "
            f"{change.department.id}",
        )
    if referral.referred_at is not None:
        raise WriteRefused(
            Refused.FAILED_PRECONDITION,
            f"case {case.id} was referred to {referral.referred_to} already",
        )
    receiver = group.writer.department(to)
    if receiver is None or not receiver.active:
        raise WriteRefused(Refused.NOT_FOUND, f"write.to: no enrolled department {to!r}")
    _refuse_rule(may_receive_referral(Role(receiver.role), case.kind))
    referral.referred_to = to
    referral.referred_at = group.now
    if case.stage in DECISION_STAGES:  # decided before it was referred: answerable at once
        referral.decided_at = group.now
        referral.decision = case.stage.value
        referral.answer_due = group.calendar.due(group.now, REFERRAL_DAYS)
    change.referral = referral
    change.statement_under = held.structure.id


def _answer_referral(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"case", "answer"}))
    held, case = group.case(_text(write, "case"))
    answer = _text(write, "answer")
    if len(answer) > ANSWER_MAX:
        raise WriteRefused(
            Refused.INVALID_ARGUMENT, f"write.answer: longer than {ANSWER_MAX} characters"
        )
    referral = group.referral(case.id)
    if referral is None or referral.referred_to is None:
        raise WriteRefused(Refused.FAILED_PRECONDITION, f"case {case.id} was not referred")
    if referral.referred_to != change.department.id:
        raise WriteRefused(
            Refused.PERMISSION_DENIED,
            f"Art. 19: the decision on case {case.id} is reported back by the department it "
            f"was referred to, {referral.referred_to}, not {change.department.id}",
        )
    if referral.decided_at is None:
        raise WriteRefused(
            Refused.FAILED_PRECONDITION,
            f"case {case.id} is not decided yet (move it to one of: "
            + ", ".join(sorted(s.value for s in DECISION_STAGES))
            + ")",
        )
    if referral.answered_at is not None:
        raise WriteRefused(
            Refused.FAILED_PRECONDITION, f"the referral of case {case.id} was answered already"
        )
    referral.answered_at = group.now
    referral.answer = answer
    change.referral = referral
    change.statement_under = held.structure.id


def _acknowledge_notice(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"notice"}))
    _refuse_rule(may_acknowledge(role))
    notice_id = _text(write, "notice")
    notice = group.session.get(NotificationRow, notice_id)
    if notice is None:
        raise WriteRefused(Refused.NOT_FOUND, f"write.notice: no notice {notice_id!r}")
    if notice.acknowledged_at is not None:
        raise WriteRefused(
            Refused.FAILED_PRECONDITION,
            f"notice {notice_id} was acknowledged already by {notice.acknowledged_by}",
        )
    notice.acknowledged_at = group.now
    notice.acknowledged_by = change.department.id
    change.notice = notice
    structure = group.session.get(StructureRow, notice.structure_id)
    change.notice_district = "" if structure is None else structure.district
    change.statement_under = notice.structure_id


def _suspend_party(group: _Group, change: _Change, role: Role) -> None:
    write = change.statement.write
    _fields(write, frozenset({"case", "suspended"}))
    suspended = write["suspended"]
    if suspended is not True and suspended is not False:
        raise WriteRefused(Refused.INVALID_ARGUMENT, "write.suspended: must be true or false")
    _, case = group.case(_text(write, "case"))
    _refuse_rule(may_suspend_party(role, case.kind))
    if case.party_suspended is suspended:
        said = "suspended" if suspended else "not suspended"
        raise WriteRefused(Refused.FAILED_PRECONDITION, f"case {case.id}'s party is {said} already")
    if suspended:
        if case.party is None:
            raise WriteRefused(
                Refused.FAILED_PRECONDITION, f"case {case.id} names no party to suspend"
            )
        if case.stage not in ORDER_STAGES:
            raise WriteRefused(
                Refused.FAILED_PRECONDITION,
                f"Art. 22: a party is suspended when it ignored a stop or demolition order; "
                f"case {case.id} is at {case.stage.value}",
            )
    change.records.append(replace(case, party_suspended=suspended))


_TABLES: Final = (
    (Structure, StructureRow, "structure"),
    (Permit, PermitRow, "permit"),
    (Case, CaseRow, "case"),
)

HANDLERS: Final[dict[str, _Handler]] = {
    "issue_permit": _issue_permit,
    "change_permit_status": _change_permit_status,
    "open_case": _open_case,
    "move_case": _move_case,
    "refer_case": _refer_case,
    "answer_referral": _answer_referral,
    "acknowledge_notice": _acknowledge_notice,
    "suspend_party": _suspend_party,
}
"""The one table from an action to the function that checks and makes it."""


# --- The writes, in groups --------------------------------------------------------------------


class DepartmentWrites:
    """Departments' writes to one registry (its database, key and own state)."""

    def __init__(
        self,
        db: Database,
        signer: Signer,
        state_dir: Path,
        *,
        calendar: WorkCalendar | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        max_skew: timedelta = MAX_SKEW,
    ) -> None:
        self._db = db
        self._signer = signer
        self._state_dir = state_dir
        self._calendar = calendar or WorkCalendar.default()
        self._clock = clock
        self._skew = max_skew
        self._held_map = HeldMap()

    def write(self, requests: list[WriteRequest]) -> list[WriteOutcome]:
        """Check each request, apply those that pass in one transaction and one head; an
        outcome per request, in order. Should the group's transaction fail as a whole (a
        database error), each write is tried again on its own, so one cannot sink the rest."""
        try:
            return self._write(requests)
        except Exception:
            if len(requests) == 1:
                raise
            log.warning("a group of %d writes failed; writing each alone", len(requests))
            outcomes: list[WriteOutcome] = []
            for request in requests:
                try:
                    outcomes.extend(self._write([request]))
                except WriteRefused as exc:
                    outcomes.append(exc)
            return outcomes

    def _write(self, requests: list[WriteRequest]) -> list[WriteOutcome]:
        now = self._clock().astimezone(UTC)
        with open_writer(
            self._db, self._signer, self._state_dir, held_map=self._held_map
        ) as writer:
            group = _Group(writer, now, self._calendar, self._skew)
            claims = _claims(requests)
            group.stored = _stored_writes(writer.session, claims)
            group.prefetch(*_named(claims))
            outcomes: list[WriteOutcome | _Change | _Again] = []
            for request in requests:
                try:
                    outcomes.append(self._check(group, request))
                except WriteRefused as refused:
                    outcomes.append(refused)
            results = self._apply(group) if group.changes else {}
        final: list[WriteOutcome] = []
        for outcome in outcomes:
            if isinstance(outcome, _Change):
                final.append(results[id(outcome)])
            elif isinstance(outcome, _Again):
                again = pb.WriteResult()
                again.CopyFrom(results[id(outcome.first)])
                again.replayed = True
                final.append(again)
            else:
                final.append(outcome)
        return final

    def _check(self, group: _Group, request: WriteRequest) -> pb.WriteResult | _Change | _Again:
        # 1. who
        _check_envelope(request.envelope)
        try:
            claimed = statement_department(request.envelope)
        except (MalformedError, ValueError) as exc:
            raise WriteRefused(Refused.INVALID_ARGUMENT, f"statement: {exc}") from exc
        if claimed != request.peer:
            raise WriteRefused(
                Refused.PERMISSION_DENIED,
                f"the client certificate names department {request.peer!r}, the statement "
                f"{claimed!r}: they must be the same department",
            )
        department = group.writer.department(claimed)
        if department is None:
            raise WriteRefused(Refused.PERMISSION_DENIED, f"department {claimed!r} is not enrolled")
        if not department.active:
            raise WriteRefused(
                Refused.PERMISSION_DENIED,
                f"department {claimed!r}: its key {department.verifier().keyid_text} was "
                "revoked; writes need a new key (registry department rotate)",
            )
        key = department.verifier()
        try:
            statement = verify_statement(request.envelope, [key])
        except MalformedError as exc:
            raise WriteRefused(Refused.INVALID_ARGUMENT, f"statement: {exc}") from exc
        except VerificationError as exc:
            raise WriteRefused(
                Refused.UNAUTHENTICATED,
                f"statement: its signature does not verify with {claimed}'s current key "
                f"{key.keyid_text} ({exc})",
            ) from exc
        if statement.action != request.action:
            raise WriteRefused(
                Refused.INVALID_ARGUMENT,
                f"statement: action {statement.action!r} sent to the {request.action} call",
            )
        envelope = orjson.loads(request.envelope)
        # What was asked, not when it was signed: the same write signed again under its
        # request id (a department's client restarted, say) is a replay, not a conflict.
        digest = write_digest(statement.action, statement.write)
        # 2. once
        stored = self._stored(group, statement, digest)
        if stored is not None:
            return stored
        # 3. when
        if abs(statement.signed_at - group.now) > self._skew:
            raise WriteRefused(
                Refused.FAILED_PRECONDITION,
                f"statement: signed_at {format_time(statement.signed_at)} is more than "
                f"{int(self._skew.total_seconds() // 60)} minutes from the registry's clock "
                f"({format_time(group.now)}): check the department's clock",
            )
        # 4. what
        change = _Change(department, statement, envelope, digest)
        HANDLERS[statement.action](group, change, Role(department.role))
        group.accept(change)
        return change

    def _stored(
        self, group: _Group, statement: WriteStatement, digest: bytes
    ) -> pb.WriteResult | _Again | None:
        """The stored result of this department's request id (replayed), or None when it is
        new; ``ALREADY_EXISTS`` when the request id was used by another statement."""
        key = (statement.department, statement.request_id)
        conflict = WriteRefused(
            Refused.ALREADY_EXISTS,
            f"request_id {statement.request_id!r} of {statement.department} was used by "
            "another write: a new write needs a new request id",
        )
        if key in group.done:  # sent twice into one group: the second is a replay of the first
            first = group.done[key]
            if first.digest != digest:
                raise conflict
            return _Again(first)
        row = group.stored.get(key)
        made = group.writer.written(*key)
        where = f"department_write row {statement.department}/{statement.request_id}"
        if made is None and row is None:
            return None
        if made is None:
            raise _damaged(f"{where}: the registry's state holds no write under it")
        if row is None:
            raise _damaged(f"{where}: missing (the registry's state holds event {made[3]})")
        _, _, made_digest, made_seq, made_result = made
        if (
            bytes(row.digest) != made_digest
            or row.seq != made_seq
            or (made_result is not None and _result_digest(row.result) != made_result)
        ):
            raise _damaged(f"{where}: not the write the registry's state holds (event {made_seq})")
        if made_digest != digest:
            raise conflict
        result = json_format.Parse(row.result, pb.WriteResult())
        result.replayed = True
        return result

    def _apply(self, group: _Group) -> dict[int, pb.WriteResult]:
        """Write the group's changes, events, status records and write rows; sign the head."""
        writer, session, now = group.writer, group.session, group.now
        at = format_time(now)
        tree = writer.tree
        first_seq: dict[int, int] = {}
        events: list[dict[str, Any]] = []
        for change in group.changes:
            first_seq[id(change)] = tree.size
            bodies: list[tuple[str, bytes]] = []
            if change.records:
                for record in change.records:
                    body = encode_event(
                        tree.size + len(bodies),
                        at,
                        record.to_json(),
                        statement=change.envelope,
                    )
                    bodies.append((record.structure_id, body))
            else:
                assert change.statement_under is not None
                body = encode_event(tree.size, at, statement=change.envelope)
                bodies.append((change.statement_under, body))
            for sid, body in bodies:
                events.append({"seq": tree.size, "structure_id": sid, "body": body})
                tree.append(leaf_hash(body))
        self._write_records(group)
        session.execute(insert(table_of(EventRow)), events)
        signer = StatusSigner(self._signer, now=now)
        with SigningPipeline(
            session, signer, written=lambda rows, _tag: writer.signed(rows)
        ) as pipeline:
            states = []
            for sid in sorted(group.touched):
                held = group.held[sid]
                parts = state_parts(
                    held.structure, list(held.permits.values()), list(held.cases.values())
                )
                states.append((sid, parts))
            pipeline.submit(states, tree.size)
            pipeline.finish()
        writer.sign_head(now)
        results: dict[int, pb.WriteResult] = {}
        for change in group.changes:
            result = self._result(group, change, first_seq[id(change)], tree.size)
            results[id(change)] = result
            statement = change.statement
            stored = json_format.MessageToJson(result, indent=None)
            session.add(
                WriteRow(
                    department=statement.department,
                    request_id=statement.request_id,
                    action=statement.action,
                    digest=change.digest,
                    seq=first_seq[id(change)],
                    written_at=now,
                    result=stored,
                )
            )
            writer.note_written(
                (
                    statement.department,
                    statement.request_id,
                    change.digest,
                    first_seq[id(change)],
                    _result_digest(stored),
                )
            )
        session.flush()
        return results

    def _write_records(self, group: _Group) -> None:
        """The changed records' rows, new ones inserted and others updated, each kind in one
        statement (structures first, then permits and cases)."""
        session = group.session
        latest: dict[tuple[type, str], Record] = {}
        for change in group.changes:
            for record in change.records:
                latest[(type(record), record.id)] = record
        for kind, model, name in _TABLES:
            table = table_of(model)
            new: list[dict[str, Any]] = []
            old: list[dict[str, Any]] = []
            for (of, rid), record in latest.items():
                if of is not kind:
                    continue
                values = values_of(record)
                if kind is Structure or (name, rid) in group.new_ids:
                    new.append(values)
                else:
                    old.append({**values, "old_id": rid})
            if new:
                session.execute(insert(table), new)
            if old:
                session.execute(table.update().where(table.c.id == bindparam("old_id")), old)

    def _result(self, group: _Group, change: _Change, seq: int, size: int) -> pb.WriteResult:
        statement = change.statement
        result = pb.WriteResult(
            department=statement.department,
            request_id=statement.request_id,
            action=statement.action,
            seq=seq,
            registry_version=size,
            replayed=False,
            written_at=timestamp(group.now),
        )
        for record in change.records:
            if isinstance(record, Permit):
                result.permit.CopyFrom(permit_message(permit_view(record)))
            elif isinstance(record, Case):
                district = group.held[record.structure].structure.district
                result.case.CopyFrom(case_message(case_view(record, district)))
        if change.referral is not None:
            view = referral_view(change.referral, group.now)
            result.referral.CopyFrom(referral_message(view))
        if change.notice is not None:
            notice = notice_view(change.notice, change.notice_district)
            result.notice.CopyFrom(notice_message(notice))
        return result


def _check_envelope(envelope: bytes) -> None:
    """The envelope is kept in the log as sent: only a DSSE envelope's members, each signature
    only a keyid and a sig, and no larger than ``MAX_ENVELOPE``."""
    if len(envelope) > MAX_ENVELOPE:
        raise WriteRefused(
            Refused.INVALID_ARGUMENT,
            f"statement: the envelope is {len(envelope)} bytes, more than {MAX_ENVELOPE}",
        )
    try:
        obj = orjson.loads(envelope)
    except orjson.JSONDecodeError as exc:
        raise WriteRefused(Refused.INVALID_ARGUMENT, f"statement: not JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise WriteRefused(Refused.INVALID_ARGUMENT, "statement: not a JSON object")
    for name in sorted(obj.keys() - ENVELOPE_MEMBERS):
        raise WriteRefused(
            Refused.INVALID_ARGUMENT,
            f"statement.{name}: unknown member (a DSSE envelope holds payload, payloadType "
            "and signatures)",
        )
    signatures = obj.get("signatures")
    if not isinstance(signatures, list) or not 1 <= len(signatures) <= MAX_SIGNATURES:
        raise WriteRefused(
            Refused.INVALID_ARGUMENT,
            f"statement.signatures: must be a list of 1 to {MAX_SIGNATURES} signatures",
        )
    for index, signature in enumerate(signatures):
        if not isinstance(signature, dict):
            raise WriteRefused(
                Refused.INVALID_ARGUMENT, f"statement.signatures[{index}]: not a JSON object"
            )
        for name in sorted(signature.keys() - SIGNATURE_MEMBERS):
            raise WriteRefused(
                Refused.INVALID_ARGUMENT,
                f"statement.signatures[{index}].{name}: unknown member (a signature holds "
                "keyid and sig)",
            )


def _damaged(where: str) -> WriteRefused:
    """A retry whose stored write the registry's own state does not back: never answered as
    done (nor written again)."""
    return WriteRefused(
        Refused.DATA_LOSS,
        f"{where}: the database disagrees with the registry's state; the write is not "
        "answered (the registry's operator must run 'permitgate registry verify' and restore "
        "the database)",
    )


def _result_digest(result: str) -> bytes:
    """SHA-256 of a stored result's JSON, as the registry's state keeps it."""
    return hashlib.sha256(result.encode("utf-8")).digest()


def _claims(requests: list[WriteRequest]) -> list[WriteStatement]:
    """What the requests' statements say, read before any is verified: only to fetch, in a few
    queries, what checking them will need (each is verified before anything is answered)."""
    claims: list[WriteStatement] = []
    for request in requests:
        try:
            claims.append(WriteStatement.from_payload(parse_envelope(request.envelope).payload))
        except (MalformedError, ValueError):
            continue
    return claims


def _stored_writes(
    session: Session, claims: list[WriteStatement]
) -> dict[tuple[str, str], WriteRow]:
    """The writes stored under the (department, request id) the statements claim."""
    keys = {(claim.department, claim.request_id) for claim in claims}
    if not keys:
        return {}
    query = select(WriteRow).where(tuple_(WriteRow.department, WriteRow.request_id).in_(keys))
    return {(row.department, row.request_id): row for row in session.scalars(query)}


def _named(claims: list[WriteStatement]) -> tuple[set[str], set[str], set[str]]:
    """The structure, permit and case ids the statements name."""
    structures: set[str] = set()
    permits: set[str] = set()
    cases: set[str] = set()
    for claim in claims:
        write = claim.write
        for name, ids in (("permit", permits), ("case", cases)):
            value = write.get(name)
            if isinstance(value, str):
                ids.add(value)
            elif isinstance(value, dict):
                if isinstance(value.get("id"), str):
                    ids.add(value["id"])
                if isinstance(value.get("structure"), str):
                    structures.add(value["structure"])
        made = write.get("structure")
        if isinstance(made, dict) and isinstance(made.get("id"), str):
            structures.add(made["id"])
    return structures, permits, cases
