"""The decision log's table across migration 0005 (its secondary indexes dropped), on both
backends: rows written before the migration read the same afterwards, through the ORM and
through the store's bulk path, and only the primary key is left."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

import registry
from registry.decisions import DecisionRecord, SqlDecisionStore
from registry.storage import Database, DecisionRow


def _config(connection: sa.Connection) -> Config:
    config = Config()
    config.set_main_option("script_location", str(Path(registry.__file__).with_name("migrations")))
    config.attributes["connection"] = connection
    return config


def _record(decision_id: str, at: datetime) -> DecisionRecord:
    return DecisionRecord(
        decision_id, at, "ipv4:127.0.0.1:4000", "connection", "S-1", '{"type":"connection"}',
        "DENY", '["PERMIT_REVOKED"]', 7, None,
    )  # fmt: skip


def test_rows_written_before_0005_read_the_same_after_it(db_url: str) -> None:
    db = Database(db_url)
    try:
        with db.engine.begin() as connection:
            command.upgrade(_config(connection), "0004")
        before = _record("D-before", datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC))
        with db.session() as session:  # the ORM's own insert, as rows were written before
            session.add(DecisionRow(**before._asdict()))
        indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("decision_log")}
        assert indexes == {"ix_decision_log_decided_at", "ix_decision_log_structure_id"}

        db.upgrade()
        # 0005 dropped the B-trees (a row per answer, written in bulk); 0008 adds only a BRIN
        # on PostgreSQL, for the monthly report, which costs the gate's writes almost nothing.
        after_indexes = {i["name"] for i in sa.inspect(db.engine).get_indexes("decision_log")}
        brin = {"ix_decision_log_decided_at_brin"} if db.dialect == "postgresql" else set()
        assert after_indexes == brin
        after = _record("D-after", datetime(2026, 1, 2, 3, 4, 6, tzinfo=UTC))  # no fraction
        assert SqlDecisionStore(db).write([after]) == []
        with db.session() as session:
            rows = session.scalars(sa.select(DecisionRow).order_by(DecisionRow.decision_id))
            stored = [
                DecisionRecord(**{f: getattr(row, f) for f in DecisionRecord._fields})
                for row in rows
            ]
        assert stored == [after, before]
        with db.engine.connect() as connection:  # the text SQLite holds is alike for both
            times = connection.execute(
                sa.text("SELECT CAST(decided_at AS TEXT) FROM decision_log ORDER BY decided_at")
            ).scalars()
            text = list(times)
        if db.dialect == "sqlite":
            assert text == ["2026-01-02 03:04:05.678901", "2026-01-02 03:04:06.000000"]
    finally:
        db.dispose()
