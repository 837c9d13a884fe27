"""Gate keys the registry vouches for: one signed statement per gate key.

A gate puts its key's statement into every receipt, so that a receipt verifies with the
registry's key alone (``registry.vouch``, ``permitgate_client._gatekeys``).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

from registry.storage import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "gate_key",
        sa.Column("key_id", sa.String(300), primary_key=True),
        sa.Column("statement", sa.LargeBinary(), nullable=False),
        sa.Column("not_after", UTCDateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("gate_key")
