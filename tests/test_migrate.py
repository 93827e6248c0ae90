"""`probe.store.migrate` without Alembic on the fast path, against Alembic itself."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.ext.asyncio import create_async_engine

from probe.store import migrate


def test_head_is_alembics_head() -> None:
    head = ScriptDirectory.from_config(migrate.alembic_config()).get_current_head()
    assert head == migrate.HEAD


async def test_the_revision_read_without_alembic_is_alembics(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    try:
        assert await migrate.revision_state(engine) == (None, migrate.HEAD)
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            theirs = await conn.run_sync(
                lambda c: MigrationContext.configure(c).get_current_revision()
            )
        assert await migrate.revision_state(engine) == (theirs, migrate.HEAD)
        assert theirs == migrate.HEAD

        # An older schema is still upgraded: the fast path only skips a current one.
        def downgrade(connection: Connection) -> None:
            cfg = migrate.alembic_config()
            cfg.attributes["connection"] = connection
            command.downgrade(cfg, "0003")

        async with engine.begin() as conn:
            await conn.run_sync(downgrade)
        assert (await migrate.revision_state(engine))[0] == "0003"
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            marks = await conn.execute(text("SELECT count(*) FROM spool_marks"))
            assert marks.scalar_one() == 0
        assert (await migrate.revision_state(engine))[0] == migrate.HEAD
    finally:
        await engine.dispose()


async def test_the_migrations_build_the_tables_the_code_declares(tmp_path: Path) -> None:
    """Alembic's own comparison: after `upgrade`, no table, column or index differs."""
    from alembic.autogenerate import compare_metadata

    from probe.store.tables import metadata

    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}")
    try:
        await migrate.upgrade(engine)
        async with engine.connect() as conn:
            diffs = await conn.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), metadata)
            )
        assert diffs == []
    finally:
        await engine.dispose()
