"""Real-time information for people: written incidents and announcements (notices and
their updates), the notification state per flow and destination, and the outbox of
messages to send.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 19:00:00
"""

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _at(name: str, *, nullable: bool = True) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "notices",
        sa.Column("id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("flows", sa.Text(), nullable=False),
        _at("created_at", nullable=False),
        _at("updated_at", nullable=False),
        _at("starts_at"),
        _at("ends_at"),
        _at("resolved_at"),
        sa.PrimaryKeyConstraint("id", name="pk_notices"),
    )
    op.create_index("ix_notices_kind_resolved_at", "notices", ["kind", "resolved_at"])
    op.create_table(
        "notice_updates",
        sa.Column("id", _ID, nullable=False),
        sa.Column("notice_id", _ID, nullable=False),
        _at("at", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_notice_updates"),
    )
    op.create_index("ix_notice_updates_notice_id_at", "notice_updates", ["notice_id", "at"])
    op.create_table(
        "notify_state",
        sa.Column("flow", sa.String(length=64), nullable=False),
        sa.Column("destination", sa.String(length=64), nullable=False),
        _at("slot_at"),
        sa.Column("down", sa.Boolean(), nullable=False, server_default=sa.false()),
        sa.Column("bad_run", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("good_run", sa.Integer(), nullable=False, server_default="0"),
        _at("since"),
        sa.Column("cause", sa.String(length=16), nullable=True),
        _at("reminded_at"),
        sa.PrimaryKeyConstraint("flow", "destination", name="pk_notify_state"),
    )
    op.create_table(
        "outbox",
        sa.Column("id", _ID, nullable=False),
        sa.Column("channel", sa.String(length=64), nullable=False),
        sa.Column("event", sa.String(length=24), nullable=False),
        sa.Column("dedupe", sa.String(length=255), nullable=False),
        sa.Column("flow", sa.String(length=64), nullable=True),
        sa.Column("destination", sa.String(length=64), nullable=True),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _at("created_at", nullable=False),
        _at("due_at", nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default="0"),
        _at("sent_at"),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name="pk_outbox"),
        sa.UniqueConstraint("channel", "dedupe", name="uq_outbox_channel_dedupe"),
    )
    op.create_index("ix_outbox_sent_at_due_at", "outbox", ["sent_at", "due_at"])


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("notify_state")
    op.drop_index("ix_notice_updates_notice_id_at", table_name="notice_updates")
    op.drop_table("notice_updates")
    op.drop_index("ix_notices_kind_resolved_at", table_name="notices")
    op.drop_table("notices")
