"""Every core test runs on SQLite and on PostgreSQL.

PostgreSQL: a database of its own per test run (created, migrated, dropped at the
end) on ``FULFIL_TEST_POSTGRES_URL`` (default: 127.0.0.1:5432, trust auth). Without
a reachable server the PostgreSQL half is skipped locally, and fails in CI.
"""

from __future__ import annotations

import os
import sys

import pytest

from fulfil.testing import (
    create_postgres_database,
    drop_postgres_database,
    empty_all_tables,
    migrated_sqlite_copy,
    missing_peer,
)

sys.path.insert(0, os.path.dirname(__file__))



@pytest.fixture(scope="session")
def postgres_url():
    try:
        url = create_postgres_database()
    except Exception as exc:  # noqa: BLE001
        missing_peer(f"PostgreSQL is not reachable: {exc}")
    yield url
    drop_postgres_database(url)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    return request.param


@pytest.fixture
def fulfil_database_url(backend, tmp_path, request) -> str:
    if backend == "sqlite":
        return migrated_sqlite_copy(tmp_path / "fulfil.db")
    url = request.getfixturevalue("postgres_url")
    empty_all_tables(url)
    return url


@pytest.fixture
def fulfil_registry():
    """The installed plugins (Manual Setup among them), found through real entry points."""
    from fulfil.plugins import ModuleRegistry

    return ModuleRegistry.discover()


@pytest.fixture
def fake(module_harness, fake_module):
    """A harness around a FakeModule registered as processing module ``fake``."""
    harness = module_harness(
        "fake", fake_module, addons={"disk_gb": {"unit": "GB", "min": 10, "max": 100, "default": 10}}
    )
    harness.fake = fake_module
    return harness


@pytest.fixture
def manual(module_harness):
    """A harness around the real Manual Setup module (entry point ``manual``)."""
    return module_harness("manual")
