"""What a caller sends and gets back, typed: ``Check``, ``Decision``, ``Reason``, ``Verdict``.

``Check`` builds one wire check from keyword arguments (the same ones the single calls take) and
validates what can be validated without the gate: the choice fields and the time zone. Every
other rule (ids, lengths, times in the past) is the gate's, which answers INVALID_ARGUMENT.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from permitgate_client._errors import InvalidCheckError
from permitgate_client._times import format_time
from permitgate_client.v1 import gate_pb2 as pb

__all__ = ["Check", "Decision", "Reason", "Refused", "Verdict"]


class Verdict(StrEnum):
    """The gate's answer, weakest first; ``DENY`` > ``REVIEW`` > ``NOTIFY`` > ``ALLOW_TEMPORARY``
    > ``ALLOW``. ``allows`` says whether the caller may go ahead."""

    ALLOW = "ALLOW"
    ALLOW_TEMPORARY = "ALLOW_TEMPORARY"
    NOTIFY = "NOTIFY"
    REVIEW = "REVIEW"
    DENY = "DENY"

    @property
    def allows(self) -> bool:
        """True for ALLOW and ALLOW_TEMPORARY (for NOTIFY: the office may go on; it was told)."""
        return self in (Verdict.ALLOW, Verdict.ALLOW_TEMPORARY)


_VERDICTS = {int(pb.Verdict.Value(f"VERDICT_{v.value}")): v for v in Verdict}
_REASON_CODES = {
    number: name.removeprefix("REASON_CODE_") for name, number in pb.ReasonCode.items()
}
_PERMIT_KINDS = {
    number: name.removeprefix("PERMIT_KIND_").lower() for name, number in pb.PermitKind.items()
}


def _choices(enum: Any, prefix: str) -> dict[str, int]:
    return {
        name.removeprefix(prefix).lower(): number
        for name, number in enum.items()
        if not name.endswith("_UNSPECIFIED")
    }


UTILITIES = _choices(pb.Utility, "UTILITY_")
CONNECTION_KINDS = _choices(pb.ConnectionKind, "CONNECTION_KIND_")
REGISTRATION_KINDS = _choices(pb.RegistrationKind, "REGISTRATION_KIND_")
OFFICES = _choices(pb.Office, "OFFICE_")


def _choice(field: str, value: str, table: dict[str, int]) -> int:
    number = table.get(value)
    if number is None:
        raise InvalidCheckError(f"{field}: unknown value {value!r} (one of {', '.join(table)})")
    return number


def _aware(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCheckError("requested_until: give a timezone-aware datetime")
    return value


class Check:
    """One check, built for ``check_many``; take it with ``Check.connection`` and its twins."""

    __slots__ = ("message",)

    def __init__(self, message: pb.Check) -> None:
        self.message = message

    def __repr__(self) -> str:
        kind = self.message.WhichOneof("check")
        body = getattr(self.message, kind) if kind else None
        return f"Check.{kind}({'' if body is None else body.structure_id!r})"

    @classmethod
    def connection(
        cls,
        structure_id: str,
        *,
        utility: str,
        kind: str = "permanent",
        requested_until: datetime | None = None,
        application_id: str = "",
        receipt: bool = False,
        correlation_id: str = "",
    ) -> Check:
        """Art. 23: may ``utility`` (water, power, gas, heat) connect, ``permanent`` or
        ``temporary`` (construction-period supply, until ``requested_until`` at most)?"""
        message = pb.Check(correlation_id=correlation_id)
        body = message.connection
        body.structure_id = structure_id
        body.utility = _choice("utility", utility, UTILITIES)  # type: ignore[assignment]
        body.kind = _choice("kind", kind, CONNECTION_KINDS)  # type: ignore[assignment]
        body.application_id = application_id
        body.receipt = receipt
        if requested_until is not None:
            body.requested_until.FromDatetime(_aware(requested_until))
        return cls(message)

    @classmethod
    def registration(
        cls,
        structure_id: str,
        *,
        kind: str,
        application_id: str = "",
        receipt: bool = False,
        correlation_id: str = "",
    ) -> Check:
        """Art. 11: may the housing registry record an ``initial`` registration, a ``transfer``
        or a ``mortgage``?"""
        message = pb.Check(correlation_id=correlation_id)
        body = message.registration
        body.structure_id = structure_id
        body.kind = _choice("kind", kind, REGISTRATION_KINDS)  # type: ignore[assignment]
        body.application_id = application_id
        body.receipt = receipt
        return cls(message)

    @classmethod
    def premises(
        cls,
        structure_id: str,
        *,
        office: str,
        declared_use: str,
        application_id: str = "",
        receipt: bool = False,
        correlation_id: str = "",
    ) -> Check:
        """Art. 13: do the premises hold their permits for ``declared_use``? Notifying offices
        (market_regulation, culture, health, tax) must give ``application_id``."""
        message = pb.Check(correlation_id=correlation_id)
        body = message.premises
        body.structure_id = structure_id
        body.office = _choice("office", office, OFFICES)  # type: ignore[assignment]
        body.declared_use = declared_use
        body.application_id = application_id
        body.receipt = receipt
        return cls(message)


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that applied: ``code`` (``MISSING_PERMIT`` ...), the article, and the permit
    kind or violation case it is about."""

    code: str
    article: int
    message: str
    permit_kind: str | None = None
    case_id: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "article": self.article,
            "permit_kind": self.permit_kind,
            "case_id": self.case_id,
            "message": self.message,
        }


def _time(message: Any, field: str) -> datetime | None:
    return getattr(message, field).ToDatetime(tzinfo=UTC) if message.HasField(field) else None


@dataclass(frozen=True, slots=True)
class Decision:
    """The gate's answer to one check.

    ``valid_until`` bounds an ALLOW_TEMPORARY; ``notification_id`` is the notice recorded for the
    working group on NOTIFY; ``receipt`` is the signed receipt (DSSE JSON) when one was asked for.
    """

    verdict: Verdict
    reasons: tuple[Reason, ...]
    registry_version: int
    decision_id: str
    decided_at: datetime | None
    valid_until: datetime | None = None
    notification_id: str | None = None
    receipt: bytes | None = None
    correlation_id: str = ""

    @classmethod
    def from_proto(cls, message: pb.Decision) -> Decision:
        verdict = _VERDICTS.get(message.verdict)
        if verdict is None:
            raise InvalidCheckError(message.error or f"no verdict (value {message.verdict})")
        return cls(
            verdict=verdict,
            reasons=tuple(
                Reason(
                    code=_REASON_CODES.get(r.code, str(r.code)),
                    article=r.article,
                    message=r.message,
                    permit_kind=_PERMIT_KINDS.get(r.permit_kind) if r.permit_kind else None,
                    case_id=r.case_id or None,
                )
                for r in message.reasons
            ),
            registry_version=message.registry_version,
            decision_id=message.decision_id,
            decided_at=_time(message, "decided_at"),
            valid_until=_time(message, "valid_until"),
            notification_id=message.notification_id or None,
            receipt=message.receipt or None,
            correlation_id=message.correlation_id,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict.value,
            "reasons": [r.to_json() for r in self.reasons],
            "valid_until": None if self.valid_until is None else format_time(self.valid_until),
            "notification_id": self.notification_id,
            "registry_version": self.registry_version,
            "decision_id": self.decision_id,
            "decided_at": None if self.decided_at is None else format_time(self.decided_at),
            "correlation_id": self.correlation_id or None,
            "receipt": None if self.receipt is None else self.receipt.decode(),
        }


@dataclass(frozen=True, slots=True)
class Refused:
    """A check in ``check_many`` that the gate did not answer: invalid, or not answerable now.

    ``error`` names the field and why (``checks[3].connection.structure_id: ...``).
    """

    error: str
    correlation_id: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"error": self.error, "correlation_id": self.correlation_id or None}
