"""One object holding what a fulfil process needs: the database, the plugins."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy.orm import Session

from fulfil.config import default_database_url
from fulfil.db import make_engine, session_factory
from fulfil.plugins import ModuleRegistry, default_registry

REGISTRY_KEY = "fulfil.registry"


class Fulfil:
    def __init__(self, database_url: str | None = None, *, registry: ModuleRegistry | None = None) -> None:
        self.database_url = database_url or default_database_url()
        self.engine = make_engine(self.database_url)
        self.registry = registry or default_registry()
        self._sessions = session_factory(self.engine)
        self._read_sessions = session_factory(self.engine, read_only=True)

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[Session]:
        """A session in a transaction that commits when the block ends (or rolls back
        on an exception). Service functions find the plugins through it."""
        factory = self._read_sessions if read_only else self._sessions
        with factory() as session:
            session.info[REGISTRY_KEY] = self.registry
            with session.begin():
                yield session

    def upgrade(self) -> None:
        from fulfil.migrate import upgrade

        upgrade(self.engine)

    def worker(self, **kwargs):
        from fulfil.operations import Worker

        return Worker(engine=self.engine, registry=self.registry, **kwargs)

    def start_background(self, *, concurrency: int = 4) -> "Background":
        """Start what runs beside the API in a worker process: the operations engine
        and, when the notifications plugin is installed, the outbox sender."""
        background = Background(self, concurrency=concurrency)
        background.start()
        return background

    def dispose(self) -> None:
        self.engine.dispose()


def registry_of(session: Session) -> ModuleRegistry:
    registry = session.info.get(REGISTRY_KEY)
    return registry if registry is not None else default_registry()


class Background:
    """The operations engine's worker and the outbox sender, started and stopped
    together (``fulfil worker``, and ``fulfil serve`` unless ``--no-worker``)."""

    def __init__(self, fulfil: Fulfil, *, concurrency: int) -> None:
        self.worker = fulfil.worker(concurrency=concurrency)
        self.sender = None
        try:
            from fulfil.notify import OutboxSender
        except ImportError:  # notifications are an optional plugin
            OutboxSender = None  # noqa: N806
        if OutboxSender is not None:
            self.sender = OutboxSender(fulfil.engine)

    def start(self) -> None:
        self.worker.start()
        if self.sender is not None and not self.sender.start():
            self.sender = None

    def stop(self) -> None:
        self.worker.stop()
        if self.sender is not None:
            self.sender.stop()
