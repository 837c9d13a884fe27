"""The departments' views as the Registry service's messages (``permitgate.v1.Registry``).

One conversion for a read and for a write's result: ``registry.department_reads`` answers Get
and List with these, and ``registry.department_writes`` puts the permit, case, referral or
notice a write made in its ``WriteResult`` the same way. The views come from
``registry.inbox``. A naive time is UTC (as SQLite gives the rows back).
"""

from __future__ import annotations

from datetime import datetime

from google.protobuf.timestamp_pb2 import Timestamp
from permitgate_client.v1 import registry_pb2 as pb

from registry.inbox import CaseView, NoticeView, PartyView, PermitView, ReferralView

__all__ = [
    "case_message",
    "notice_message",
    "party_message",
    "permit_message",
    "referral_message",
    "timestamp",
]


def timestamp(at: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(at)
    return stamp


def _time(stamp: Timestamp, at: datetime | None) -> None:
    if at is not None:
        stamp.FromDatetime(at)


def permit_message(view: PermitView) -> pb.PermitInfo:
    message = pb.PermitInfo(
        id=view.id,
        structure_id=view.structure_id,
        kind=view.kind,
        status=view.status,
        use=view.use or "",
    )
    _time(message.issued, view.issued)
    _time(message.expires, view.expires)
    return message


def case_message(view: CaseView) -> pb.CaseInfo:
    message = pb.CaseInfo(
        id=view.id,
        structure_id=view.structure_id,
        kind=view.kind,
        stage=view.stage,
        source=view.source,
        party=view.party or "",
        party_suspended=view.party_suspended,
        decider=view.decider,
        lead=view.lead,
        district=view.district,
        blocking=view.blocking,
    )
    _time(message.opened, view.opened)
    return message


def referral_message(view: ReferralView) -> pb.Referral:
    message = pb.Referral(
        case_id=view.case_id,
        structure_id=view.structure_id,
        district=view.district,
        case_kind=view.case_kind,
        found_by=view.found_by,
        referred_to=view.referred_to or "",
        decision=view.decision or "",
        answer=view.answer or "",
        state=view.state.value,
        overdue=view.overdue,
    )
    _time(message.found_at, view.found_at)
    _time(message.referral_due, view.referral_due)
    _time(message.referred_at, view.referred_at)
    _time(message.decided_at, view.decided_at)
    _time(message.answer_due, view.answer_due)
    _time(message.answered_at, view.answered_at)
    return message


def notice_message(view: NoticeView) -> pb.Notice:
    message = pb.Notice(
        id=view.id,
        structure_id=view.structure_id,
        district=view.district or "",
        office=view.office,
        application_id=view.application_id or "",
        reasons=list(view.reasons),
        acknowledged_by=view.acknowledged_by or "",
        state=view.state.value,
    )
    _time(message.created_at, view.created_at)
    _time(message.acknowledged_at, view.acknowledged_at)
    return message


def party_message(view: PartyView) -> pb.Party:
    return pb.Party(
        id=view.id,
        suspended=view.suspended,
        cases=list(view.cases),
        suspending_cases=list(view.suspending_cases),
    )
