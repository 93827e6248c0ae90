"""Incidents in slot order behind a watermark, coverage, probe-side faults:
results.span_s and results.adhoc; rollups_hourly.not_measured, measured_s, counted_s and
down_s; incidents.ended_by; the watermarks table.

Incidents stored before this revision were derived in resolution order and may be wrong;
they are deleted here, and the derivation rebuilds each one from its raw results the next
time its flow and destination get a result. `probe db rollup --rebuild -c CONFIG` rebuilds
everything at once, and fills in the span of older results from the config's schedule.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-03 11:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch_op:
        batch_op.add_column(sa.Column("span_s", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("adhoc", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("rollups_hourly") as batch_op:
        batch_op.add_column(
            sa.Column("not_measured", sa.Integer(), nullable=False, server_default="0")
        )
        for name in ("measured_s", "counted_s", "down_s"):
            batch_op.add_column(sa.Column(name, sa.Float(), nullable=False, server_default="0"))
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.add_column(sa.Column("ended_by", sa.String(length=16), nullable=True))
    op.execute("DELETE FROM incidents")
    op.create_table(
        "watermarks",
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("slot_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("measured_until", sa.DateTime(timezone=True), nullable=True),
        sa.Column("blocked_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("flow", "destination", name="pk_watermarks"),
    )


def downgrade() -> None:
    op.drop_table("watermarks")
    with op.batch_alter_table("incidents") as batch_op:
        batch_op.drop_column("ended_by")
    with op.batch_alter_table("rollups_hourly") as batch_op:
        for name in ("down_s", "counted_s", "measured_s", "not_measured"):
            batch_op.drop_column(name)
    with op.batch_alter_table("results") as batch_op:
        batch_op.drop_column("adhoc")
        batch_op.drop_column("span_s")
