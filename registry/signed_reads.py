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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from permitgate_client import VerificationError

from registry.inbox import CaseView, PermitView
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


def _differs(what: str, row: dict[str, Any], signed: dict[str, Any]) -> str | None:
    for name, value in row.items():
        if _comparable(signed.get(name)) != _comparable(value):
            return (
                f"{what}: the table says {name} = {value!s}, the registry's signed record "
                f"{signed.get(name)!s}"
            )
    return None


def disagreement(state: ServedState, views: Iterable[CaseView | PermitView]) -> str | None:
    """The first way a view differs from the signed record of its structure (as of ``state``,
    log size ``state.size``); None when every view is what the registry signed."""
    parsed: dict[str, StatusRecord | str] = {}
    for view in views:
        record = _signed_record(state, view.structure_id, parsed)
        if isinstance(record, str):
            return f"{type(view).__name__.removesuffix('View').lower()} {view.id}: {record}"
        if isinstance(view, CaseView):
            case = next((c for c in record.cases if c.id == view.id), None)
            if case is None:
                return f"case {view.id}: not in the signed record of {view.structure_id}"
            why = _differs(
                f"case {view.id}",
                {
                    "kind": view.kind,
                    "stage": view.stage,
                    "source": view.source,
                    "opened": view.opened,
                    "party": view.party,
                    "party_suspended": view.party_suspended,
                },
                {
                    "kind": case.kind.value,
                    "stage": case.stage.value,
                    "source": case.source.value,
                    "opened": case.opened,
                    "party": case.party,
                    "party_suspended": case.party_suspended,
                },
            )
        else:
            permit = next((p for p in record.permits if p.id == view.id), None)
            if permit is None:
                return f"permit {view.id}: not in the signed record of {view.structure_id}"
            why = _differs(
                f"permit {view.id}",
                {
                    "kind": view.kind,
                    "status": view.status,
                    "issued": view.issued,
                    "expires": view.expires,
                    "use": view.use,
                },
                {
                    "kind": permit.kind.value,
                    "status": permit.status.value,
                    "issued": permit.issued,
                    "expires": permit.expires,
                    "use": permit.use,
                },
            )
        if why is not None:
            return why
    return None
