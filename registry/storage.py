"""Where the registry lives: SQLAlchemy 2.x typed tables, the engine, and one session per job.

The tables hold two kinds of data. The *log* (``event``, ``head``) is the truth: every
change as a hashed, signed event. The *current state* (``structure``, ``permit``,
``violation_case``) and the signed ``status_record`` per structure are derived from it, kept for
fast reads, and re-checked against the log by ``permitgate registry verify``.

The default database is a SQLite file; production runs PostgreSQL through psycopg 3. The schema
is created and upgraded by the Alembic migrations in ``registry/migrations``.
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import orjson
from sqlalchemy import (
    ARRAY,
    BigInteger,
    Boolean,
    ColumnElement,
    DateTime,
    Engine,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    UniqueConstraint,
    any_,
    bindparam,
    create_engine,
    event,
    func,
    inspect,
    select,
    text,
)
from sqlalchemy.engine import ExceptionContext
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from registry.errors import DATABASE_NOTE, DatabaseMissing, UnsupportedDatabase
from registry.records import Case, Permit, Record, Structure
from registry.vocabulary import Area, CaseKind, CaseSource, CaseStage, PermitKind, PermitStatus

__all__ = [
    "DEFAULT_DB_URL",
    "SUPPORTED_DATABASES",
    "Base",
    "CaseRow",
    "Database",
    "DecisionRow",
    "EventRow",
    "HeadRow",
    "MetaRow",
    "NotificationRow",
    "PermitRow",
    "ReferralRow",
    "StatusRow",
    "StructureRow",
    "WriteRow",
    "case_of",
    "copy_rows",
    "database_url",
    "error_line",
    "id_in",
    "permit_of",
    "structure_of",
    "table_of",
    "values_of",
]

DEFAULT_DB_URL = "sqlite:///permitgate.db"
_MIGRATIONS = Path(__file__).with_name("migrations")
_BIGINT = BigInteger().with_variant(Integer(), "sqlite")  # SQLite keys must be INTEGER
ID_TYPE = String(64).with_variant(String(64, collation="C"), "postgresql")
"""Ids sort by code point on every backend, as Python does, so ordered streams merge."""


SUPPORTED_DATABASES = "sqlite:///PATH or postgresql://USER@HOST[:PORT]/NAME"


def database_url(url: str | None) -> str:
    """The URL to use: ``--db``, else ``PERMITGATE_DB``, else the SQLite default.

    Bare ``postgresql://`` URLs are routed to psycopg 3, the driver this project installs; a URL
    of any other kind raises ``UnsupportedDatabase`` naming the kinds that work.
    """
    url = url or os.environ.get("PERMITGATE_DB") or DEFAULT_DB_URL
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    scheme, found, _ = url.partition("://")
    if not found:
        raise UnsupportedDatabase(f"--db {url!r} is not a database URL (use {SUPPORTED_DATABASES})")
    if scheme not in ("sqlite", "sqlite+pysqlite", "postgresql+psycopg"):
        raise UnsupportedDatabase(
            f"--db: {scheme}:// databases are not supported (use {SUPPORTED_DATABASES})"
        )
    return url


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite forgets the zone; this restores it)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the registry")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class StructureRow(Base):
    __tablename__ = "structure"

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    area: Mapped[str] = mapped_column(String(16))
    district: Mapped[str] = mapped_column(String(500))
    address: Mapped[str | None] = mapped_column(String(500))
    declared_use: Mapped[str | None] = mapped_column(String(500))


class PermitRow(Base):
    __tablename__ = "permit"

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    structure_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("structure.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    status: Mapped[str] = mapped_column(String(16))
    issued: Mapped[datetime] = mapped_column(UTCDateTime)
    expires: Mapped[datetime | None] = mapped_column(UTCDateTime)
    use: Mapped[str | None] = mapped_column(String(500))


class CaseRow(Base):
    __tablename__ = "violation_case"

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    structure_id: Mapped[str] = mapped_column(ID_TYPE, ForeignKey("structure.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    stage: Mapped[str] = mapped_column(String(24))
    source: Mapped[str] = mapped_column(String(16))
    opened: Mapped[datetime] = mapped_column(UTCDateTime)
    party: Mapped[str | None] = mapped_column(ID_TYPE, index=True)
    party_suspended: Mapped[bool] = mapped_column(Boolean, default=False)


class EventRow(Base):
    """One change, as the canonical JSON bytes that are hashed into the log at index ``seq``."""

    __tablename__ = "event"
    __table_args__ = (Index("ix_event_structure_seq", "structure_id", "seq"),)

    seq: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=False)
    structure_id: Mapped[str] = mapped_column(ID_TYPE)
    body: Mapped[bytes] = mapped_column(LargeBinary)


class HeadRow(Base):
    """A signed registry head: a checkpoint of the log with the status map's root (``serial``
    counts heads; a refresh signs a new head over the same log), and its newest cosignature.

    ``note`` is the registry-signed note; ``cosignature`` the newest timed cosignature line over
    it (the heartbeat replaces it); ``tree_state`` the log's compact Merkle state at ``size``,
    from which consistency proofs are made. Only the signed bytes are ever trusted.
    """

    __tablename__ = "head"

    serial: Mapped[int] = mapped_column(_BIGINT, primary_key=True, autoincrement=False)
    size: Mapped[int] = mapped_column(BigInteger, index=True)
    root_hash: Mapped[bytes] = mapped_column(LargeBinary)
    map_root: Mapped[bytes] = mapped_column(LargeBinary)
    note: Mapped[bytes] = mapped_column(LargeBinary)
    tree_state: Mapped[bytes] = mapped_column(LargeBinary)
    signed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    cosignature: Mapped[bytes | None] = mapped_column(LargeBinary)
    cosigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def cosigned_note(self) -> bytes:
        """The note with its newest cosignature line, as verifiers take it."""
        return self.note + (self.cosignature or b"")


class StatusRow(Base):
    """The latest signed status record of one structure (a DSSE envelope, stored as signed)."""

    __tablename__ = "status_record"

    structure_id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    tree_size: Mapped[int] = mapped_column(BigInteger, index=True)
    next_update: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    envelope: Mapped[bytes] = mapped_column(LargeBinary)
    map_bucket: Mapped[int] = mapped_column(Integer, index=True)  # registry.statusmap.bucket_of


class NotificationRow(Base):
    """A notice to the working group (Art. 13): premises without permits, or a use mismatch.

    One per office, application id and structure: asking again returns the same notice.
    """

    __tablename__ = "notification"
    __table_args__ = (UniqueConstraint("office", "application_id", "structure_id"),)

    id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    structure_id: Mapped[str] = mapped_column(ID_TYPE, index=True)
    office: Mapped[str] = mapped_column(String(32))
    application_id: Mapped[str | None] = mapped_column(String(128))
    reasons: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    acknowledged_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    acknowledged_by: Mapped[str | None] = mapped_column(ID_TYPE)  # the department's id


class WriteRow(Base):
    """A department's write, done once: a retried request id gives back ``result`` (idempotency).

    ``digest`` is SHA-256 of the canonical JSON of the statement's action and write: the same
    write signed again under its request id is a replay; another write under it is refused.
    ``seq`` is the log index of the write's first event (its statement is there).
    """

    __tablename__ = "department_write"

    department: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    action: Mapped[str] = mapped_column(String(32))
    digest: Mapped[bytes] = mapped_column(LargeBinary)
    seq: Mapped[int] = mapped_column(BigInteger)
    written_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    result: Mapped[str] = mapped_column(Text)  # the WriteResult's JSON


class ReferralRow(Base):
    """A case found outside the finder's remit, on the Art. 19 clock.

    The finder must refer it within 2 working days of the finding (``referral_due``); the
    receiving department, once it decides, must report the decision back within 2 working days
    (``answer_due``, set when ``decided_at`` is). Times are UTC; working days are counted in the
    city's calendar (``registry.workdays``).
    """

    __tablename__ = "referral"
    __table_args__ = (
        Index("ix_referral_found_by", "found_by"),
        Index("ix_referral_referred_to", "referred_to"),
    )

    case_id: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    structure_id: Mapped[str] = mapped_column(ID_TYPE, index=True)
    district: Mapped[str] = mapped_column(String(500), index=True)
    case_kind: Mapped[str] = mapped_column(String(40))
    found_by: Mapped[str] = mapped_column(ID_TYPE)  # the finder's department id
    found_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    referral_due: Mapped[datetime] = mapped_column(UTCDateTime)
    referred_to: Mapped[str | None] = mapped_column(ID_TYPE)
    referred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    decision: Mapped[str | None] = mapped_column(String(24))  # the stage decided
    answer_due: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    answer: Mapped[str | None] = mapped_column(Text)


class DecisionRow(Base):
    """One answer the gate gave: who asked, what, the answer, and the registry version.

    Indexed by its primary key only: a row per answer, written in bulk (migration 0005)."""

    __tablename__ = "decision_log"

    decision_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    decided_at: Mapped[datetime] = mapped_column(UTCDateTime)
    caller: Mapped[str] = mapped_column(String(500))
    check_type: Mapped[str] = mapped_column(String(16))
    structure_id: Mapped[str] = mapped_column(String(500))
    request: Mapped[str] = mapped_column(Text)
    verdict: Mapped[str] = mapped_column(String(16))
    reasons: Mapped[str] = mapped_column(Text)
    registry_version: Mapped[int] = mapped_column(BigInteger)
    notification_id: Mapped[str | None] = mapped_column(String(64))


class MetaRow(Base):
    """Registry settings fixed at init (the checkpoint origin, the public key)."""

    __tablename__ = "registry_meta"

    key: Mapped[str] = mapped_column(ID_TYPE, primary_key=True)
    value: Mapped[str] = mapped_column(String(2000))


_SQLITE_BUSY_MS = 30000
SQLITE_WRITER_WAIT = 10.0
"""Seconds a writer (import, refresh) waits for SQLite's write lock before giving up: a gate's
decision-log writes hold it for milliseconds, another import for as long as it runs."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # The driver's own transaction handling is turned off and SQLAlchemy's "begin" event emits
    # BEGIN instead (the SQLAlchemy recipe for pysqlite), so transactions are real and whole.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
    cursor.close()


class Database:
    """An engine plus the session factory; ``session()`` is the one unit-of-work scope."""

    def __init__(self, url: str | None = None, *, echo: bool = False, create: bool = True) -> None:
        """Open (lazily) the database at ``url``.

        With ``create=False`` (the read-only commands, the gate) a SQLite file must exist
        already; SQLite never creates a file in a folder that does not exist. Both raise
        ``DatabaseMissing``. Errors raised later carry a note naming this database, which
        ``registry.errors`` uses to say which database a message is about.
        """
        self.url = database_url(url)
        self.engine: Engine = create_engine(self.url, echo=echo)
        self.dialect = self.engine.dialect.name
        if self.dialect == "sqlite":
            _check_sqlite_file(self.engine.url.database, create=create)
        named = DATABASE_NOTE + str(self)

        def name_the_database(context: ExceptionContext) -> None:
            if context.sqlalchemy_exception is not None:
                context.sqlalchemy_exception.add_note(named)

        event.listen(self.engine, "handle_error", name_the_database)
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
            event.listen(self.engine, "begin", lambda conn: conn.exec_driver_sql("BEGIN"))
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)
        # Reads that must agree with each other (a checkpoint and the records it covers) run in
        # one snapshot: REPEATABLE READ on PostgreSQL; a SQLite read transaction already is one.
        snapshot_engine = (
            self.engine.execution_options(isolation_level="REPEATABLE READ")
            if self.dialect == "postgresql"
            else self.engine
        )
        self._snapshots = sessionmaker(snapshot_engine, expire_on_commit=False)

    def __repr__(self) -> str:
        return f"Database({self.engine.url.render_as_string(hide_password=True)!r})"

    def __str__(self) -> str:
        """The database in words, for messages: ``the SQLite file demo/permitgate.db``."""
        url = self.engine.url
        if self.dialect == "sqlite":
            return f"the SQLite file {url.database}"
        where = f"{url.host or 'localhost'}:{url.port or 5432}"
        return f"the PostgreSQL database {url.database!r} at {where}"

    @contextmanager
    def session(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any exception."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A read-only unit of work that sees one consistent state of the database."""
        with self._snapshots() as session, session.begin():
            yield session

    @contextmanager
    def writer(self) -> Iterator[Session]:
        """A session holding the registry's write lock, so appends to the log are serial."""
        with self.session() as session:
            if self.dialect == "postgresql":
                session.execute(text("SELECT pg_advisory_xact_lock(7316842904)"))
                # A writer looks rows up by key while its own transaction grows the tables, and
                # the planner's statistics (from before the transaction) call them tiny: it
                # would scan whole tables for every lookup. Every writer query has an index.
                session.execute(text("SET LOCAL enable_seqscan = off"))
            else:  # a no-op write takes SQLite's write lock now, not at the first real write
                wait = int(SQLITE_WRITER_WAIT * 1000)
                session.execute(text(f"PRAGMA busy_timeout = {wait}"))
                try:
                    session.execute(
                        text("UPDATE registry_meta SET value = value WHERE key = 'origin'")
                    )
                finally:
                    session.execute(text(f"PRAGMA busy_timeout = {_SQLITE_BUSY_MS}"))
            yield session

    def upgrade(self) -> None:
        """Create or upgrade the schema to the latest migration."""
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(_MIGRATIONS))
        with self.engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def is_initialised(self) -> bool:
        if not inspect(self.engine).has_table("registry_meta"):
            return False
        with self.session() as session:
            return session.scalar(select(MetaRow.value).where(MetaRow.key == "origin")) is not None

    def dispose(self) -> None:
        self.engine.dispose()


def _check_sqlite_file(database: str | None, *, create: bool) -> None:
    """Say plainly what SQLite would only call "unable to open database file"."""
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    path = Path(database)
    if path.exists():
        if path.is_dir():
            raise DatabaseMissing(f"{path} is a folder, not a SQLite file")
        return
    if not create:
        raise DatabaseMissing(
            f"no registry at {path}: the file does not exist "
            "(check --db, or create one with 'permitgate registry init')"
        )
    if not path.parent.is_dir():
        raise DatabaseMissing(
            f"cannot create the SQLite file {path}: the folder {path.parent} does not exist"
        )


# Conversions between rows (as plain column tuples, which stream fastest) and typed records.

STRUCTURE_COLUMNS = (
    StructureRow.id,
    StructureRow.area,
    StructureRow.district,
    StructureRow.address,
    StructureRow.declared_use,
)
PERMIT_COLUMNS = (
    PermitRow.id,
    PermitRow.structure_id,
    PermitRow.kind,
    PermitRow.status,
    PermitRow.issued,
    PermitRow.expires,
    PermitRow.use,
)
CASE_COLUMNS = (
    CaseRow.id,
    CaseRow.structure_id,
    CaseRow.kind,
    CaseRow.stage,
    CaseRow.source,
    CaseRow.opened,
    CaseRow.party,
    CaseRow.party_suspended,
)


def structure_of(row: Any) -> Structure:
    return Structure(row[0], Area(row[1]), row[2], row[3], row[4])


def permit_of(row: Any) -> Permit:
    return Permit(row[0], row[1], PermitKind(row[2]), PermitStatus(row[3]), row[4], row[5], row[6])


def case_of(row: Any) -> Case:
    return Case(
        row[0],
        row[1],
        CaseKind(row[2]),
        CaseStage(row[3]),
        CaseSource(row[4]),
        row[5],
        row[6],
        bool(row[7]),
    )


def values_of(record: Record) -> dict[str, Any]:
    """Column values for inserting or updating ``record``'s row."""
    if isinstance(record, Structure):
        return {
            "id": record.id,
            "area": record.area.value,
            "district": record.district,
            "address": record.address,
            "declared_use": record.declared_use,
        }
    if isinstance(record, Permit):
        return {
            "id": record.id,
            "structure_id": record.structure,
            "kind": record.kind.value,
            "status": record.status.value,
            "issued": record.issued,
            "expires": record.expires,
            "use": record.use,
        }
    return {
        "id": record.id,
        "structure_id": record.structure,
        "kind": record.kind.value,
        "stage": record.stage.value,
        "source": record.source.value,
        "opened": record.opened,
        "party": record.party,
        "party_suspended": record.party_suspended,
    }


def error_line(exc: BaseException) -> str:
    """A database error as one readable line: the driver's first line, without the SQL echoed."""
    cause = getattr(exc, "orig", None) or exc
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return lines[0] if lines else type(cause).__name__


def id_in(column: Any, ids: Collection[str], dialect: str) -> ColumnElement[bool]:
    """``column IN ids`` that stays cheap for thousands of ids.

    The ids travel as one parameter, an array on PostgreSQL (``= ANY(...)``), a JSON array read
    by ``json_each`` on SQLite: a statement with thousands of placeholders costs more to build
    and parse than to run.
    """
    if dialect == "postgresql":
        return column == any_(bindparam(None, list(ids), type_=ARRAY(String)))  # type: ignore[no-any-return]
    values = func.json_each(bindparam(None, orjson.dumps(list(ids)).decode(), type_=String))
    return column.in_(select(values.table_valued("value").c.value))  # type: ignore[no-any-return]


def table_of(model: type[Base]) -> Table:
    """The Core table behind an ORM class (typed, for bulk statements)."""
    return cast(Table, model.__table__)


def copy_rows(session: Session, table: Table, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows`` (values in ``table``'s column order) with PostgreSQL's ``COPY FROM
    STDIN`` on the session's own connection, inside its transaction: it skips the per-row
    parameter processing that dominates an ORM insert."""
    if not rows:
        return
    connection = session.connection()
    assert connection.dialect.name == "postgresql", "COPY is PostgreSQL's"
    driver = connection.connection.driver_connection
    assert driver is not None, "a live session has a driver connection"
    names = ", ".join(f'"{c.name}"' for c in table.columns)
    with (
        driver.cursor() as cursor,
        cursor.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as copy,
    ):
        for row in rows:
            copy.write_row(row)


class GateKeyRow(Base):
    """The registry's statement vouching for one gate's receipt key (``registry.vouch``).

    ``statement`` is the DSSE envelope as the registry signed it; ``not_after`` repeats its end,
    to list keys without parsing. One row per key: vouching again, or retiring the key, replaces
    it (receipts carry the statement they were signed under, so none is lost to verifiers).
    Only the signed bytes are trusted: whoever reads a row verifies it with the registry key.
    """

    __tablename__ = "gate_key"

    key_id: Mapped[str] = mapped_column(String(300), primary_key=True)  # name+hex(keyid)
    statement: Mapped[bytes] = mapped_column(LargeBinary)
    not_after: Mapped[datetime] = mapped_column(UTCDateTime)
