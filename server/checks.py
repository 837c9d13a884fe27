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

Most kinds are about one structure: the gate decides them on that structure's record. An
applicant check (Art. 22) is about a party, over every verified record that names it: its row
converts through ``over_registry``, which binds the registry to ask (``PartyRegistry``: the
embedded cache, or the shared cache, which refuses with ``WholeRegistryNeeded``); its
``structure_id`` is empty, so the gate looks no structure up for it.

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
    party_key,
)
from server.cache import PartyCases, WholeRegistryNeeded
from server.rules import (
    ARTICLE_APPLICANT,
    ARTICLE_CONNECTION,
    ARTICLE_PREMISES,
    ARTICLE_REGISTRATION,
    Decision,
    ReasonCode,
    Verdict,
    decide_applicant,
    decide_connection,
    decide_premises,
    decide_registration,
)

__all__ = [
    "ASKING",
    "CHECK_KINDS",
    "MAX_APPLICATION_ID",
    "MAX_TEXT",
    "ApplicantRequest",
    "Asking",
    "CheckKind",
    "CheckRequest",
    "ConnectionRequest",
    "InvalidCheck",
    "MemoKey",
    "PartyRegistry",
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


class Asking(StrEnum):
    """The department that asks about an applicant (Art. 22)."""

    PLANNING = "planning"
    HOUSING = "housing"


ASKING: Final = _by_name(pb.Asking, "ASKING_", Asking)
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
    def structure_id(self) -> str:
        """The structure the check is about; empty for a check about a party."""
        ...

    @property
    def subject_id(self) -> str:
        """What the decision log files the check under: the structure, or the party."""
        ...

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
    def subject_id(self) -> str:
        return self.structure_id

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
    def subject_id(self) -> str:
        return self.structure_id

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
    def subject_id(self) -> str:
        return self.structure_id

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


# --- Art. 22: applicants ------------------------------------------------------------------------


class PartyRegistry(Protocol):
    """Where an applicant check learns every verified case naming a party."""

    def cases_naming(self, party_id: str) -> PartyCases:
        """Every case of a verified current record naming ``party_id``; ``WholeRegistryNeeded``
        where that cannot be proved (a cache that holds only the structures asked of it)."""
        ...


class _NoRegistry:
    """The registry of an applicant request converted without one (``from_wire`` alone)."""

    def cases_naming(self, party_id: str) -> PartyCases:
        raise WholeRegistryNeeded("an applicant check is decided over the registry it is bound to")


_NO_REGISTRY: Final = _NoRegistry()


def _party_id(value: str) -> str:
    """The party asked about, as its comparison key (``party_key``), once it is a valid id."""
    key = party_key(value)
    why = id_error(key)
    if why is not None:
        raise InvalidCheck("party_id", why)
    return key


@dataclass(slots=True)
class ApplicantRequest:
    party_id: str
    asking: Asking
    application_id: str
    receipt: bool
    registry: PartyRegistry

    check_type: ClassVar[str] = "applicant"
    article: ClassVar[int] = ARTICLE_APPLICANT

    @classmethod
    def from_wire(
        cls, msg: pb.ApplicantCheck, now: datetime, registry: PartyRegistry = _NO_REGISTRY
    ) -> ApplicantRequest:
        return cls(
            _party_id(msg.party_id),
            _enum("asking", msg.asking, ASKING, pb.Asking),
            _application_id(msg.application_id),
            msg.receipt,
            registry,
        )

    @property
    def structure_id(self) -> str:
        return ""  # about a party: no structure for the gate to look up

    @property
    def subject_id(self) -> str:
        return self.party_id

    @property
    def notifying_office(self) -> str:
        return ""

    @property
    def memo_key(self) -> MemoKey | None:
        return None  # decided over the records naming the party, not one structure's

    def decide(self, record: StatusRecord | None, now: datetime, stale: bool) -> Decision:
        """Over every verified case naming the party (``record`` is None: no structure is
        looked up for a party); stale too when one of their records is past its next_update."""
        found = self.registry.cases_naming(self.party_id)
        if found.next_update is not None and found.next_update <= now:
            stale = True
        return decide_applicant(
            found.cases, now, stale, party=self.party_id, unverified=found.unverified
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.check_type,
            "party_id": self.party_id,
            "asking": self.asking.value,
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
    over_registry: Callable[[_M, datetime, PartyRegistry], CheckRequest] | None = None
    """For a kind decided over the whole registry (not one structure's record): the conversion
    that binds the registry; such a request converted by ``from_wire`` alone is refused."""

    @property
    def whole_registry(self) -> bool:
        """Whether only a gate that holds every verified record can answer this kind."""
        return self.over_registry is not None

    def convert(self, message: _M, now: datetime, registry: PartyRegistry) -> CheckRequest:
        """``from_wire``, bound to ``registry`` for a kind decided over the whole registry."""
        if self.over_registry is None:
            return self.from_wire(message, now)
        return self.over_registry(message, now, registry)


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
        CheckKind(
            ApplicantRequest.check_type,
            "CheckApplicant",
            pb.ApplicantCheck,
            ApplicantRequest.from_wire,
            ApplicantRequest.from_wire,
        ),
    )
}
"""Every kind of check, by name; the gate and the service dispatch through this table only."""
