"""Each status record carries its status map bucket (the first 16 bits of SHA-256 of the
structure id), indexed: a gate that holds only the map's top reads and proves one bucket's
records at a time (``registry.feed``: ``bucket_records``).

Existing rows are filled in here, in batches, from their structure ids.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-03
"""

import hashlib

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_BATCH = 5000


def upgrade() -> None:
    op.add_column("status_record", sa.Column("map_bucket", sa.Integer(), nullable=True))
    connection = op.get_bind()
    table = sa.table(
        "status_record", sa.column("structure_id", sa.String), sa.column("map_bucket", sa.Integer)
    )
    ids = [row[0] for row in connection.execute(sa.select(table.c.structure_id))]
    update = (
        table.update()
        .where(table.c.structure_id == sa.bindparam("sid"))
        .values(map_bucket=sa.bindparam("bucket"))
    )
    for start in range(0, len(ids), _BATCH):
        connection.execute(
            update,
            [
                {"sid": sid, "bucket": int.from_bytes(hashlib.sha256(sid.encode()).digest()[:2])}
                for sid in ids[start : start + _BATCH]
            ],
        )
    with op.batch_alter_table("status_record") as batch:
        batch.alter_column("map_bucket", existing_type=sa.Integer(), nullable=False)
    op.create_index("ix_status_record_map_bucket", "status_record", ["map_bucket"])


def downgrade() -> None:
    op.drop_index("ix_status_record_map_bucket", "status_record")
    with op.batch_alter_table("status_record") as batch:
        batch.drop_column("map_bucket")
