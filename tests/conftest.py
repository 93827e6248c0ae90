"""Shared fixtures: real SQLite files and a fresh database on the real PostgreSQL per test."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import structlog

from probe import logs
from probe.store import create_engine
from probe.store.migrate import upgrade

POSTGRES_URL = os.environ.get("PROBE_TEST_POSTGRES_URL")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No test sees a PROBE_CONFIG or secret from the developer's shell."""
    monkeypatch.delenv("PROBE_CONFIG", raising=False)
    logs.configure(level="debug", json=True)
    logs.redactor.update(())
    yield
    structlog.reset_defaults()


def _admin_url(url: str) -> str:
    return url.replace("postgresql+psycopg://", "postgresql://", 1)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty database on the real PostgreSQL, dropped afterwards."""
    if not POSTGRES_URL:
        pytest.skip("PROBE_TEST_POSTGRES_URL is not set")
    name = f"probe_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_admin_url(POSTGRES_URL), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    base, _, _ = POSTGRES_URL.rpartition("/")
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(_admin_url(POSTGRES_URL), autocommit=True) as conn:
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
