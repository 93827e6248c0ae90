"""Shared fixtures: real SQLite files and a fresh database on the real PostgreSQL per test.

PostgreSQL tests run when ``PROBE_TEST_POSTGRES_URL`` names a server that answers, and skip
otherwise, unless ``PROBE_REQUIRE_POSTGRES`` is set (as in CI): then they fail.
"""

from __future__ import annotations

import functools
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog
from sqlalchemy.engine import make_url

from probe import logs
from probe.store import create_engine
from probe.store.migrate import upgrade

POSTGRES_URL = os.environ.get("PROBE_TEST_POSTGRES_URL")
REQUIRE_POSTGRES = bool(os.environ.get("PROBE_REQUIRE_POSTGRES"))


# The runs whose length an issue fixes (the HA run lasts 2 minutes, the outage cuts the
# database for 60 s): they start first, each on a worker of its own.
LONGEST = ("test_ha.py", "test_outage.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest tests first, then the other slow ones: under xdist each starts at once on
    a worker of its own, and the quick ones fill the other workers meanwhile, instead of one
    slow test ending the run."""
    items.sort(
        key=lambda item: (item.path.name not in LONGEST, item.get_closest_marker("slow") is None)
    )


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees a PROBE_CONFIG or secret from the developer's shell."""
    monkeypatch.delenv("PROBE_CONFIG", raising=False)
    logs.configure(level="debug", json=True)
    logs.redactor.update(())
    yield
    structlog.reset_defaults()


def _admin_url(url: str) -> str:
    """The server's ``postgres`` database, where databases are created and dropped (as
    ``createdb`` does), for libpq: the database of ``url`` need not exist."""
    admin = make_url(url).set(drivername="postgresql", database="postgres")
    return admin.render_as_string(hide_password=False)


@functools.cache
def _postgres_missing() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None. Asked once per test process."""
    if not POSTGRES_URL:
        return "PROBE_TEST_POSTGRES_URL is not set"
    try:
        with psycopg.connect(_admin_url(POSTGRES_URL), connect_timeout=5):
            pass
    except psycopg.Error as exc:
        where = make_url(POSTGRES_URL).render_as_string(hide_password=True)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return f"PostgreSQL at {where} is unreachable: {first}"
    return None


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the real PostgreSQL, dropped afterwards.

    Its name is the URL's database, the xdist worker and a random part (``test_gw0_1f2e...``):
    no two tests share tables, not across workers nor across sessions on one server."""
    missing = _postgres_missing()
    if missing is not None:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{missing}, and PROBE_REQUIRE_POSTGRES is set", pytrace=False)
        pytest.skip(missing)
    assert POSTGRES_URL is not None
    url = make_url(POSTGRES_URL)
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    name = f"{url.database or 'probe'}_{worker}_{uuid.uuid4().hex[:12]}"
    admin = _admin_url(POSTGRES_URL)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=["sqlite", "postgresql"])
async def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Each store test runs on a real SQLite file and on the real PostgreSQL, migrated."""
    if request.param == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'probe.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    engine = create_engine(url)
    await upgrade(engine)
    await engine.dispose()
    return url
