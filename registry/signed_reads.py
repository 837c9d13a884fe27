"""What a department is shown of a case or permit must be what the registry signed.

The department reads (``registry.department_reads``) and the working group's page read the
``violation_case`` and ``permit`` tables: projections the writes keep, which a database writer
can change without the registry's key. ``disagreement`` compares each case or permit a read
returns with the structure's current status record as the registry service holds it
(``ServedState``: envelopes whose SHA-256 the signed head's map holds, checked when the state
was loaded or followed), field by field (kind, stage or status, source, times, party and its
suspension; a permit's use). The first difference is named; the read is then refused, never
answered from the row.

What is not checked here: the district (the structure row's), a referral's and a notice's rows
(Art. 19 dates and answers are in the log's statements, not in status records), and parties
(``GetParty``, ``ListParties``: built from the case rows). The web page answers from the rows
as they are.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

from permitgate_client import VerificationError

from registry.inbox import CaseView, PermitView, case_view, permit_view
from registry.records import StatusRecord
from registry.service_state import ServedState
from server.cache import read_status_record

__all__ = ["SignedState", "disagreement"]


@dataclass(frozen=True)
class SignedState:
    """Where reads find the registry's signed state: ``held()`` the state the service answers
    from now (raises when it is not serving); ``caught_up()`` that state once it has followed
    the database's newest head (a write just committed may not be followed yet)."""

    held: Callable[[], ServedState]
    caught_up: Callable[[], Awaitable[ServedState]]


def _comparable(value: Any) -> Any:
    """A table's time (naive on SQLite: UTC) and a record's, to the second, compare alike."""
    if isinstance(value, datetime):
        aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return aware.astimezone(UTC).replace(microsecond=0)
    return value


def _signed_record(
    state: ServedState, structure_id: str, parsed: dict[str, StatusRecord | str]
) -> StatusRecord | str:
    """The held record of ``structure_id``, or why there is none to compare with."""
    if structure_id not in parsed:
        envelope, _ = state.status(structure_id)
        if envelope is None:
            parsed[structure_id] = f"structure {structure_id} has no signed status record"
        else:
            try:
                parsed[structure_id] = read_status_record(envelope, structure_id, state.size)
            except VerificationError as exc:
                parsed[structure_id] = f"the signed record of {structure_id} cannot be read: {exc}"
    return parsed[structure_id]


def _differs(what: str, row: CaseView | PermitView, signed: CaseView | PermitView) -> str | None:
    """The first field in which the view of the row differs from the view of the signed
    record (the same conversion, ``registry.inbox``, made both)."""
    for name in (field.name for field in fields(row)):
        value, want = getattr(row, name), getattr(signed, name)
        if _comparable(want) != _comparable(value):
            return (
                f"{what}: the table says {name} = {value!s}, the registry's signed record {want!s}"
            )
    return None


def disagreement(state: ServedState, views: Iterable[CaseView | PermitView]) -> str | None:
    """The first way a view differs from the signed record of its structure (as of ``state``,
    log size ``state.size``); None when every view is what the registry signed."""
    parsed: dict[str, StatusRecord | str] = {}
    for view in views:
        what = f"{type(view).__name__.removesuffix('View').lower()} {view.id}"
        record = _signed_record(state, view.structure_id, parsed)
        if isinstance(record, str):
            return f"{what}: {record}"
        signed: CaseView | PermitView | None
        if isinstance(view, CaseView):
            case = next((c for c in record.cases if c.id == view.id), None)
            signed = None if case is None else case_view(case, view.district)
        else:
            permit = next((p for p in record.permits if p.id == view.id), None)
            signed = None if permit is None else permit_view(permit)
        if signed is None:
            return f"{what}: not in the signed record of {view.structure_id}"
        why = _differs(what, view, signed)
        if why is not None:
            return why
    return None
