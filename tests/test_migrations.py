"""Alembic migrations bring any database to head, matching the models."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from fulfil.db import make_engine
from fulfil.migrate import alembic_config, current, upgrade
from fulfil.models import Base


def test_upgrade_reaches_head_and_matches_the_models(fulfil_database_url, backend, tmp_path):
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        from fulfil.testing import create_postgres_database

        url = create_postgres_database(migrate=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
        upgrade(engine)  # a second run is a no-op
        head = ScriptDirectory.from_config(alembic_config(url)).get_current_head()
        assert current(engine) == head
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": False}), Base.metadata)
        assert diff == []
    finally:
        engine.dispose()
        if backend != "sqlite":
            from fulfil.testing import drop_postgres_database

            drop_postgres_database(url)
