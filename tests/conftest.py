"""Shared fixtures: real databases (a SQLite file and a private PostgreSQL database), keys.

Every storage test runs twice, once per backend, through the ``db_url`` fixture. PostgreSQL
tests use a database of their own, created for the session on the server named by
PERMITGATE_TEST_PG (default: the local server's ``test`` database) and dropped at the end;
each test starts from an empty schema. No mocks: if the server is down, the tests fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql
from registry_support import Registry

PG_URL = os.environ.get("PERMITGATE_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session; yields its URL."""
    name = f"permitgate_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(PG_URL, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    base = PG_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(PG_URL, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def _reset_pg(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DROP SCHEMA IF EXISTS public CASCADE")
        conn.execute("CREATE SCHEMA public")


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database URL, once for SQLite and once for PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'registry.db'}"
    url: str = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


@pytest.fixture
def pg_url(pg_database: str) -> str:
    """An empty PostgreSQL database URL, for tests that need PostgreSQL's own behaviour."""
    _reset_pg(pg_database)
    return pg_database


@pytest.fixture
def keys_dir(tmp_path: Path) -> Path:
    return tmp_path / "keys"


@pytest.fixture
def blank_registry(db_url: str, keys_dir: Path, tmp_path: Path) -> Iterator[Registry]:
    """A registry handle on an empty database (not initialised), on each backend."""
    registry = Registry(db_url, keys_dir, tmp_path)
    try:
        yield registry
    finally:
        registry.close()


@pytest.fixture
def reg(blank_registry: Registry) -> Registry:
    """An initialised, empty registry (schema, key, signed empty checkpoint), on each backend."""
    blank_registry.init()
    return blank_registry
