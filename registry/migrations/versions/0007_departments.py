"""The departments' side (Art. 7, 13, 19, 22): cases name their party and whether it is
suspended; department writes are remembered by request id (idempotency); referrals run on the
Art. 19 clock; the working group acknowledges notices.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30
"""

import sqlalchemy as sa
from alembic import op

from registry.storage import ID_TYPE, UTCDateTime

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_ID = ID_TYPE


def upgrade() -> None:
    with op.batch_alter_table("violation_case") as batch:
        batch.add_column(sa.Column("party", _ID, nullable=True))
        batch.add_column(
            sa.Column("party_suspended", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_index("ix_violation_case_party", "violation_case", ["party"])
    with op.batch_alter_table("notification") as batch:
        batch.add_column(sa.Column("acknowledged_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("acknowledged_by", _ID, nullable=True))
    op.create_table(
        "department_write",
        sa.Column("department", _ID, primary_key=True),
        sa.Column("request_id", sa.String(128), primary_key=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("digest", sa.LargeBinary(), nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("written_at", UTCDateTime(), nullable=False),
        sa.Column("result", sa.Text(), nullable=False),
    )
    op.create_index("ix_department_write_written_at", "department_write", ["written_at"])
    op.create_table(
        "referral",
        sa.Column("case_id", _ID, primary_key=True),
        sa.Column("structure_id", _ID, nullable=False),
        sa.Column("district", sa.String(500), nullable=False),
        sa.Column("case_kind", sa.String(40), nullable=False),
        sa.Column("found_by", _ID, nullable=False),
        sa.Column("found_at", UTCDateTime(), nullable=False),
        sa.Column("referral_due", UTCDateTime(), nullable=False),
        sa.Column("referred_to", _ID, nullable=True),
        sa.Column("referred_at", UTCDateTime(), nullable=True),
        sa.Column("decided_at", UTCDateTime(), nullable=True),
        sa.Column("decision", sa.String(24), nullable=True),
        sa.Column("answer_due", UTCDateTime(), nullable=True),
        sa.Column("answered_at", UTCDateTime(), nullable=True),
        sa.Column("answer", sa.Text(), nullable=True),
    )
    op.create_index("ix_referral_structure_id", "referral", ["structure_id"])
    op.create_index("ix_referral_district", "referral", ["district"])
    op.create_index("ix_referral_found_at", "referral", ["found_at"])
    op.create_index("ix_referral_found_by", "referral", ["found_by"])
    op.create_index("ix_referral_referred_to", "referral", ["referred_to"])


def downgrade() -> None:
    op.drop_table("referral")
    op.drop_table("department_write")
    with op.batch_alter_table("notification") as batch:
        batch.drop_column("acknowledged_by")
        batch.drop_column("acknowledged_at")
    op.drop_index("ix_violation_case_party", "violation_case")
    with op.batch_alter_table("violation_case") as batch:
        batch.drop_column("party_suspended")
        batch.drop_column("party")
