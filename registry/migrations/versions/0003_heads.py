"""Registry heads: checkpoints that also sign the status map's root, and timed cosignatures.

A head is numbered by ``serial`` (a refresh signs a new head over the same log size), so the
``checkpoint`` table, keyed by size, gives way to ``head``. Checkpoints signed before this
revision carry no map: they are kept as heads without one (``map_root`` empty), which gates do
not accept; the registry signs a head with a map at its next write.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from registry.storage import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "head",
        sa.Column("serial", _BIGINT, primary_key=True, autoincrement=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("map_root", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("tree_state", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
        sa.Column("cosignature", sa.LargeBinary()),
        sa.Column("cosigned_at", UTCDateTime()),
    )
    op.create_index("ix_head_size", "head", ["size"])
    op.execute(
        "INSERT INTO head (serial, size, root_hash, map_root, note, tree_state, signed_at) "
        "SELECT size, size, root_hash, '', note, tree_state, signed_at FROM checkpoint"
    )
    op.drop_table("checkpoint")


def downgrade() -> None:
    op.create_table(
        "checkpoint",
        sa.Column("size", _BIGINT, primary_key=True, autoincrement=False),
        sa.Column("root_hash", sa.LargeBinary(), nullable=False),
        sa.Column("note", sa.LargeBinary(), nullable=False),
        sa.Column("tree_state", sa.LargeBinary(), nullable=False),
        sa.Column("signed_at", UTCDateTime(), nullable=False),
    )
    op.drop_table("head")
