"""hourly rollups, incidents, and results.maintenance

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26 05:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("results") as batch_op:
        batch_op.add_column(
            sa.Column("maintenance", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.create_table(
        "rollups_hourly",
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("hour", sa.DateTime(timezone=True), nullable=False),
        sa.Column("delivered", sa.Integer(), nullable=False),
        sa.Column("late", sa.Integer(), nullable=False),
        sa.Column("lost", sa.Integer(), nullable=False),
        sa.Column("send_error", sa.Integer(), nullable=False),
        sa.Column("observe_error", sa.Integer(), nullable=False),
        sa.Column("maintenance", sa.Integer(), nullable=False),
        sa.Column("latency_count", sa.Integer(), nullable=False),
        sa.Column("latency_max", sa.Float(), nullable=True),
        sa.Column("latency", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("flow", "destination", "hour", name=op.f("pk_rollups_hourly")),
    )
    op.create_table(
        "incidents",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_bad_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("cause", sa.String(length=16), nullable=False),
        sa.Column("bad_results", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_incidents")),
    )
    op.create_index(
        op.f("ix_incidents_flow_destination_start_at"),
        "incidents",
        ["flow", "destination", "start_at"],
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_incidents_flow_destination_start_at"), table_name="incidents")
    op.drop_table("incidents")
    op.drop_table("rollups_hourly")
    with op.batch_alter_table("results") as batch_op:
        batch_op.drop_column("maintenance")
