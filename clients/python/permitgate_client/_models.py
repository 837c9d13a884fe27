"""What a caller sends and gets back, typed: ``Check``, ``Decision``, ``Reason``, ``Verdict``,
``Refused``.

``Check`` builds one wire check from keyword arguments (the same ones the single calls take) and
validates what can be validated without the gate: the choice fields, the types, the time zone.
Every other rule (ids, lengths, times in the past) is the gate's, which answers INVALID_ARGUMENT
naming the field.

``Decision`` wraps the wire answer and converts on first use: ``check_many`` hands out tens of
thousands of them a second, and most callers read the verdict and little else, so the reasons
and the times are decoded when asked for (once) rather than for every answer.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from google.protobuf.timestamp_pb2 import Timestamp

from permitgate_client._errors import GateError, InvalidCheckError
from permitgate_client._times import format_time
from permitgate_client.v1 import gate_pb2 as pb

__all__ = [
    "ASKING",
    "CONNECTION_KINDS",
    "OFFICES",
    "REGISTRATION_KINDS",
    "UTILITIES",
    "Check",
    "Decision",
    "Reason",
    "Refused",
    "Verdict",
]


class Verdict(StrEnum):
    """The gate's answer; the members run weakest first (``DENY`` > ``REVIEW`` > ``NOTIFY`` >
    ``ALLOW_TEMPORARY`` > ``ALLOW``). A ``str``: ``Verdict.ALLOW == "ALLOW"``."""

    ALLOW = "ALLOW"
    ALLOW_TEMPORARY = "ALLOW_TEMPORARY"
    NOTIFY = "NOTIFY"
    REVIEW = "REVIEW"
    DENY = "DENY"

    @property
    def allows(self) -> bool:
        """True for ALLOW and ALLOW_TEMPORARY only; False for NOTIFY, REVIEW and DENY.

        A NOTIFY lets a notifying office go on, but the working group was told of a problem:
        test for it apart (``verdict is Verdict.NOTIFY``) rather than through ``allows``."""
        return self in (Verdict.ALLOW, Verdict.ALLOW_TEMPORARY)


_VERDICTS = {int(pb.Verdict.Value(f"VERDICT_{v.value}")): v for v in Verdict}
_REASON_CODES = {
    number: name.removeprefix("REASON_CODE_") for name, number in pb.ReasonCode.items()
}
_PERMIT_KINDS = {
    number: name.removeprefix("PERMIT_KIND_").lower() for name, number in pb.PermitKind.items()
}


def _choices(enum: Any, prefix: str) -> dict[str, int]:
    """A wire enum's values by the name a caller gives (``UTILITY_WATER`` -> ``water``), in
    the wire's order, without the unspecified one."""
    return {
        name.removeprefix(prefix).lower(): number
        for name, number in enum.items()
        if not name.endswith("_UNSPECIFIED")
    }


_UTILITY_NUMBERS = _choices(pb.Utility, "UTILITY_")
_CONNECTION_KIND_NUMBERS = _choices(pb.ConnectionKind, "CONNECTION_KIND_")
_REGISTRATION_KIND_NUMBERS = _choices(pb.RegistrationKind, "REGISTRATION_KIND_")
_OFFICE_NUMBERS = _choices(pb.Office, "OFFICE_")
_ASKING_NUMBERS = _choices(pb.Asking, "ASKING_")

UTILITIES: tuple[str, ...] = tuple(_UTILITY_NUMBERS)
"""What ``utility`` may be in a connection check (water, power, gas, heat), in the wire's order."""
CONNECTION_KINDS: tuple[str, ...] = tuple(_CONNECTION_KIND_NUMBERS)
"""What ``kind`` may be in a connection check (permanent, temporary)."""
REGISTRATION_KINDS: tuple[str, ...] = tuple(_REGISTRATION_KIND_NUMBERS)
"""What ``kind`` may be in a registration check (initial, transfer, mortgage)."""
OFFICES: tuple[str, ...] = tuple(_OFFICE_NUMBERS)
"""What ``office`` may be in a premises check: the notifying and the blocking offices."""
ASKING: tuple[str, ...] = tuple(_ASKING_NUMBERS)
"""Who may ask about an applicant (Art. 22): planning, housing."""


def _choice(field: str, value: str, table: dict[str, int]) -> int:
    try:
        number = table.get(value)
    except TypeError:  # unhashable
        number = None
    if number is None:
        raise InvalidCheckError(f"{field}: unknown value {value!r} (one of {', '.join(table)})")
    return number


def _until(value: object) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"requested_until: expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidCheckError("requested_until: give a timezone-aware datetime")
    try:
        Timestamp().FromDatetime(value)  # what the wire can carry: refused now, not when sent
    except (OverflowError, ValueError) as exc:
        raise InvalidCheckError(f"requested_until: out of range ({value.isoformat()})") from exc
    return value


def _blame(fields: Iterable[tuple[str, object, type]]) -> None:
    """Raise a TypeError naming the first field whose value is not of its type."""
    for name, value, kind in fields:
        if not isinstance(value, kind):
            raise TypeError(f"{name}: expected {kind.__name__}, got {type(value).__name__}")


class Check:
    """One check for ``check_many``: build it with ``Check.connection``, ``Check.registration``,
    ``Check.premises`` or ``Check.applicant``, which take the keyword arguments of the single
    calls (and a ``correlation_id``, echoed in the answer).

    A check holds plain values, validated when it is built; ``check_many`` writes them straight
    into the batch it sends, so a check costs no wire message of its own. Checks compare and
    hash by value.
    """

    __slots__ = ("_values", "correlation_id", "kind")

    kind: str
    """``connection``, ``registration``, ``premises`` or ``applicant``."""
    correlation_id: str
    """Echoed in the answer's ``correlation_id``."""

    def __init__(self, kind: str, values: tuple[Any, ...], correlation_id: str) -> None:
        self.kind = kind
        self._values = values
        self.correlation_id = correlation_id

    @property
    def structure_id(self) -> str:
        """The structure the check is about; for an applicant check, the party."""
        structure_id: str = self._values[0]
        return structure_id

    @property
    def message(self) -> pb.Check:
        """The wire message (``permitgate.v1.Check``), built afresh on each access."""
        message = pb.Check()
        self.write(message)
        return message

    def write(self, message: pb.Check) -> None:
        """Fill an empty ``permitgate.v1.Check`` (one of a batch's, say) with this check."""
        if self.correlation_id:
            message.correlation_id = self.correlation_id
        kind, values = self.kind, self._values
        body: pb.ConnectionCheck | pb.RegistrationCheck | pb.PremisesCheck | pb.ApplicantCheck
        if kind == "connection":
            sid, utility, connection_kind, until, application_id, receipt = values
            body = connection = message.connection
            connection.structure_id = sid
            connection.utility = utility
            connection.kind = connection_kind
            if until is not None:
                connection.requested_until.FromDatetime(until)
        elif kind == "registration":
            sid, registration_kind, application_id, receipt = values
            body = registration = message.registration
            registration.structure_id = sid
            registration.kind = registration_kind
        elif kind == "applicant":
            party_id, asking, application_id, receipt = values
            body = applicant = message.applicant
            applicant.party_id = party_id
            applicant.asking = asking
        else:
            sid, office, declared_use, application_id, receipt = values
            body = premises = message.premises
            premises.structure_id = sid
            premises.office = office
            premises.declared_use = declared_use
        if application_id:
            body.application_id = application_id
        if receipt:
            body.receipt = True

    def __repr__(self) -> str:
        return f"Check.{self.kind}({self.structure_id!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Check):
            return NotImplemented
        return (self.kind, self._values, self.correlation_id) == (
            other.kind,
            other._values,
            other.correlation_id,
        )

    def __hash__(self) -> int:
        return hash((self.kind, self._values, self.correlation_id))

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
        if (
            type(structure_id) is not str
            or type(application_id) is not str
            or type(receipt) is not bool
            or type(correlation_id) is not str
        ):
            _blame(
                (
                    ("structure_id", structure_id, str),
                    ("application_id", application_id, str),
                    ("receipt", receipt, bool),
                    ("correlation_id", correlation_id, str),
                )
            )
        values = (
            structure_id,
            _choice("utility", utility, _UTILITY_NUMBERS),
            _choice("kind", kind, _CONNECTION_KIND_NUMBERS),
            None if requested_until is None else _until(requested_until),
            application_id,
            receipt,
        )
        return cls("connection", values, correlation_id)

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
        if (
            type(structure_id) is not str
            or type(application_id) is not str
            or type(receipt) is not bool
            or type(correlation_id) is not str
        ):
            _blame(
                (
                    ("structure_id", structure_id, str),
                    ("application_id", application_id, str),
                    ("receipt", receipt, bool),
                    ("correlation_id", correlation_id, str),
                )
            )
        values = (
            structure_id,
            _choice("kind", kind, _REGISTRATION_KIND_NUMBERS),
            application_id,
            receipt,
        )
        return cls("registration", values, correlation_id)

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
        if (
            type(structure_id) is not str
            or type(declared_use) is not str
            or type(application_id) is not str
            or type(receipt) is not bool
            or type(correlation_id) is not str
        ):
            _blame(
                (
                    ("structure_id", structure_id, str),
                    ("declared_use", declared_use, str),
                    ("application_id", application_id, str),
                    ("receipt", receipt, bool),
                    ("correlation_id", correlation_id, str),
                )
            )
        values = (
            structure_id,
            _choice("office", office, _OFFICE_NUMBERS),
            declared_use,
            application_id,
            receipt,
        )
        return cls("premises", values, correlation_id)

    @classmethod
    def applicant(
        cls,
        party_id: str,
        *,
        asking: str,
        application_id: str = "",
        receipt: bool = False,
        correlation_id: str = "",
    ) -> Check:
        """Art. 22: may ``planning`` (or ``housing``) accept an application of ``party_id``
        (an organisation named by cases)? DENY with ``PARTY_SUSPENDED`` while a case suspends
        the party for ignoring a stop or demolition order."""
        if (
            type(party_id) is not str
            or type(application_id) is not str
            or type(receipt) is not bool
            or type(correlation_id) is not str
        ):
            _blame(
                (
                    ("party_id", party_id, str),
                    ("application_id", application_id, str),
                    ("receipt", receipt, bool),
                    ("correlation_id", correlation_id, str),
                )
            )
        values = (party_id, _choice("asking", asking, _ASKING_NUMBERS), application_id, receipt)
        return cls("applicant", values, correlation_id)


@dataclass(frozen=True, slots=True)
class Reason:
    """One rule that applied: ``code`` (``MISSING_PERMIT`` ...), the article, and the permit
    kind (``construction_planning`` ...) or violation case it is about, when it is about one."""

    code: str
    article: int
    message: str
    permit_kind: str | None = None
    case_id: str | None = None

    @classmethod
    def from_proto(cls, message: pb.Reason) -> Reason:
        """From a ``permitgate.v1.Reason`` message (an unknown code keeps its number)."""
        return cls(
            code=_REASON_CODES.get(message.code, str(message.code)),
            article=message.article,
            message=message.message,
            permit_kind=_PERMIT_KINDS.get(message.permit_kind) if message.permit_kind else None,
            case_id=message.case_id or None,
        )

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``permitgate check --json`` prints it)."""
        return {
            "code": self.code,
            "article": self.article,
            "permit_kind": self.permit_kind,
            "case_id": self.case_id,
            "message": self.message,
        }


class Decision:
    """The gate's answer to one check.

    ``verdict`` is a ``Verdict``; ``reasons`` the rules that applied; ``valid_until`` (aware, UTC)
    bounds an ALLOW_TEMPORARY; ``notification_id`` is the notice recorded for the working group on
    NOTIFY; ``receipt`` the signed receipt (DSSE JSON bytes) when one was asked for; also
    ``decision_id``, ``decided_at`` (aware, UTC), ``registry_version`` (the registry tree size
    the answer rests on) and ``correlation_id`` (a batch check's, echoed). Read-only; two
    decisions are equal when every field is.
    """

    # The decoded reasons and times fill their slots on first use (unset until then).
    __slots__ = ("_decided_at", "_message", "_reasons", "_valid_until", "verdict")

    verdict: Verdict
    _reasons: tuple[Reason, ...]
    _decided_at: datetime | None
    _valid_until: datetime | None

    def __init__(self, message: pb.Decision, verdict: Verdict) -> None:
        self._message = message
        self.verdict = verdict

    @classmethod
    def from_proto(cls, message: pb.Decision) -> Decision:
        """From a ``permitgate.v1.Decision`` message; ``GateError`` if it carries no verdict
        this client knows (a batch's refused check is a ``Refused``, not a ``Decision``)."""
        verdict = _VERDICTS.get(message.verdict)
        if verdict is None:
            raise GateError(
                f"the gate's answer has no verdict this client knows (value {message.verdict})"
                + (f": {message.error}" if message.error else "")
            )
        return cls(message, verdict)

    @property
    def reasons(self) -> tuple[Reason, ...]:
        """The rules that applied, as the gate listed them (empty for a plain ALLOW)."""
        try:
            return self._reasons
        except AttributeError:
            self._reasons = tuple(Reason.from_proto(r) for r in self._message.reasons)
            return self._reasons

    @property
    def valid_until(self) -> datetime | None:
        """Until when an ALLOW_TEMPORARY holds (aware, UTC); None for other verdicts."""
        try:
            return self._valid_until
        except AttributeError:
            self._valid_until = _time(self._message, "valid_until")
            return self._valid_until

    @property
    def decided_at(self) -> datetime | None:
        """When the gate decided (aware, UTC)."""
        try:
            return self._decided_at
        except AttributeError:
            self._decided_at = _time(self._message, "decided_at")
            return self._decided_at

    @property
    def notification_id(self) -> str | None:
        """For NOTIFY: the id of the notice recorded for the working group."""
        return self._message.notification_id or None

    @property
    def receipt(self) -> bytes | None:
        """The signed receipt (a DSSE envelope, JSON) when the check asked for one."""
        return self._message.receipt or None

    @property
    def registry_version(self) -> int:
        """The registry tree size (version) the answer rests on."""
        return self._message.registry_version

    @property
    def decision_id(self) -> str:
        """The gate's id for this decision, as in its decision log and the receipt."""
        return self._message.decision_id

    @property
    def correlation_id(self) -> str:
        """In ``check_many``: the ``correlation_id`` the check was given ("" otherwise)."""
        return self._message.correlation_id

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Decision) and self._message == other._message

    def __hash__(self) -> int:
        return hash((self.verdict, self.decision_id, self.correlation_id))

    def __repr__(self) -> str:
        fields = (
            f"verdict={self.verdict.value!r}",
            f"reasons={[r.code for r in self.reasons]!r}",
            f"decision_id={self.decision_id!r}",
            f"registry_version={self.registry_version}",
            *((f"valid_until={format_time(self.valid_until)}",) if self.valid_until else ()),
            *((f"notification_id={self.notification_id!r}",) if self.notification_id else ()),
            *((f"receipt=<{len(self.receipt)} bytes>",) if self.receipt else ()),
            *((f"correlation_id={self.correlation_id!r}",) if self.correlation_id else ()),
        )
        return f"Decision({', '.join(fields)})"

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict (``permitgate check --json`` prints it; times as RFC 3339)."""
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


def _time(message: pb.Decision, field: str) -> datetime | None:
    if not message.HasField(field):
        return None
    stamp: Timestamp = getattr(message, field)
    return stamp.ToDatetime(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Refused:
    """A check in ``check_many`` that the gate did not answer: invalid, or not answerable now.

    ``index`` is the check's position in what was given to ``check_many``; ``error`` names the
    field and why, as the gate put it (``checks[3].connection.structure_id: ...``, where 3 is
    the position in its batch).
    """

    index: int
    error: str
    correlation_id: str = ""

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {
            "error": self.error,
            "correlation_id": self.correlation_id or None,
            "index": self.index,
        }
