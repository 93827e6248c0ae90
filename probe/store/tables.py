"""The SQL schema: probes, sightings and results. Alembic migrations follow these tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend.

    SQLite has no time zone type, so values are stored as naive UTC there and given their
    zone back on the way out.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use UTC-aware values")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "pk": "pk_%(table_name)s",
    }
)

# One row per flow and slot: the unique constraint is the slot claim shared by every daemon.
probes = Table(
    "probes",
    metadata,
    Column("probe_id", String(20), primary_key=True),
    Column("flow", String(64), nullable=False),
    Column("slot_at", UTCDateTime, nullable=False),
    Column("claimed_at", UTCDateTime, nullable=False),
    Column("deadline_at", UTCDateTime, nullable=False),
    Column("sent_at", UTCDateTime),
    Column("send_reason", String(32)),  # null once sent cleanly
    Column("detail", String(200)),  # the source's reply or error, redacted and short
    Column("node", String(64)),
    UniqueConstraint("flow", "slot_at"),
    Index(None, "claimed_at"),  # finding unresolved probes after a restart
)

sightings = Table(
    "sightings",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("probe_id", String(20), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("seen_at", UTCDateTime, nullable=False),
    Column("arrived_at", UTCDateTime),  # the destination's own clock, when it says
    Column("count", Integer, nullable=False, default=1),
    Column("node", String(64)),  # the daemon that saw it
    Index(None, "probe_id", "destination"),
)

results = Table(
    "results",
    metadata,
    Column("probe_id", String(20), primary_key=True),
    Column("destination", String(64), primary_key=True),  # "" for a check
    Column("flow", String(64), nullable=False),
    Column("slot_at", UTCDateTime, nullable=False),
    Column("outcome", String(16), nullable=False),
    Column("latency_s", Float),
    Column("latency_clock", String(12)),  # monotonic | destination | wall
    Column("duplicates", Integer, nullable=False, default=0),
    Column("reason", String(32)),
    Column("resolved_at", UTCDateTime, nullable=False),
    Column("mismatch", String(200)),  # fields that arrived changed, comma-separated
    Column("maintenance", Boolean, nullable=False, default=False, server_default=false()),
    Column("span_s", Float),  # seconds this slot stands for (the interval); null: unknown
    Column("adhoc", Boolean, nullable=False, default=False, server_default=false()),
    Index(None, "flow", "destination", "slot_at"),
)

# Hourly rollups per flow and destination, kept for 13 months or more so a monthly report
# never scans raw rows. `latency` is a mergeable log-bucket histogram (probe.store.sketch).
rollups = Table(
    "rollups_hourly",
    metadata,
    Column("flow", String(64), primary_key=True),
    Column("destination", String(64), primary_key=True),
    Column("hour", UTCDateTime, primary_key=True),  # start of the UTC hour of the slots
    Column("delivered", Integer, nullable=False, default=0),
    Column("late", Integer, nullable=False, default=0),
    Column("lost", Integer, nullable=False, default=0),
    Column("send_error", Integer, nullable=False, default=0),
    Column("observe_error", Integer, nullable=False, default=0),
    Column("maintenance", Integer, nullable=False, default=0),  # results left out
    Column("latency_count", Integer, nullable=False, default=0),
    Column("latency_max", Float),
    Column("latency", Text, nullable=False, default="{}"),  # {bucket: count} as JSON
    # Probe-side faults (probe.model.PROBE_FAULTS) in the hour: not measured, not counted.
    Column("not_measured", Integer, nullable=False, default=0, server_default="0"),
    # Seconds of the hour that measured slots stand for: all of them, those outside
    # maintenance, and those of bad results outside maintenance (incident time).
    Column("measured_s", Float, nullable=False, default=0.0, server_default="0"),
    Column("counted_s", Float, nullable=False, default=0.0, server_default="0"),
    Column("down_s", Float, nullable=False, default=0.0, server_default="0"),
)

# Runs of consecutive bad results per flow and destination, in slot order (probe.store.
# derive). Open while `end_at` is null; `end_at` is the slot of the first good result after
# the run (ended_by "recovered"), or where measurement stopped (ended_by "not_measured").
incidents = Table(
    "incidents",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("flow", String(64), nullable=False),
    Column("destination", String(64), nullable=False),
    Column("start_at", UTCDateTime, nullable=False),
    Column("last_bad_at", UTCDateTime, nullable=False),
    Column("end_at", UTCDateTime),
    Column("cause", String(16), nullable=False),
    Column("bad_results", Integer, nullable=False, default=1),
    Column("ended_by", String(16)),
    Index(None, "flow", "destination", "start_at"),
)

# Per flow and destination, how far the incident derivation has read the results, in slot
# order: `slot_at` is the newest slot fed (the watermark), `measured_until` where the
# measurement of that slot ends (slot + span), `blocked_at` the oldest slot still waiting
# for its result, if any (results from there on wait too).
watermarks = Table(
    "watermarks",
    metadata,
    Column("flow", String(64), primary_key=True),
    Column("destination", String(64), primary_key=True),
    Column("slot_at", UTCDateTime),
    Column("measured_until", UTCDateTime),
    Column("blocked_at", UTCDateTime),
)

# How far into each local spool file (probe.store.spool) the database has committed,
# written in the same transaction as the rows, so a replay is exactly-once.
spool_marks = Table(
    "spool_marks",
    metadata,
    Column("spool", String(120), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
)

# Written incidents and announcements (probe.store.notices): what people write about the
# operational situation, shown on the status page, in the feeds and in the monthly report.
# `flows` holds globs of the flow names affected, comma-joined. An incident's state is
# investigating, identified, monitoring or resolved; an announcement's is active or ended.
notices = Table(
    "notices",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("kind", String(16), nullable=False),
    Column("title", String(200), nullable=False),
    Column("state", String(16), nullable=False),
    Column("flows", Text, nullable=False, default=""),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("starts_at", UTCDateTime),
    Column("ends_at", UTCDateTime),
    Column("resolved_at", UTCDateTime),
    Index(None, "kind", "resolved_at"),
)

# The timeline of a notice: each update's time, its state then and its Markdown body.
notice_updates = Table(
    "notice_updates",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("notice_id", BigInteger().with_variant(Integer, "sqlite"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("state", String(16), nullable=False),
    Column("body", Text, nullable=False, default=""),
    Index(None, "notice_id", "at"),
)

# Per flow and destination, the notification state (probe.notify): up or down, derived
# from results in slot order up to the incident watermark. `slot_at` is the newest slot fed,
# `bad_run` and `good_run` the current runs, `since` the first bad slot of the run that
# took it down, `reminded_at` the last down message or reminder queued.
notify_state = Table(
    "notify_state",
    metadata,
    Column("flow", String(64), primary_key=True),
    Column("destination", String(64), primary_key=True),
    Column("slot_at", UTCDateTime),
    Column("down", Boolean, nullable=False, default=False, server_default=false()),
    Column("bad_run", Integer, nullable=False, default=0, server_default="0"),
    Column("good_run", Integer, nullable=False, default=0, server_default="0"),
    Column("since", UTCDateTime),
    Column("cause", String(16)),
    Column("reminded_at", UTCDateTime),
)

# Messages to send, kept until sent (probe.notify): queued in the transaction that changed
# the state, so none is lost across a restart, and unique per channel and `dedupe` key, so
# two daemons queue each once. `due_at` is the next try, after a backoff on failure.
outbox = Table(
    "outbox",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True),
    Column("channel", String(64), nullable=False),
    Column("event", String(24), nullable=False),
    Column("dedupe", String(255), nullable=False),
    Column("flow", String(64)),
    Column("destination", String(64)),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("due_at", UTCDateTime, nullable=False),
    Column("attempts", Integer, nullable=False, default=0, server_default="0"),
    Column("sent_at", UTCDateTime),
    Column("last_error", Text),
    UniqueConstraint("channel", "dedupe"),
    Index(None, "sent_at", "due_at"),
)
