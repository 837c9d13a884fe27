"""The decision log keeps its primary key only: every answer the gate gives is a row, and each
secondary index costs about a third of a row's write (no query of the project reads by them).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-02
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index("ix_decision_log_decided_at", "decision_log")
    op.drop_index("ix_decision_log_structure_id", "decision_log")


def downgrade() -> None:
    op.create_index("ix_decision_log_decided_at", "decision_log", ["decided_at"])
    op.create_index("ix_decision_log_structure_id", "decision_log", ["structure_id"])
