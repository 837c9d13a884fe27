"""Typed registry records and their JSON form.

A record is one line of an import file, one row of the registry, and one part of a signed status
record. ``parse_record`` is the single place where untrusted JSON becomes a typed record: it
checks every field and reports each problem as a ``FieldError`` naming the field, so importers and
verifiers print the same messages. The ``to_json`` methods give the normalised form (UTC times,
optional fields omitted when empty) that exports, events and signed records all use.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any, TypeVar

from permitgate_client.formats import format_time, parse_time

from registry.vocabulary import (
    BLOCKING_STAGES,
    Area,
    CaseKind,
    CaseSource,
    CaseStage,
    PermitKind,
    PermitStatus,
    id_error,
)

__all__ = [
    "Case",
    "FieldError",
    "InvalidRecord",
    "Permit",
    "Record",
    "StatusRecord",
    "Structure",
    "format_time",
    "parse_record",
    "parse_time",
]

_TEXT_MAX = 500
_E = TypeVar("_E", bound=StrEnum)
_MEMBERS: dict[type[StrEnum], dict[str, StrEnum]] = {
    kind: {m.value: m for m in kind}
    for kind in (Area, CaseKind, CaseSource, CaseStage, PermitKind, PermitStatus)
}


@dataclass(frozen=True, slots=True)
class FieldError:
    """One problem with one field of one record."""

    field: str
    why: str

    def __str__(self) -> str:
        return f"{self.field}: {self.why}"


class InvalidRecord(ValueError):
    """A record failed validation; ``errors`` lists every field at fault."""

    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True, slots=True)
class Structure:
    id: str
    area: Area
    district: str
    address: str | None = None
    declared_use: str | None = None

    @property
    def structure_id(self) -> str:
        return self.id

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "structure",
            "id": self.id,
            "area": self.area.value,
            "district": self.district,
        }
        if self.address is not None:
            out["address"] = self.address
        if self.declared_use is not None:
            out["declared_use"] = self.declared_use
        return out


@dataclass(frozen=True, slots=True)
class Permit:
    id: str
    structure: str
    kind: PermitKind
    status: PermitStatus
    issued: datetime
    expires: datetime | None = None
    use: str | None = None

    @property
    def structure_id(self) -> str:
        return self.structure

    def in_force(self, at: datetime) -> bool:
        """DOMAIN.md: valid, issued <= t, and no expiry or t < expires."""
        return (
            self.status is PermitStatus.VALID
            and self.issued <= at
            and (self.expires is None or at < self.expires)
        )

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "permit",
            "id": self.id,
            "structure": self.structure,
            "kind": self.kind.value,
            "status": self.status.value,
            "issued": format_time(self.issued),
        }
        if self.expires is not None:
            out["expires"] = format_time(self.expires)
        if self.use is not None:
            out["use"] = self.use
        return out


@dataclass(frozen=True, slots=True)
class Case:
    id: str
    structure: str
    kind: CaseKind
    stage: CaseStage
    source: CaseSource
    opened: datetime
    party: str | None = None
    """The builder or owner the case names (an organisation id, e.g. a unified social credit
    code), when known (Art. 22)."""
    party_suspended: bool = False
    """The deciding department said the party ignored a stop or demolition order: while the
    case blocks, planning and housing accept none of the party's other applications (Art. 22)."""

    @property
    def structure_id(self) -> str:
        return self.structure

    @property
    def suspends_party(self) -> bool:
        """True while this case keeps its party's other applications from being accepted."""
        return self.party_suspended and self.stage in BLOCKING_STAGES

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "type": "case",
            "id": self.id,
            "structure": self.structure,
            "kind": self.kind.value,
            "stage": self.stage.value,
            "source": self.source.value,
            "opened": format_time(self.opened),
        }
        if self.party is not None:
            out["party"] = self.party
        if self.party_suspended:
            out["party_suspended"] = True
        return out


Record = Structure | Permit | Case

_FIELDS: dict[str, tuple[frozenset[str], frozenset[str]]] = {
    # type: (required fields, optional fields), "type" itself excluded
    "structure": (frozenset({"id", "area", "district"}), frozenset({"address", "declared_use"})),
    "permit": (
        frozenset({"id", "structure", "kind", "status", "issued"}),
        frozenset({"expires", "use"}),
    ),
    "case": (
        frozenset({"id", "structure", "kind", "stage", "source", "opened"}),
        frozenset({"party", "party_suspended"}),
    ),
}


class _Reader:
    """Pulls typed fields out of one JSON object, collecting every error instead of stopping."""

    def __init__(self, obj: Mapping[str, Any]) -> None:
        self.obj = obj
        self.errors: list[FieldError] = []

    def fail(self, field: str, why: str) -> None:
        self.errors.append(FieldError(field, why))

    def text(self, field: str, *, optional: bool = False) -> str | None:
        value = self.obj.get(field)
        if (
            value.__class__ is str
            and 0 < len(value) <= _TEXT_MAX
            and not value.isspace()
            and "\x00" not in value
        ):
            return value  # the common case, checked cheaply
        if value is None:
            if not optional:
                self.fail(field, "missing")
            elif field in self.obj:
                self.fail(field, "must be a string, or left out")
            return None
        if not isinstance(value, str):
            self.fail(field, f"must be a string, not {type(value).__name__}")
            return None
        if not value.strip():
            self.fail(field, "must not be empty")
            return None
        if len(value) > _TEXT_MAX:
            self.fail(field, f"longer than {_TEXT_MAX} characters")
            return None
        if "\x00" in value:  # PostgreSQL text cannot hold NUL; refuse it on every backend
            self.fail(field, "must not contain NUL characters")
            return None
        return value

    def ident(self, field: str) -> str | None:
        value = self.text(field)
        if value is not None and (why := id_error(value)) is not None:
            self.fail(field, why)
            return None
        return value

    def enum(self, field: str, kind: type[_E]) -> _E | None:
        value = self.text(field)
        if value is None:
            return None
        member = _MEMBERS[kind].get(value)
        if member is None:
            allowed = ", ".join(m.value for m in kind)
            self.fail(field, f"unknown value {value!r} (one of: {allowed})")
        return member  # type: ignore[return-value]

    def time(self, field: str, *, optional: bool = False) -> datetime | None:
        value = self.text(field, optional=optional)
        if value is None:
            return None
        try:
            return parse_time(value)
        except ValueError as exc:
            self.fail(field, str(exc))
            return None


def parse_record(obj: Any) -> Record:
    """Validate one decoded JSON value as a registry record, or raise ``InvalidRecord``."""
    if not isinstance(obj, dict):
        raise InvalidRecord([FieldError("(line)", "not a JSON object")])
    kind = obj.get("type")
    if kind not in _FIELDS:
        why = "missing" if kind is None else f"unknown type {kind!r} (structure, permit or case)"
        raise InvalidRecord([FieldError("type", why)])
    required, optional = _FIELDS[kind]
    r = _Reader(obj)
    for field in sorted(obj.keys() - required - optional - {"type"}):
        r.fail(field, f"unknown field for a {kind}")
    record: Record | None = None
    if kind == "structure":
        sid, area, district = r.ident("id"), r.enum("area", Area), r.text("district")
        address, use = r.text("address", optional=True), r.text("declared_use", optional=True)
        if sid and area and district:
            record = Structure(sid, area, district, address, use)
    elif kind == "permit":
        pid, sid = r.ident("id"), r.ident("structure")
        pkind, status = r.enum("kind", PermitKind), r.enum("status", PermitStatus)
        issued, expires = r.time("issued"), r.time("expires", optional=True)
        use = r.text("use", optional=True)
        if issued and expires and expires <= issued:
            r.fail("expires", "must be after issued")
        if pkind is PermitKind.TEMPORARY_CONSTRUCTION_PLANNING and "expires" not in obj:
            r.fail("expires", "missing (a temporary construction planning permit always expires)")
        if pid and sid and pkind and status and issued:
            record = Permit(pid, sid, pkind, status, issued, expires, use)
    else:
        cid, sid = r.ident("id"), r.ident("structure")
        ckind, stage = r.enum("kind", CaseKind), r.enum("stage", CaseStage)
        source, opened = r.enum("source", CaseSource), r.time("opened")
        party = r.ident("party") if "party" in obj else None
        suspended = obj.get("party_suspended", False)
        if suspended is not False and suspended is not True:
            r.fail("party_suspended", "must be true or false")
        elif suspended and "party" not in obj:
            r.fail("party_suspended", "a case without a party suspends no one")
        if cid and sid and ckind and stage and source and opened:
            record = Case(cid, sid, ckind, stage, source, opened, party, suspended is True)
    if r.errors or record is None:
        raise InvalidRecord(r.errors or [FieldError("(line)", "invalid record")])
    return record


@dataclass(frozen=True, slots=True)
class StatusRecord:
    """Everything the registry says about one structure, as of one registry version.

    This is the payload of a signed status record: what caches hold and gates decide from.
    ``tree_size`` is the log size whose state it shows (every event of the structure has an
    index below it), so of two genuine records the larger ``tree_size`` is the newer;
    ``this_update`` and ``next_update`` bound how long it may be relied on.
    """

    structure: Structure
    permits: tuple[Permit, ...]
    cases: tuple[Case, ...]
    tree_size: int
    this_update: datetime
    next_update: datetime

    def __post_init__(self) -> None:
        sid = self.structure.id
        if any(p.structure != sid for p in self.permits) or any(
            c.structure != sid for c in self.cases
        ):
            raise ValueError(f"status record of {sid} holds another structure's permit or case")
        if self.tree_size < 1:
            raise ValueError("tree_size must be at least 1")
        if self.next_update <= self.this_update:
            raise ValueError("next_update must be after this_update")

    def to_json(self) -> dict[str, Any]:
        return {
            "structure": self.structure.to_json(),
            "permits": [p.to_json() for p in self.permits],
            "cases": [c.to_json() for c in self.cases],
            "tree_size": self.tree_size,
            "this_update": format_time(self.this_update),
            "next_update": format_time(self.next_update),
        }

    @classmethod
    def from_json(cls, obj: Any) -> StatusRecord:
        """Parse a decoded payload; raises ``ValueError`` naming the part at fault."""
        if not isinstance(obj, dict):
            raise ValueError("status record: not a JSON object")
        try:
            structure = parse_record(obj["structure"])
            permits = tuple(parse_record(p) for p in obj["permits"])
            cases = tuple(parse_record(c) for c in obj["cases"])
            tree_size = obj["tree_size"]
            this_update, next_update = (
                parse_time(obj["this_update"]),
                parse_time(obj["next_update"]),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"status record: malformed ({exc!r})") from exc
        if not isinstance(structure, Structure):
            raise ValueError("status record: structure is not a structure")
        if not all(isinstance(p, Permit) for p in permits):
            raise ValueError("status record: permits holds something else")
        if not all(isinstance(c, Case) for c in cases):
            raise ValueError("status record: cases holds something else")
        if not isinstance(tree_size, int) or isinstance(tree_size, bool):
            raise ValueError("status record: bad tree_size")
        return cls(
            structure,
            permits,  # type: ignore[arg-type]
            cases,  # type: ignore[arg-type]
            tree_size,
            this_update,
            next_update,
        )
