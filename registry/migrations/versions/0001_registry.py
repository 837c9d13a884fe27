"""The signed registry: current state, event log, checkpoints, status records.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

from registry.storage import ID_TYPE, UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "registry_meta",
        sa.Column("key", ID_TYPE, primary_key=True),
        sa.Column("value", sa.String(2000), nullable=False),
    )
    op.create_table(
        "structure",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("area", sa.String(16), nullable=False),
        sa.Column("district", sa.String(500), nullable=False),
        sa.Column("address", sa.String(500)),
        sa.Column("declared_use", sa.String(500)),
    )
    op.create_table(
        "permit",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("structure_id", ID_TYPE, sa.ForeignKey("structure.id"), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("issued", UTCDateTime(), nullable=False),
        sa.Column("expires", UTCDateTime()),
        sa.Column("use", sa.String(500)),
    )
    op.create_index("ix_permit_structure_id", "permit", ["structure_id"])
    op.create_table(
        "violation_case",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("structure_id", ID_TYPE, sa.ForeignKey("structure.id"), nullable=False),
        sa.Column("kind", sa.String(40), nullable=False),
        sa.Column("stage", sa.String(24), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("opened", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_violation_case_structure_id", "violation_case", ["structure_id"])
    op.create_table(
        "event",
        sa.Column(
            "seq",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("structure_id", ID_TYPE, nullable=False),
        sa.Column("body", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_event_structure_seq", "event", ["structure_id", "seq"])
    op.create_table(
        "checkpoint",
        sa.Column(
            "size",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            primary_key=True,
            autoincrement=False,
        ),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("tree_state", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
    )
    op.create_table(
        "status_record",
        sa.Column("structure_id", ID_TYPE, primary_key=True),
        sa.Column("tree_size", sa.BigInteger(), nullable=False),
        sa.Column("next_update", UTCDateTime(), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("envelope", sa.LargeBinary(), nullable=False),
    )
    op.create_index("ix_status_record_tree_size", "status_record", ["tree_size"])


def downgrade() -> None:
    for table in (
        "status_record",
        "checkpoint",
        "event",
        "violation_case",
        "permit",
        "structure",
        "registry_meta",
    ):
        op.drop_table(table)
