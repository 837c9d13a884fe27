"""The kinds of check the gate answers, one unit each, and the one table that lists them.

A kind of check is: its typed request (a dataclass, made once per check and never changed;
not frozen, since a frozen dataclass's ``__init__`` costs ten times as much), the conversion
from its protobuf message (``from_wire``: every field validated, a bad one raising
``InvalidCheck(field, why)``, which the transport answers with ``INVALID_ARGUMENT``), its rule
(``decide``, which calls the pure ``decide_*`` function of ``server.rules``), its JSON form for
receipts and the decision log, and its memo key. ``CHECK_KINDS`` registers each kind once, with
its unary RPC and its field in the ``Check`` oneof of a batch; ``Gate`` and the gRPC service
dispatch through that table and nothing else. A new kind is a request class here, a row in the
table, and its messages in the proto.

The enum tables here are the only place where wire numbers meet rule vocabulary.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, ClassVar, Final, Generic, Protocol, TypeVar

from google.protobuf.message import Message
from permitgate_client.v1 import gate_pb2 as pb

from registry.records import StatusRecord, format_time
from registry.vocabulary import (
    NOTIFYING_OFFICES,
    ConnectionKind,
    Office,
    PermitKind,
    RegistrationKind,
    Utility,
    id_error,
)
from server.rules import (
    ARTICLE_CONNECTION,
    ARTICLE_PREMISES,
    ARTICLE_REGISTRATION,
    Decision,
    ReasonCode,
    Verdict,
    decide_connection,
    decide_premises,
    decide_registration,
)

__all__ = [
    "CHECK_KINDS",
    "MAX_APPLICATION_ID",
    "MAX_TEXT",
    "CheckKind",
    "CheckRequest",
    "ConnectionRequest",
    "InvalidCheck",
    "MemoKey",
    "PremisesRequest",
    "RegistrationRequest",
]

MAX_APPLICATION_ID: Final = 128
MAX_TEXT: Final = 500

MemoKey = tuple[str, ...]
"""What a decision depends on besides the status record (and ``now``): the memo's key."""

_E = TypeVar("_E", bound=StrEnum)


def _by_name(wire: Any, prefix: str, vocabulary: type[_E]) -> dict[int, _E]:
    """Wire number -> vocabulary member, matched by name (``UTILITY_WATER`` <-> ``WATER``)."""
    return {wire.Value(f"{prefix}{member.name}"): member for member in vocabulary}


UTILITIES: Final = _by_name(pb.Utility, "UTILITY_", Utility)
CONNECTION_KINDS: Final = _by_name(pb.ConnectionKind, "CONNECTION_KIND_", ConnectionKind)
REGISTRATION_KINDS: Final = _by_name(pb.RegistrationKind, "REGISTRATION_KIND_", RegistrationKind)
OFFICES: Final = _by_name(pb.Office, "OFFICE_", Office)
# The generated stubs type enum fields as their wrapper classes; the values are ints.
VERDICTS: Final[dict[Verdict, Any]] = {v: pb.Verdict.Value(f"VERDICT_{v.name}") for v in Verdict}
REASON_CODES: Final[dict[ReasonCode, Any]] = {
    code: pb.ReasonCode.Value(f"REASON_CODE_{code.value}") for code in ReasonCode
}
PERMIT_KINDS: Final[dict[PermitKind, Any]] = {
    kind: pb.PermitKind.Value(f"PERMIT_KIND_{kind.name}") for kind in PermitKind
}


class InvalidCheck(ValueError):
    """A request the gate cannot answer; ``field`` names the culprit."""

    def __init__(self, field: str, why: str) -> None:
        super().__init__(f"{field}: {why}")
        self.field = field
        self.why = why


class CheckRequest(Protocol):
    """What the gate needs of any kind of check (each request class below has all of it)."""

    check_type: ClassVar[str]
    article: ClassVar[int]

    @property
    def structure_id(self) -> str: ...
    @property
    def application_id(self) -> str: ...
    @property
    def receipt(self) -> bool: ...
    @property
    def notifying_office(self) -> str:
        """The office a NOTIFY answer is recorded for; empty for checks that never notify."""
        ...

    @property
    def memo_key(self) -> MemoKey | None:
        """What the decision depends on besides the record; None when it also depends on now."""
        ...

    def decide(self, record: StatusRecord | None, now: datetime, stale: bool) -> Decision:
        """The rule: the decision on ``record`` (None: the structure is not held) at ``now``."""
        ...

    def to_json(self) -> dict[str, Any]:
        """The check as asked, for receipts and the decision log."""
        ...


# --- Field rules ---------------------------------------------------------------------------------

_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_LINE_SPACE: Final = str.maketrans("\t\r\n", "   ")


def _no_control(field: str, value: str, start: int = 0, end: int | None = None) -> None:
    """Refuse control characters in ``value[start:end]`` (NUL, escapes, line breaks ...)."""
    found = _CONTROL.search(value, start, len(value) if end is None else end)
    if found is not None:
        raise InvalidCheck(
            field,
            f"must not contain control characters (U+0000-U+001F, U+007F-U+009F):"
            f" U+{ord(found.group()):04X} at position {found.start()}",
        )


def _structure_id(value: str) -> str:
    why = id_error(value)
    if why is not None:
        raise InvalidCheck("structure_id", why)
    return value


def _application_id(value: str) -> str:
    if len(value) > MAX_APPLICATION_ID:
        raise InvalidCheck("application_id", f"longer than {MAX_APPLICATION_ID} characters")
    _no_control("application_id", value)
    return value


def _enum(field: str, value: int, table: Mapping[int, _E], wire: Any) -> _E:
    member = table.get(value)
    if member is None:
        names = ", ".join(wire.Name(v) for v in table)
        if value == 0:
            raise InvalidCheck(field, f"must be set (one of {names})")
        raise InvalidCheck(field, f"unknown value {value} (one of {names})")
    return member


# --- Art. 23: connections ------------------------------------------------------------------------


@dataclass(slots=True)
class ConnectionRequest:
    structure_id: str
    utility: Utility
    kind: ConnectionKind
    requested_until: datetime | None
    application_id: str
    receipt: bool

    check_type: ClassVar[str] = "connection"
    article: ClassVar[int] = ARTICLE_CONNECTION

    @classmethod
    def from_wire(cls, msg: pb.ConnectionCheck, now: datetime) -> ConnectionRequest:
        requested_until = None
        if msg.HasField("requested_until"):
            try:
                requested_until = msg.requested_until.ToDatetime(tzinfo=UTC)
            except (ValueError, OverflowError) as exc:
                raise InvalidCheck("requested_until", f"not a valid time ({exc})") from exc
            if requested_until <= now:
                raise InvalidCheck(
                    "requested_until", f"{format_time(requested_until)} is in the past"
                )
        return cls(
            _structure_id(msg.structure_id),
            _enum("utility", msg.utility, UTILITIES, pb.Utility),
            _enum("kind", msg.kind, CONNECTION_KINDS, pb.ConnectionKind),
            requested_until,
            _application_id(msg.application_id),
            msg.receipt,
        )

    @property
    def notifying_office(self) -> str:
        return ""

    @property
    def memo_key(self) -> MemoKey | None:
        if self.kind is ConnectionKind.TEMPORARY:
            return None  # valid_until counts from now
        return ("connection", self.structure_id, self.kind)  # every utility alike

    def decide(self, record: StatusRecord | None, now: datetime, stale: bool) -> Decision:
        return decide_connection(
            record,
            utility=self.utility,
            kind=self.kind,
            now=now,
            requested_until=self.requested_until,
            stale=stale,
        )

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


# --- Art. 11: registrations ----------------------------------------------------------------------


@dataclass(slots=True)
class RegistrationRequest:
    structure_id: str
    kind: RegistrationKind
    application_id: str
    receipt: bool

    check_type: ClassVar[str] = "registration"
    article: ClassVar[int] = ARTICLE_REGISTRATION

    @classmethod
    def from_wire(cls, msg: pb.RegistrationCheck, now: datetime) -> RegistrationRequest:
        return cls(
            _structure_id(msg.structure_id),
            _enum("kind", msg.kind, REGISTRATION_KINDS, pb.RegistrationKind),
            _application_id(msg.application_id),
            msg.receipt,
        )

    @property
    def notifying_office(self) -> str:
        return ""

    @property
    def memo_key(self) -> MemoKey | None:
        return ("registration", self.structure_id, self.kind)

    def decide(self, record: StatusRecord | None, now: datetime, stale: bool) -> Decision:
        return decide_registration(record, kind=self.kind, now=now, stale=stale)

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.check_type,
            "structure_id": self.structure_id,
            "kind": self.kind.value,
            "application_id": self.application_id,
        }


# --- Art. 13: premises ---------------------------------------------------------------------------


@dataclass(slots=True)
class PremisesRequest:
    structure_id: str
    office: Office
    declared_use: str
    application_id: str
    receipt: bool

    check_type: ClassVar[str] = "premises"
    article: ClassVar[int] = ARTICLE_PREMISES

    @classmethod
    def from_wire(cls, msg: pb.PremisesCheck, now: datetime) -> PremisesRequest:
        structure_id = _structure_id(msg.structure_id)
        office = _enum("office", msg.office, OFFICES, pb.Office)
        declared_use = msg.declared_use
        use = declared_use.strip()  # surrounding white space (a tab too) is ignored, not refused
        if not use:
            raise InvalidCheck("declared_use", "required: the use the applicant declares")
        if len(declared_use) > MAX_TEXT:
            raise InvalidCheck("declared_use", f"longer than {MAX_TEXT} characters")
        # Around the use, white space (spaces, tabs, line breaks) is ignored; other control
        # characters, which str.strip() would also take (U+001C-U+001F, U+0085), are refused.
        # Inside the use, no control character at all.
        _no_control("declared_use", declared_use.translate(_LINE_SPACE))
        first = len(declared_use) - len(declared_use.lstrip())
        _no_control("declared_use", declared_use, first, first + len(use))
        application_id = _application_id(msg.application_id)
        if office in NOTIFYING_OFFICES and not application_id.strip():
            raise InvalidCheck(
                "application_id",
                f"required for a notifying office ({office.value}): the notice to the working"
                " group is one per office, application and structure",
            )
        return cls(structure_id, office, declared_use, application_id, msg.receipt)

    @property
    def notifying_office(self) -> str:
        return self.office.value if self.office in NOTIFYING_OFFICES else ""

    @property
    def memo_key(self) -> MemoKey | None:
        return ("premises", self.structure_id, self.office, self.declared_use)

    def decide(self, record: StatusRecord | None, now: datetime, stale: bool) -> Decision:
        return decide_premises(
            record, office=self.office, declared_use=self.declared_use, now=now, stale=stale
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.check_type,
            "structure_id": self.structure_id,
            "office": self.office.value,
            "declared_use": self.declared_use,
            "application_id": self.application_id,
        }


# --- The table -----------------------------------------------------------------------------------

_M = TypeVar("_M", bound=Message)


@dataclass(frozen=True, slots=True)
class CheckKind(Generic[_M]):
    """One kind of check as the transport sees it; the request class does the rest."""

    name: str
    """Its field in the ``Check`` oneof, and ``check_type`` in receipts and the decision log."""
    method: str
    """Its unary RPC in ``permitgate.v1.PermitGate``."""
    message: type[_M]
    """The request message of that RPC (and of its field in ``Check``)."""
    from_wire: Callable[[_M, datetime], CheckRequest]
    """Validating conversion: the typed request, or ``InvalidCheck`` naming the field."""


CHECK_KINDS: Final[Mapping[str, CheckKind[Any]]] = {
    kind.name: kind
    for kind in (
        CheckKind(
            ConnectionRequest.check_type,
            "CheckConnection",
            pb.ConnectionCheck,
            ConnectionRequest.from_wire,
        ),
        CheckKind(
            RegistrationRequest.check_type,
            "CheckRegistration",
            pb.RegistrationCheck,
            RegistrationRequest.from_wire,
        ),
        CheckKind(
            PremisesRequest.check_type,
            "VerifyPremises",
            pb.PremisesCheck,
            PremisesRequest.from_wire,
        ),
    )
}
"""Every kind of check, by name; the gate and the service dispatch through this table only."""
