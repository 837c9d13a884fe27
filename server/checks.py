"""The three checks as typed requests, and their conversion from and to the wire.

``*_request`` functions turn a protobuf message into a validated request or raise
``InvalidCheck`` naming the field, which the transport maps to ``INVALID_ARGUMENT``. The enum
tables here are the only place where wire numbers meet rule vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from permitgate_client.v1 import gate_pb2 as pb

from registry.records import format_time
from registry.vocabulary import PermitKind
from server.rules import (
    ARTICLE_CONNECTION,
    ARTICLE_PREMISES,
    ARTICLE_REGISTRATION,
    ConnectionKind,
    Office,
    ReasonCode,
    RegistrationKind,
    Utility,
    Verdict,
)

__all__ = [
    "CheckRequest",
    "ConnectionRequest",
    "InvalidCheck",
    "PremisesRequest",
    "RegistrationRequest",
    "connection_request",
    "premises_request",
    "registration_request",
]

MAX_ID = 128
MAX_TEXT = 500

UTILITIES = {
    pb.UTILITY_WATER: Utility.WATER,
    pb.UTILITY_POWER: Utility.POWER,
    pb.UTILITY_GAS: Utility.GAS,
    pb.UTILITY_HEAT: Utility.HEAT,
}
CONNECTION_KINDS = {
    pb.CONNECTION_KIND_PERMANENT: ConnectionKind.PERMANENT,
    pb.CONNECTION_KIND_TEMPORARY: ConnectionKind.TEMPORARY,
}
REGISTRATION_KINDS = {
    pb.REGISTRATION_KIND_INITIAL: RegistrationKind.INITIAL,
    pb.REGISTRATION_KIND_TRANSFER: RegistrationKind.TRANSFER,
    pb.REGISTRATION_KIND_MORTGAGE: RegistrationKind.MORTGAGE,
}
OFFICES = {
    pb.OFFICE_MARKET_REGULATION: Office.MARKET_REGULATION,
    pb.OFFICE_CULTURE: Office.CULTURE,
    pb.OFFICE_HEALTH: Office.HEALTH,
    pb.OFFICE_TAX: Office.TAX,
    pb.OFFICE_CIVIL_DEFENSE: Office.CIVIL_DEFENSE,
    pb.OFFICE_ENVIRONMENT: Office.ENVIRONMENT,
    pb.OFFICE_FIRE: Office.FIRE,
}
VERDICTS = {
    Verdict.ALLOW: pb.VERDICT_ALLOW,
    Verdict.ALLOW_TEMPORARY: pb.VERDICT_ALLOW_TEMPORARY,
    Verdict.NOTIFY: pb.VERDICT_NOTIFY,
    Verdict.REVIEW: pb.VERDICT_REVIEW,
    Verdict.DENY: pb.VERDICT_DENY,
}
# The generated stubs type enum fields as their wrapper classes; the values are ints.
REASON_CODES: dict[ReasonCode, Any] = {
    code: pb.ReasonCode.Value(f"REASON_CODE_{code.value}") for code in ReasonCode
}
PERMIT_KINDS: dict[PermitKind, Any] = {
    kind: pb.PermitKind.Value(f"PERMIT_KIND_{kind.name}") for kind in PermitKind
}


class InvalidCheck(ValueError):
    """A request the gate cannot answer; ``field`` names the culprit."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


@dataclass(frozen=True, slots=True)
class ConnectionRequest:
    structure_id: str
    utility: Utility
    kind: ConnectionKind
    requested_until: datetime | None
    application_id: str
    receipt: bool

    check_type = "connection"
    article = ARTICLE_CONNECTION

    @property
    def memo_key(self) -> tuple[str, ...] | None:
        """What the decision depends on besides the record; None when it also depends on now."""
        if self.kind is ConnectionKind.TEMPORARY:
            return None  # valid_until counts from now
        return ("connection", self.structure_id, self.kind.value)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.check_type,
            "structure_id": self.structure_id,
            "utility": self.utility.value,
            "kind": self.kind.value,
            "requested_until": None
            if self.requested_until is None
            else format_time(self.requested_until),
            "application_id": self.application_id,
        }


@dataclass(frozen=True, slots=True)
class RegistrationRequest:
    structure_id: str
    kind: RegistrationKind
    application_id: str
    receipt: bool

    check_type = "registration"
    article = ARTICLE_REGISTRATION

    @property
    def memo_key(self) -> tuple[str, ...] | None:
        return ("registration", self.structure_id, self.kind.value)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.check_type,
            "structure_id": self.structure_id,
            "kind": self.kind.value,
            "application_id": self.application_id,
        }


@dataclass(frozen=True, slots=True)
class PremisesRequest:
    structure_id: str
    office: Office
    declared_use: str
    application_id: str
    receipt: bool

    check_type = "premises"
    article = ARTICLE_PREMISES

    @property
    def memo_key(self) -> tuple[str, ...] | None:
        return ("premises", self.structure_id, self.office.value, self.declared_use)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.check_type,
            "structure_id": self.structure_id,
            "office": self.office.value,
            "declared_use": self.declared_use,
            "application_id": self.application_id,
        }


CheckRequest = ConnectionRequest | RegistrationRequest | PremisesRequest


def _structure_id(value: str) -> str:
    if not value.strip():
        raise InvalidCheck("structure_id", "must not be empty")
    if len(value) > MAX_ID:
        raise InvalidCheck("structure_id", f"longer than {MAX_ID} characters")
    return value


def _application_id(value: str) -> str:
    if len(value) > MAX_ID:
        raise InvalidCheck("application_id", f"longer than {MAX_ID} characters")
    return value


def _enum(field: str, value: int, table: dict[Any, Any], enum: Any) -> Any:
    member = table.get(value)
    if member is None:
        names = ", ".join(enum.Name(v) for v in table)
        if value == 0:
            raise InvalidCheck(field, f"must be set (one of {names})")
        raise InvalidCheck(field, f"unknown value {value} (one of {names})")
    return member


def connection_request(msg: pb.ConnectionCheck, now: datetime) -> ConnectionRequest:
    requested_until = None
    if msg.HasField("requested_until"):
        try:
            requested_until = msg.requested_until.ToDatetime(tzinfo=UTC)
        except (ValueError, OverflowError) as exc:
            raise InvalidCheck("requested_until", f"not a valid time ({exc})") from exc
        if requested_until <= now:
            raise InvalidCheck("requested_until", f"{format_time(requested_until)} is in the past")
    return ConnectionRequest(
        _structure_id(msg.structure_id),
        _enum("utility", msg.utility, UTILITIES, pb.Utility),
        _enum("kind", msg.kind, CONNECTION_KINDS, pb.ConnectionKind),
        requested_until,
        _application_id(msg.application_id),
        msg.receipt,
    )


def registration_request(msg: pb.RegistrationCheck, now: datetime) -> RegistrationRequest:
    return RegistrationRequest(
        _structure_id(msg.structure_id),
        _enum("kind", msg.kind, REGISTRATION_KINDS, pb.RegistrationKind),
        _application_id(msg.application_id),
        msg.receipt,
    )


def premises_request(msg: pb.PremisesCheck, now: datetime) -> PremisesRequest:
    office = _enum("office", msg.office, OFFICES, pb.Office)
    if not msg.declared_use.strip():
        raise InvalidCheck("declared_use", "required: the use the applicant declares")
    if len(msg.declared_use) > MAX_TEXT:
        raise InvalidCheck("declared_use", f"longer than {MAX_TEXT} characters")
    return PremisesRequest(
        _structure_id(msg.structure_id),
        office,
        msg.declared_use,
        _application_id(msg.application_id),
        msg.receipt,
    )
