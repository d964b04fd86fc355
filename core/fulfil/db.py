"""Engines and sessions for SQLite (the embedded default) and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlalchemy import DateTime, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator):
    """Stored as naive UTC (the same on SQLite and PostgreSQL), read back aware."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value, dialect):
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; fulfil stores UTC only")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value, dialect):
        if value is None:
            return None
        return value.replace(tzinfo=UTC)


def is_sqlite(engine_or_url) -> bool:
    url = engine_or_url.url if isinstance(engine_or_url, Engine) else make_url(engine_or_url)
    return url.get_backend_name() == "sqlite"


def normalise_url(url: str) -> str:
    """``postgresql://`` means psycopg 3 here (the driver fulfil installs)."""
    if url.startswith("postgresql://") or url.startswith("postgres://"):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalise_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url,
            # connections are pooled and handed between threads; SQLite
            # serialises writers itself (BEGIN IMMEDIATE + busy timeout)
            connect_args={"timeout": 30, "check_same_thread": False},
            pool_size=pool_size,
            max_overflow=pool_size,
            # bound values may be service params or outbox context with secrets:
            # keep them out of error messages (and so out of logs)
            hide_parameters=True,
        )
        _sqlite_pragmas(engine)
        return engine
    return create_engine(
        url, pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, hide_parameters=True
    )


def _sqlite_pragmas(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # the driver's own transaction handling is replaced by explicit BEGIN below,
        # so that a write transaction takes the write lock at its start
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    # Writers of this process queue on a Python lock rather than on SQLite's busy
    # handler, which sleeps in coarse steps (1, 2, 5, 10… ms) between retries.
    # Writers in other processes still meet the busy timeout.
    write_lock = threading.Lock()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        if conn.get_execution_options().get("fulfil_read_only"):
            conn.exec_driver_sql("BEGIN")
            return
        record = conn.connection._connection_record
        if record is not None and not record.info.get("fulfil_write_lock"):
            write_lock.acquire()
            record.info["fulfil_write_lock"] = True
        # IMMEDIATE: take the write lock up front, so two writers queue on the
        # busy timeout instead of failing with "database is locked" when a read
        # transaction tries to upgrade to a write
        conn.exec_driver_sql("BEGIN IMMEDIATE")

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_conn, record):
        # back in the pool: the transaction has ended (committed or rolled back)
        if record is not None and record.info.pop("fulfil_write_lock", False):
            write_lock.release()


def session_factory(engine: Engine, *, read_only: bool = False, info: dict | None = None) -> sessionmaker[Session]:
    """Sessions that write (the default) or only read. On SQLite a reading session
    does not take the write lock, so pages and lists never wait for the workers."""
    bind = engine.execution_options(fulfil_read_only=True) if read_only else engine
    return sessionmaker(bind, expire_on_commit=False, info=info)
