"""Notifications to the joint-meeting working group (Art. 13), kept in the registry.

A notifying office (market regulation, culture, health, tax) is never blocked; instead, when
premises lack a permit or the declared use differs, the gate records a notice here. The same
application id from the same office about the same structure always maps to the same notice,
even when two gates record it at once: the unique constraint decides, and the loser reads the
winner's id.

The gate records notices through the ``NotificationStore`` interface; ``SqlNotificationStore``
keeps them in the registry database, where ``permitgate registry notifications`` lists them.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

import orjson
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from registry.records import format_time
from registry.storage import Database, NotificationRow, error_line

__all__ = [
    "Notification",
    "NotificationNotRecorded",
    "NotificationStore",
    "SqlNotificationStore",
    "iter_notifications",
    "record_notification",
]


@dataclass(frozen=True, slots=True)
class Notification:
    id: str
    structure_id: str
    office: str
    application_id: str | None
    reasons: list[dict[str, object]]
    created_at: datetime

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "structure_id": self.structure_id,
            "office": self.office,
            "application_id": self.application_id,
            "reasons": self.reasons,
            "created_at": format_time(self.created_at),
        }


def _of(row: NotificationRow) -> Notification:
    return Notification(
        row.id,
        row.structure_id,
        row.office,
        row.application_id,
        orjson.loads(row.reasons),
        row.created_at,
    )


def record_notification(
    db: Database,
    *,
    structure_id: str,
    office: str,
    application_id: str,
    reasons: list[dict[str, object]],
    at: datetime,
) -> str:
    """Record a notice (or find the one already recorded for this application); return its id.

    The same application id from the same office about the same structure is the same notice;
    reused for another structure, it is another notice (nothing is lost).

    An empty ``application_id`` cannot be matched later, so each such call records a new notice.
    """
    app = application_id or None
    if app is not None:
        existing = _find(db, office, app, structure_id)
        if existing is not None:
            return existing
    row = NotificationRow(
        id=f"N-{secrets.token_hex(8)}",
        structure_id=structure_id,
        office=office,
        application_id=app,
        reasons=orjson.dumps(reasons).decode(),
        created_at=at,
    )
    try:
        with db.session() as session:
            session.add(row)
    except IntegrityError:
        winner = _find(db, office, app, structure_id) if app is not None else None
        if winner is None:
            raise
        return winner
    return row.id


class NotificationNotRecorded(Exception):
    """The notice could not be recorded (the message says why); no id can be promised."""


class NotificationStore(Protocol):
    """Where the gate records notices to the working group."""

    def record(
        self,
        *,
        structure_id: str,
        office: str,
        application_id: str,
        reasons: list[dict[str, object]],
        at: datetime,
    ) -> str:
        """``record_notification``'s contract; raises ``NotificationNotRecorded`` on failure."""
        ...


class SqlNotificationStore:
    """Notices in the registry database's ``notification`` table."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def record(
        self,
        *,
        structure_id: str,
        office: str,
        application_id: str,
        reasons: list[dict[str, object]],
        at: datetime,
    ) -> str:
        try:
            return record_notification(
                self._db,
                structure_id=structure_id,
                office=office,
                application_id=application_id,
                reasons=reasons,
                at=at,
            )
        except SQLAlchemyError as exc:
            raise NotificationNotRecorded(error_line(exc)) from exc


def _find(db: Database, office: str, application_id: str, structure_id: str) -> str | None:
    with db.session() as session:
        return session.scalar(
            select(NotificationRow.id).where(
                NotificationRow.office == office,
                NotificationRow.application_id == application_id,
                NotificationRow.structure_id == structure_id,
            )
        )


def iter_notifications(db: Database) -> Iterator[Notification]:
    """Every notice, oldest first."""
    with db.session() as session:
        query = select(NotificationRow).order_by(NotificationRow.created_at, NotificationRow.id)
        for row in session.scalars(query):
            yield _of(row)
