"""The monthly report (Art. 6) finds a month's checks by time: a BRIN index on
``decision_log.decided_at`` on PostgreSQL. The log is written in time order, so a block range
index of a few pages covers a year of answers and costs the gate's writes nearly nothing (a
B-tree would cost about a third of a row's write; migration 0005). Ranges are summarised as
they fill (``autosummarize``); a range not yet summarised is read whatever the month. SQLite
keeps the primary key only: its registries are small, and the report reads their log whole.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.create_index(
            "ix_decision_log_decided_at_brin",
            "decision_log",
            ["decided_at"],
            postgresql_using="brin",
            # 32 pages (about a thousand answers) a range; each range is summarised as soon as
            # it fills, so the newest answers are not all read for every month.
            postgresql_with={"pages_per_range": 32, "autosummarize": "on"},
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.drop_index("ix_decision_log_decided_at_brin", "decision_log")
