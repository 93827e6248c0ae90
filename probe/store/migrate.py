"""Schema migrations with Alembic, driven from our own async engine.

Alembic (about 11 MB of RSS and 70 ms to import) is loaded only when the schema is not at
`HEAD`: a daemon starting on a current database reads ``alembic_version`` itself.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, inspect, text
from sqlalchemy.ext.asyncio import AsyncEngine

if TYPE_CHECKING:
    from alembic.config import Config as AlembicConfig

_SCRIPTS = Path(__file__).parent / "migrations"
# The newest revision in migrations/versions; tests/test_migrate.py holds it equal to
# Alembic's own head, so a new migration cannot be forgotten here.
HEAD = "0006"


def alembic_config() -> AlembicConfig:
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(_SCRIPTS))
    return cfg


def _current(connection: Connection) -> str | None:
    """The database's revision, as Alembic records it (None: no schema yet)."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    rows = connection.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    return rows[0] if len(rows) == 1 else None


async def upgrade(engine: AsyncEngine) -> None:
    """Bring the schema to the newest revision."""

    def run(connection: Connection) -> None:
        if _current(connection) == HEAD:
            return
        from alembic import command

        cfg = alembic_config()
        cfg.attributes["connection"] = connection
        command.upgrade(cfg, "head")

    async with engine.begin() as conn:
        await conn.run_sync(run)


async def revision_state(engine: AsyncEngine) -> tuple[str | None, str | None]:
    """(the database's revision, the newest revision this code knows)."""
    async with engine.connect() as conn:
        current = await conn.run_sync(_current)
    return current, HEAD
