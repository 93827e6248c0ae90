"""spool_marks: how far into each local spool file the database has committed;
sightings.node: which daemon saw it (nodes share sightings through the store);
an index on probes.claimed_at, to find unresolved probes

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 07:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sightings") as batch_op:
        batch_op.add_column(sa.Column("node", sa.String(length=64), nullable=True))
    op.create_index("ix_probes_claimed_at", "probes", ["claimed_at"])
    op.create_table(
        "spool_marks",
        sa.Column("spool", sa.String(length=120), nullable=False),
        sa.Column("position", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("spool", name="pk_spool_marks"),
    )


def downgrade() -> None:
    op.drop_table("spool_marks")
    op.drop_index("ix_probes_claimed_at", table_name="probes")
    with op.batch_alter_table("sightings") as batch_op:
        batch_op.drop_column("node")
