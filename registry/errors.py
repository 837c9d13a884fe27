"""What stops a command, in one plain line: the errors a person can act on, and their translation.

A ``PlainError`` is an error whose message is the whole story (what is wrong, where, and what to
do); the ``permitgate`` command prints it as ``permitgate: MESSAGE`` and exits 2, never with a
traceback. Commands raise their own, and let foreign exceptions through: ``plain_error`` is the one
place that turns the ones a person causes (a database that does not exist, a server not
listening, a SQLite file locked by another writer, a key file missing) into a ``PlainError``.
Anything it does not recognise stays a bug and keeps its traceback.

    PlainError
     ├── StorageError            the database cannot be used as asked
     │    ├── UnsupportedDatabase    a --db URL of a kind permitgate does not speak
     │    ├── DatabaseMissing        no such SQLite file, folder or PostgreSQL database
     │    ├── DatabaseUnreachable    nothing listening, a name that does not resolve, refused login
     │    └── RegistryBusy           another writer holds the registry's write lock
     └── (registry.admin) RegistryRefused: not initialised, wrong key, damaged, origin fixed
"""

from __future__ import annotations

import re
import sqlite3
from typing import Any

from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

from registry.signing import KeyFileError

__all__ = [
    "DATABASE_NOTE",
    "DatabaseMissing",
    "DatabaseUnreachable",
    "PlainError",
    "RegistryBusy",
    "StorageError",
    "UnsupportedDatabase",
    "plain_error",
]

DATABASE_NOTE = "permitgate database: "
"""Prefix of the note ``Database`` adds to its errors, naming the database (see ``storage``)."""


class PlainError(Exception):
    """An error whose message says what is wrong and what to do; printed alone, exit status 2."""

    exit_code = 2


class StorageError(PlainError):
    """The database cannot be used as asked."""


class UnsupportedDatabase(StorageError):
    """A ``--db`` URL of a kind permitgate does not speak (only SQLite and PostgreSQL)."""


class DatabaseMissing(StorageError):
    """The database does not exist: no such SQLite file or folder, or PostgreSQL database."""


class DatabaseUnreachable(StorageError):
    """The database server cannot be reached or refuses the connection."""


class RegistryBusy(StorageError):
    """Another writer (an import, a refresh) holds the registry's write lock."""


_NO_DATABASE = re.compile(r'database "([^"]+)" does not exist')


def plain_error(exc: BaseException) -> PlainError | None:
    """``exc`` as a ``PlainError`` when a person can act on it; None for anything else (a bug)."""
    if isinstance(exc, PlainError):
        return exc
    if isinstance(exc, KeyFileError):
        return PlainError(str(exc))
    if isinstance(exc, (NoSuchModuleError, ArgumentError)):  # a URL that slipped past the check
        return UnsupportedDatabase(f"--db: {_first_line(exc)}")
    if isinstance(exc, DBAPIError):
        return _driver_error(exc)
    return None


def _driver_error(exc: DBAPIError) -> PlainError | None:
    cause, where = exc.orig, _database_named(exc)
    if _is_psycopg_operational(cause):
        return _postgresql_error(cause)
    if isinstance(cause, sqlite3.OperationalError):
        text = str(cause)
        if "database is locked" in text or "database is busy" in text:
            return RegistryBusy(
                f"{where or 'the registry'} is locked by another writer: another import or "
                "refresh is running; try again when it has finished"
            )
        if "unable to open database file" in text:
            return DatabaseMissing(f"cannot open {where or 'the SQLite file'}: {text}")
    if isinstance(cause, sqlite3.DatabaseError) and "file is not a database" in str(cause):
        return StorageError(f"{where or 'the --db file'} is not a SQLite database")
    return None


def _is_psycopg_operational(cause: object) -> bool:
    """Without importing psycopg: a SQLite-only process (and each of an import's worker
    processes) would pay for loading it."""
    kinds = type(cause).__mro__
    return any(
        k.__module__.startswith("psycopg") and k.__name__ == "OperationalError" for k in kinds
    )


def _postgresql_error(cause: Any) -> PlainError | None:
    """The errors of connecting to PostgreSQL (every other one is not a person's to fix)."""
    text = str(cause)
    if not text.startswith(("connection failed", "failed to resolve host")):
        return None
    pgconn = getattr(cause, "pgconn", None)
    server = (
        "PostgreSQL"
        if pgconn is None
        else f"PostgreSQL at {pgconn.host.decode(errors='replace')}:"
        f"{pgconn.port.decode(errors='replace')}"
    )
    missing = _NO_DATABASE.search(text)
    if missing:
        name = missing.group(1)
        return DatabaseMissing(
            f'{server} has no database "{name}": it must be created first (createdb {name}), '
            "then 'permitgate registry init'"
        )
    if "Connection refused" in text:
        return DatabaseUnreachable(
            f"cannot connect to {server}: nothing is listening there "
            "(is the server running, and is the port right?)"
        )
    why = _first_line(cause).removeprefix("connection failed: ")
    why = re.sub(r"^connection to server at .*? failed: ", "", why)
    return DatabaseUnreachable(f"cannot connect to {server}: {why.replace('FATAL:  ', '')}")


def _database_named(exc: BaseException) -> str | None:
    notes: list[str] = getattr(exc, "__notes__", [])
    for note in notes:
        if note.startswith(DATABASE_NOTE):
            return note.removeprefix(DATABASE_NOTE)
    return None


def _first_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__
