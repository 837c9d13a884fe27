"""The gate's records (notifications, the decision log), and finding re-signed status records.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from registry.storage import ID_TYPE, UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_status_record_next_update", "status_record", ["next_update"])
    op.create_table(
        "notification",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("structure_id", ID_TYPE, nullable=False),
        sa.Column("office", sa.String(32), nullable=False),
        sa.Column("application_id", sa.String(128)),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("office", "application_id", "structure_id"),
    )
    op.create_index("ix_notification_structure_id", "notification", ["structure_id"])
    op.create_table(
        "decision_log",
        sa.Column("decision_id", sa.String(64), primary_key=True),
        sa.Column("decided_at", UTCDateTime(), nullable=False),
        sa.Column("caller", sa.String(500), nullable=False),
        sa.Column("check_type", sa.String(16), nullable=False),
        sa.Column("structure_id", sa.String(500), nullable=False),
        sa.Column("request", sa.Text(), nullable=False),
        sa.Column("verdict", sa.String(16), nullable=False),
        sa.Column("reasons", sa.Text(), nullable=False),
        sa.Column("registry_version", sa.BigInteger(), nullable=False),
        sa.Column("notification_id", sa.String(64)),
    )
    op.create_index("ix_decision_log_decided_at", "decision_log", ["decided_at"])
    op.create_index("ix_decision_log_structure_id", "decision_log", ["structure_id"])


def downgrade() -> None:
    op.drop_index("ix_status_record_next_update", "status_record")
    op.drop_table("decision_log")
    op.drop_table("notification")
