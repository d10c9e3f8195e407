"""Shared fixtures: a migrated store on SQLite and on PostgreSQL.

PostgreSQL tests use ``CRMHUB_TEST_POSTGRES_URL`` (default: the local server, database
``test``). Each test gets its own schema, dropped afterwards. When the server cannot be
reached the PostgreSQL variants are skipped, except under ``CI=true`` where that fails.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest

from hub.store import Store
from hub.testing.sandboxes import recorded_since, violation_counts

POSTGRES_URL = os.environ.get(
    "CRMHUB_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
_pg_state: dict[str, str | None] = {}


def _pg_dsn() -> str:
    return POSTGRES_URL.replace("postgresql+psycopg://", "postgresql://")


def postgres_unavailable() -> str | None:
    """The reason PostgreSQL cannot be used, or ``None`` when it can (checked once)."""
    if "reason" not in _pg_state:
        try:
            with psycopg.connect(_pg_dsn(), connect_timeout=3) as conn:
                conn.execute("SELECT 1")
            _pg_state["reason"] = None
        except psycopg.Error as exc:
            _pg_state["reason"] = f"PostgreSQL at {POSTGRES_URL} unreachable: {exc}"
    return _pg_state["reason"]


def require_postgres() -> None:
    reason = postgres_unavailable()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def pg_schema_url() -> Iterator[str]:
    """A PostgreSQL URL whose search_path is a fresh schema, dropped after the test."""
    require_postgres()
    schema = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(_pg_dsn(), autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for each backend: the store's suites run against both."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'crmhub.db'}"
    return str(request.getfixturevalue("pg_schema_url"))


@pytest.fixture
async def store(db_url: str) -> AsyncIterator[Store]:
    s = await Store.open(db_url)
    try:
        yield s
    finally:
        await s.close()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'crmhub.db'}"


@pytest.fixture(autouse=True)
def _sandboxes_follow_their_descriptions() -> Iterator[None]:
    """Every sandbox holds a test's traffic to the provider's API description: a request,
    answer or webhook the description does not allow fails the test that caused it."""
    start = violation_counts()
    yield
    problems = recorded_since(start)
    if problems:
        pytest.fail("\n".join(problems), pytrace=False)
