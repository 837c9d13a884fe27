"""parse_record's field checks, RFC 3339 times, and StatusRecord's JSON form."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from enum import StrEnum
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from registry.canonical import canonical_json
from registry.records import (
    Case,
    FieldError,
    InvalidRecord,
    Permit,
    StatusRecord,
    Structure,
    format_time,
    parse_record,
    parse_time,
)
from registry.vocabulary import (
    ID_RULE,
    Area,
    CaseKind,
    CaseSource,
    CaseStage,
    PermitKind,
    PermitStatus,
    id_error,
)

T0 = datetime(2024, 3, 1, tzinfo=UTC)
T1 = datetime(2024, 3, 2, tzinfo=UTC)


def structure_json(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {"type": "structure", "id": "S-1", "area": "urban", "district": "Xi"}
    obj.update(changes)
    return obj


def permit_json(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "permit",
        "id": "P-1",
        "structure": "S-1",
        "kind": "construction_planning",
        "status": "valid",
        "issued": "2024-03-01T00:00:00Z",
    }
    obj.update(changes)
    return obj


def case_json(**changes: Any) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "type": "case",
        "id": "C-1",
        "structure": "S-1",
        "kind": "no_planning_permit",
        "stage": "reported",
        "source": "patrol",
        "opened": "2024-03-01T00:00:00Z",
    }
    obj.update(changes)
    return obj


BUILDERS = {"structure": structure_json, "permit": permit_json, "case": case_json}
REQUIRED = {
    "structure": ["id", "area", "district"],
    "permit": ["id", "structure", "kind", "status", "issued"],
    "case": ["id", "structure", "kind", "stage", "source", "opened"],
}
ENUMS: list[tuple[str, str, type[StrEnum]]] = [
    ("structure", "area", Area),
    ("permit", "kind", PermitKind),
    ("permit", "status", PermitStatus),
    ("case", "kind", CaseKind),
    ("case", "stage", CaseStage),
    ("case", "source", CaseSource),
]
TIME_FIELDS = [("permit", "issued"), ("permit", "expires"), ("case", "opened")]


def errors_of(obj: Any) -> list[FieldError]:
    with pytest.raises(InvalidRecord) as info:
        parse_record(obj)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == "; ".join(str(e) for e in info.value.errors)
    return info.value.errors


def only_error(obj: Any) -> FieldError:
    errors = errors_of(obj)
    assert len(errors) == 1, errors
    return errors[0]


# --- valid records ----------------------------------------------------------------------------


def test_valid_structure() -> None:
    record = parse_record(structure_json(address="1 Main St", declared_use="housing"))
    assert record == Structure("S-1", Area.URBAN, "Xi", "1 Main St", "housing")
    assert record.to_json() == structure_json(address="1 Main St", declared_use="housing")


def test_valid_permit() -> None:
    record = parse_record(permit_json(expires="2025-03-01T00:00:00Z", use="shop"))
    assert record == Permit(
        "P-1",
        "S-1",
        PermitKind.CONSTRUCTION_PLANNING,
        PermitStatus.VALID,
        T0,
        datetime(2025, 3, 1, tzinfo=UTC),
        "shop",
    )
    assert record.to_json() == permit_json(expires="2025-03-01T00:00:00Z", use="shop")


def test_valid_case() -> None:
    record = parse_record(case_json())
    assert record == Case(
        "C-1", "S-1", CaseKind.NO_PLANNING_PERMIT, CaseStage.REPORTED, CaseSource.PATROL, T0
    )
    assert record.to_json() == case_json()


@pytest.mark.parametrize("kind", list(PermitKind))
def test_every_permit_kind_accepted(kind: PermitKind) -> None:
    record = parse_record(permit_json(kind=kind.value, expires="2025-01-01T00:00:00Z"))
    assert isinstance(record, Permit)
    assert record.kind is kind


def test_optional_fields_omitted_in_json() -> None:
    assert "address" not in parse_record(structure_json()).to_json()
    permit = parse_record(permit_json()).to_json()
    assert "expires" not in permit
    assert "use" not in permit


# --- the record as a whole --------------------------------------------------------------------


@pytest.mark.parametrize("obj", [[], "structure", 5, None, True])
def test_not_an_object(obj: Any) -> None:
    assert only_error(obj) == FieldError("(line)", "not a JSON object")


def test_missing_type() -> None:
    obj = structure_json()
    del obj["type"]
    assert only_error(obj) == FieldError("type", "missing")


@pytest.mark.parametrize("kind", ["building", "Structure", 5, ""])
def test_unknown_type(kind: Any) -> None:
    error = only_error(structure_json(type=kind))
    assert error.field == "type"
    assert error.why == f"unknown type {kind!r} (structure, permit or case)"


# --- every required field ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "field"), [(kind, field) for kind, fields in REQUIRED.items() for field in fields]
)
def test_required_field_missing(kind: str, field: str) -> None:
    obj = BUILDERS[kind]()
    del obj[field]
    assert only_error(obj) == FieldError(field, "missing")


@pytest.mark.parametrize(
    ("kind", "field"), [(kind, field) for kind, fields in REQUIRED.items() for field in fields]
)
def test_required_field_null_reads_as_missing(kind: str, field: str) -> None:
    assert only_error(BUILDERS[kind](**{field: None})) == FieldError(field, "missing")


def test_all_missing_fields_reported_together() -> None:
    errors = errors_of({"type": "case"})
    assert [e.field for e in errors] == ["id", "structure", "kind", "stage", "source", "opened"]
    assert all(e.why == "missing" for e in errors)


# --- every enum -------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field", "enum"), ENUMS)
def test_enum_unknown_value(kind: str, field: str, enum: type[StrEnum]) -> None:
    error = only_error(BUILDERS[kind](**{field: "no_such_value"}))
    assert error.field == field
    allowed = ", ".join(m.value for m in enum)
    assert error.why == f"unknown value 'no_such_value' (one of: {allowed})"


@pytest.mark.parametrize(("kind", "field", "enum"), ENUMS)
def test_enum_values_are_case_sensitive(kind: str, field: str, enum: type[StrEnum]) -> None:
    first = next(iter(enum)).value
    error = only_error(BUILDERS[kind](**{field: first.upper()}))
    assert error.field == field
    assert error.why.startswith(f"unknown value {first.upper()!r}")


# --- times ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("kind", "field"), TIME_FIELDS)
@pytest.mark.parametrize(
    ("value", "why"),
    [
        ("2024-03-01T00:00:00", "not an RFC 3339 timestamp: '2024-03-01T00:00:00'"),
        ("2024-03-01 00:00:00Z", "not an RFC 3339 timestamp: '2024-03-01 00:00:00Z'"),
        ("2024-03-01", "not an RFC 3339 timestamp: '2024-03-01'"),
        ("2024-03-01T00:00Z", "not an RFC 3339 timestamp: '2024-03-01T00:00Z'"),
        ("2024-03-01T00:00:00+0800", "not an RFC 3339 timestamp: '2024-03-01T00:00:00+0800'"),
        ("2024-03-01T00:00:00.Z", "not an RFC 3339 timestamp: '2024-03-01T00:00:00.Z'"),
        (" 2024-03-01T00:00:00Z", "not an RFC 3339 timestamp: ' 2024-03-01T00:00:00Z'"),
        ("2024-02-30T00:00:00Z", "not a valid date and time: '2024-02-30T00:00:00Z'"),
        ("2023-02-29T00:00:00Z", "not a valid date and time: '2023-02-29T00:00:00Z'"),
        ("2024-13-01T00:00:00Z", "not a valid date and time: '2024-13-01T00:00:00Z'"),
        ("2024-03-01T24:00:00Z", "not a valid date and time: '2024-03-01T24:00:00Z'"),
        ("2024-03-01T00:60:00Z", "not a valid date and time: '2024-03-01T00:60:00Z'"),
    ],
)
def test_bad_timestamp(kind: str, field: str, value: str, why: str) -> None:
    # issued is far in the past so a valid "expires" would not trip "must be after issued".
    obj = BUILDERS[kind](**{field: value})
    if field == "expires":
        obj["issued"] = "2000-01-01T00:00:00Z"
    assert only_error(obj) == FieldError(field, why)


@pytest.mark.parametrize(("kind", "field"), TIME_FIELDS)
def test_timestamp_of_wrong_type(kind: str, field: str) -> None:
    obj = BUILDERS[kind](**{field: 1709251200})
    assert only_error(obj) == FieldError(field, "must be a string, not int")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-03-01T08:00:00+08:00", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-02-29T19:00:00-05:00", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T00:00:00+00:00", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T00:00:00-00:00", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01t00:00:00z", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T05:45:00+05:45", datetime(2024, 3, 1, tzinfo=UTC)),
        ("2024-03-01T00:00:00.5Z", datetime(2024, 3, 1, 0, 0, 0, 500000, tzinfo=UTC)),
        ("2024-03-01T00:00:00.123456789Z", datetime(2024, 3, 1, 0, 0, 0, 123456, tzinfo=UTC)),
        ("2024-03-01T08:00:00.000001+08:00", datetime(2024, 3, 1, 0, 0, 0, 1, tzinfo=UTC)),
    ],
)
def test_parse_time_normalises_to_utc(value: str, expected: datetime) -> None:
    parsed = parse_time(value)
    assert parsed == expected
    assert parsed.tzinfo is UTC
    assert parsed.utcoffset() == timedelta(0)


def test_record_times_normalised_to_utc() -> None:
    permit = parse_record(
        permit_json(issued="2024-03-01T08:00:00+08:00", expires="2024-12-31T19:00:00-05:00")
    )
    assert isinstance(permit, Permit)
    assert permit.issued == T0
    assert permit.issued.tzinfo is UTC
    assert permit.to_json()["issued"] == "2024-03-01T00:00:00Z"
    assert permit.to_json()["expires"] == "2025-01-01T00:00:00Z"
    case = parse_record(case_json(opened="2024-02-29T16:00:00-08:00"))
    assert isinstance(case, Case)
    assert case.to_json()["opened"] == "2024-03-01T00:00:00Z"


def test_format_time() -> None:
    assert format_time(T0) == "2024-03-01T00:00:00Z"
    assert format_time(T0.replace(microsecond=120000)) == "2024-03-01T00:00:00.120000Z"
    east = timezone(timedelta(hours=8))
    assert format_time(datetime(2024, 3, 1, 8, tzinfo=east)) == "2024-03-01T00:00:00Z"
    for text in ("2024-03-01T00:00:00Z", "2024-03-01T00:00:00.000001Z"):
        assert format_time(parse_time(text)) == text


# --- unknown fields and wrong JSON types ------------------------------------------------------


@pytest.mark.parametrize("kind", list(BUILDERS))
def test_unknown_field(kind: str) -> None:
    assert only_error(BUILDERS[kind](colour="red")) == FieldError(
        "colour", f"unknown field for a {kind}"
    )


def test_fields_of_another_type_are_unknown() -> None:
    errors = errors_of(structure_json(issued="2024-03-01T00:00:00Z", stage="filed"))
    assert errors == [
        FieldError("issued", "unknown field for a structure"),
        FieldError("stage", "unknown field for a structure"),
    ]


@pytest.mark.parametrize(
    ("kind", "field"),
    [(kind, field) for kind, fields in REQUIRED.items() for field in fields]
    + [("structure", "address"), ("structure", "declared_use"), ("permit", "use")],
)
@pytest.mark.parametrize(
    ("value", "type_name"), [(5, "int"), (1.5, "float"), (True, "bool"), ([], "list"), ({}, "dict")]
)
def test_wrong_json_type(kind: str, field: str, value: Any, type_name: str) -> None:
    assert only_error(BUILDERS[kind](**{field: value})) == FieldError(
        field, f"must be a string, not {type_name}"
    )


@pytest.mark.parametrize(
    ("kind", "field"), [("structure", "address"), ("structure", "declared_use"), ("permit", "use")]
)
def test_optional_field_null(kind: str, field: str) -> None:
    assert only_error(BUILDERS[kind](**{field: None})) == FieldError(
        field, "must be a string, or left out"
    )


def test_optional_expires_null() -> None:
    assert only_error(permit_json(expires=None)) == FieldError(
        "expires", "must be a string, or left out"
    )


@pytest.mark.parametrize(("kind", "field"), [("structure", "district"), ("permit", "id")])
@pytest.mark.parametrize("value", ["", "   ", "\t\n"])
def test_empty_text(kind: str, field: str, value: str) -> None:
    assert only_error(BUILDERS[kind](**{field: value})) == FieldError(field, "must not be empty")


def test_text_too_long() -> None:
    assert only_error(structure_json(address="x" * 501)) == FieldError(
        "address", "longer than 500 characters"
    )
    assert isinstance(parse_record(structure_json(address="x" * 500)), Structure)


@pytest.mark.parametrize(
    ("kind", "field"), [("structure", "id"), ("permit", "id"), ("permit", "structure")]
)
@pytest.mark.parametrize("value", ["-S1", "S 1", "S#1", "x" * 65, "\u00e9"])
def test_invalid_id(kind: str, field: str, value: str) -> None:
    error = only_error(BUILDERS[kind](**{field: value}))
    assert error.field == field
    assert error.why.startswith(f"not a valid id: {value!r}")


# The id rule as ID_RULE words it, written apart from the regular expression that implements it.
_ASCII_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_ID_CHARACTERS = set(_ASCII_ALNUM + "._:/-")


def _as_worded(value: str) -> bool:
    return (
        1 <= len(value) <= 64
        and all(c in _ID_CHARACTERS for c in value)
        and value[0] in _ASCII_ALNUM
    )


def test_id_rule_words() -> None:
    assert ID_RULE == (
        "an id is 1 to 64 characters, each an ASCII letter, a digit or one of . _ : / -,"
        " and starts with a letter or digit"
    )


@given(
    st.text(alphabet=st.sampled_from([*sorted(_ID_CHARACTERS), " ", "\x00", "\n", "\u00e9", "#"]))
    | st.text()
)
def test_id_rule_is_exactly_what_it_says(value: str) -> None:
    why = id_error(value)
    assert (why is None) == _as_worded(value), why
    if why is not None:
        assert why.startswith("not a valid id: ") and why.endswith(f"{ID_RULE})")


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("S-OK-1", True),
        ("110228-0042-0007", True),
        ("a" * 64, True),
        ("a" * 65, False),
        ("S-OK-1 ", False),  # a trailing space pasted from a spreadsheet
        (" S-OK-1", False),
        ("S-OK-1\x00", False),
        ("S\tOK", False),
        ("S\u0085OK", False),  # a C1 control character
        ("-S", False),
        ("\uff33-1", False),  # a full-width S: a letter, but not ASCII
        ("", False),
    ],
)
def test_id_rule_examples(value: str, valid: bool) -> None:
    assert (id_error(value) is None) is valid


def test_a_long_id_is_quoted_in_part() -> None:
    why = id_error("x" * 10_000)
    assert why is not None and len(why) < 300 and "10000 characters" in why


# --- permit-specific rules --------------------------------------------------------------------


def test_temporary_construction_planning_requires_expires() -> None:
    assert only_error(permit_json(kind="temporary_construction_planning")) == FieldError(
        "expires", "missing (a temporary construction planning permit always expires)"
    )
    ok = parse_record(
        permit_json(kind="temporary_construction_planning", expires="2025-03-01T00:00:00Z")
    )
    assert isinstance(ok, Permit)


@pytest.mark.parametrize(
    "expires",
    [
        "2024-03-01T00:00:00Z",  # equal
        "2024-03-01T08:00:00+08:00",  # equal, written in another offset
        "2024-02-29T23:59:59.999999Z",  # earlier
        "2023-01-01T00:00:00Z",
    ],
)
def test_expires_not_after_issued(expires: str) -> None:
    assert only_error(permit_json(expires=expires)) == FieldError("expires", "must be after issued")


def test_expires_just_after_issued_is_fine() -> None:
    assert isinstance(parse_record(permit_json(expires="2024-03-01T00:00:00.000001Z")), Permit)


def test_several_errors_reported_together() -> None:
    errors = errors_of(permit_json(id=5, kind="shed", issued="2024-02-30T00:00:00Z", colour="red"))
    assert [e.field for e in errors] == ["colour", "id", "kind", "issued"]


# --- StatusRecord -----------------------------------------------------------------------------


def status_record() -> StatusRecord:
    structure = Structure("S-1", Area.VILLAGE, "Xi", address="1 Main St")
    permits = (
        Permit("P-1", "S-1", PermitKind.RURAL_CONSTRUCTION_PLANNING, PermitStatus.VALID, T0),
        Permit(
            "P-2",
            "S-1",
            PermitKind.TEMPORARY_CONSTRUCTION_PLANNING,
            PermitStatus.SUSPENDED,
            T0,
            T1,
            "site office",
        ),
    )
    cases = (
        Case(
            "C-1",
            "S-1",
            CaseKind.TEMPORARY_OVERDUE,
            CaseStage.FILED,
            CaseSource.SATELLITE,
            T0.replace(microsecond=250000),
        ),
    )
    return StatusRecord(structure, permits, cases, 42, T0, T1)


def test_status_record_json_round_trip() -> None:
    record = status_record()
    obj = record.to_json()
    assert set(obj) == {"structure", "permits", "cases", "tree_size", "this_update", "next_update"}
    assert obj["tree_size"] == 42
    assert obj["this_update"] == "2024-03-01T00:00:00Z"
    assert obj["cases"][0]["opened"] == "2024-03-01T00:00:00.250000Z"
    assert StatusRecord.from_json(obj) == record
    # And through the signed (canonical JSON) form.
    assert StatusRecord.from_json(orjson.loads(canonical_json(obj))) == record


def test_status_record_without_permits_or_cases() -> None:
    record = StatusRecord(Structure("S-9", Area.URBAN, "Xi"), (), (), 1, T0, T1)
    assert StatusRecord.from_json(record.to_json()) == record


def test_status_record_rejects_another_structures_permit() -> None:
    base = status_record()
    other = Permit("P-9", "S-2", PermitKind.LAND_CERTIFICATE, PermitStatus.VALID, T0)
    with pytest.raises(ValueError, match="status record of S-1 holds another structure's permit"):
        StatusRecord(base.structure, (*base.permits, other), base.cases, 42, T0, T1)
    obj = base.to_json()
    obj["permits"].append(other.to_json())
    with pytest.raises(ValueError, match="status record of S-1 holds another structure's permit"):
        StatusRecord.from_json(obj)


def test_status_record_rejects_another_structures_case() -> None:
    obj = status_record().to_json()
    obj["cases"][0]["structure"] = "S-2"
    with pytest.raises(ValueError, match="holds another structure's permit or case"):
        StatusRecord.from_json(obj)


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        (lambda o: o.update(structure=permit_json()), "structure is not a structure"),
        (lambda o: o["permits"].append(case_json()), "permits holds something else"),
        (lambda o: o["cases"].append(permit_json()), "cases holds something else"),
        (lambda o: o.update(tree_size=True), "status record: bad tree_size"),
        (lambda o: o.update(tree_size="42"), "status record: bad tree_size"),
        (lambda o: o.update(tree_size=4.0), "status record: bad tree_size"),
        (lambda o: o.update(tree_size=None), "status record: bad tree_size"),
        (lambda o: o.pop("tree_size"), "status record: malformed"),
        (lambda o: o.pop("next_update"), "status record: malformed"),
        (lambda o: o.update(permits=None), "status record: malformed"),
        (lambda o: o.update(tree_size=0), "tree_size must be at least 1"),
        (lambda o: o.update(next_update=o["this_update"]), "next_update must be after this_update"),
        (lambda o: o.update(this_update="2024-03-01"), "not an RFC 3339 timestamp"),
        (lambda o: o["permits"][0].update(kind="shed"), "kind: unknown value 'shed'"),
    ],
)
def test_status_record_from_json_rejects(change: Any, fragment: str) -> None:
    obj = status_record().to_json()
    change(obj)
    with pytest.raises(ValueError, match=fragment):
        StatusRecord.from_json(obj)


def test_status_record_from_json_not_an_object() -> None:
    with pytest.raises(ValueError, match="status record: not a JSON object"):
        StatusRecord.from_json([])
