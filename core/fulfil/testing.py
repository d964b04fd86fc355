"""Helpers for testing processing modules through the real engine.

Installed as a pytest plugin (entry point ``pytest11``), so a module author gets
these fixtures by installing fulfil:

* ``fulfil_database_url`` — a fresh, migrated SQLite database per test (override
  it in your conftest to test on PostgreSQL);
* ``fulfil_app`` — a :class:`fulfil.app.Fulfil` on it with an empty plugin registry;
* ``module_harness`` — a factory: ``module_harness("dnshosting", plugin, settings)``
  registers the plugin, creates a department, a processing module, a tariff plan and
  a client, and gives you ``order()``, ``run()``, ``service()``, ``tasks()``…;
* ``fake_module`` — a :class:`FakeModule` with controllable outcomes.

Example::

    def test_open_creates_zone(module_harness):
        h = module_harness("dnshosting", DnsHosting(), settings={...})
        sid = h.order(params={"domain": "example.com"})
        h.run()
        assert h.service(sid)["status"] == "active"
"""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, update

from fulfil.hookspecs import hookimpl
from fulfil.module import (
    OPERATIONS,
    AddonSpec,
    Done,
    ManualWork,
    ModuleError,
    ModuleInfo,
    OperationContext,
    RetryPolicy,
    TransientModuleError,
)

def in_ci() -> bool:
    import os

    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def missing_peer(reason: str) -> None:
    """A test's real peer (PowerDNS, an emulator, a browser) is missing: skip it
    locally with the reason; in CI (``CI=true``) fail it, never skip."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing peer is a failure)")
    pytest.skip(reason)


# -- a fake module with controllable outcomes ------------------------------------------------


class FakeModule:
    """A processing module whose every outcome the test chooses.

    ``fake.plan("open", "transient", "transient", "done")`` makes the next three open
    calls fail twice, then succeed. Outcomes: ``done``, ``manual``, ``transient``
    (``TransientModuleError``), ``fail`` (``ModuleError``), ``crash`` (a plain
    exception), ``hang`` (blocks until :meth:`release` or the timeout), ``none``
    (returns nothing). With no plan left, ``default`` (``done``) applies. Every call
    is recorded in :attr:`calls` as ``(kind, service_id, operation_id)``.
    """

    def __init__(
        self,
        *,
        default: str = "done",
        retry: RetryPolicy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.05),
        timeout: float = 5.0,
        done_params: Mapping[str, Any] | None = None,
        delay: float = 0.0,
    ) -> None:
        self.default = default
        self.retry = retry
        self.timeout = timeout
        self.done_params = dict(done_params or {})
        self.delay = delay
        self.calls: list[tuple[str, int, str]] = []
        self._plans: dict[str, list[str]] = defaultdict(list)
        self._lock = threading.Lock()
        self._released = threading.Event()

    def plan(self, kind: str, *outcomes: str) -> FakeModule:
        with self._lock:
            self._plans[kind].extend(outcomes)
        return self

    def release(self) -> None:
        self._released.set()

    @hookimpl
    def fulfil_module_info(self) -> ModuleInfo:
        from pydantic import BaseModel, ConfigDict, SecretStr

        class FakeParams(BaseModel):
            model_config = ConfigDict(extra="allow")
            password: SecretStr | None = None

        return ModuleInfo(
            title="Fake module",
            operations=frozenset(OPERATIONS),
            params_model=FakeParams,
            addons=(AddonSpec("disk_gb", "Disk", "GB"),),
            retry=self.retry,
            timeout=self.timeout,
        )

    @hookimpl
    def fulfil_check_connection(self, settings) -> str:
        return "fake panel reachable"

    def _outcome(self, ctx: OperationContext):
        with self._lock:
            self.calls.append((ctx.kind, ctx.service.id, ctx.operation_id))
            plan = self._plans[ctx.kind]
            outcome = plan.pop(0) if plan else self.default
        if self.delay:
            time.sleep(self.delay)
        if outcome == "done":
            return Done(params=self.done_params, remote_id=f"fake-{ctx.service.id}")
        if outcome == "manual":
            return ManualWork(description=f"fake module asks for manual {ctx.kind}")
        if outcome == "transient":
            raise TransientModuleError(f"fake panel unavailable during {ctx.kind}")
        if outcome == "fail":
            raise ModuleError(f"fake panel refused the {ctx.kind}")
        if outcome == "crash":
            raise RuntimeError(f"fake module bug in {ctx.kind}")
        if outcome == "hang":
            self._released.wait(600)
            return Done()
        if outcome == "none":
            return None
        raise ValueError(f"unknown fake outcome {outcome!r}")

    @hookimpl
    def fulfil_open(self, ctx):
        return self._outcome(ctx)

    @hookimpl
    def fulfil_edit(self, ctx, changes):
        return self._outcome(ctx)

    @hookimpl
    def fulfil_close(self, ctx):
        return self._outcome(ctx)

    @hookimpl
    def fulfil_suspend(self, ctx):
        return self._outcome(ctx)

    @hookimpl
    def fulfil_resume(self, ctx):
        return self._outcome(ctx)


# -- a harness that runs a module through the real engine ----------------------------------------


class ModuleHarness:
    """One processing module, one tariff, one client, on a real database and the
    real engine. Every method commits; read methods return plain dicts."""

    def __init__(
        self,
        app,
        plugin_name: str,
        *,
        settings: Mapping[str, Any] | None = None,
        addons: Mapping[str, Any] | None = None,
        default_params: Mapping[str, Any] | None = None,
        department: str = "Operations",
    ) -> None:
        from fulfil.services import catalog

        self.app = app
        self.plugin_name = plugin_name
        with app.session() as s:
            dept = s.scalar(select(_models().Department).where(_models().Department.name == department))
            if dept is None:
                dept = catalog.create_department(session=s, name=department)
            self.department_id = dept.id
            admin = s.scalar(select(_models().Staff).where(_models().Staff.login == "harness-admin"))
            if admin is None:
                admin, _ = catalog.create_staff(
                    session=s, login="harness-admin", is_admin=True, department_ids=[dept.id]
                )
            self.admin_id = admin.id
            n = len(catalog.list_processing_modules(session=s)) + 1
            module = catalog.create_processing_module(
                session=s, name=f"{plugin_name} #{n}", plugin=plugin_name, department_id=dept.id,
                settings=settings or {},
            )
            self.processing_module_id = module.id
            tariff = catalog.create_tariff(
                session=s, name=f"{plugin_name} tariff #{n}", service_type=plugin_name,
                processing_module_id=module.id, default_params=default_params, addons=addons,
            )
            self.tariff_id = tariff.id
            client = catalog.create_client(session=s, name="Test Client", email="client@example.test")
            self.client_id = client.id
        self.worker = app.worker(concurrency=2, lease_seconds=30, poll_interval=0.05)

    # lifecycle requests
    def order(self, params: Mapping[str, Any] | None = None, addons: Mapping[str, Any] | None = None) -> int:
        from fulfil.services import lifecycle

        with self.app.session() as s:
            return lifecycle.order_service(
                session=s, client_id=self.client_id, tariff_id=self.tariff_id, params=params, addons=addons
            ).id

    def edit(self, service_id: int, **changes: Any) -> None:
        from fulfil.services import lifecycle

        with self.app.session() as s:
            lifecycle.edit_service(session=s, service_id=service_id, **changes)

    def suspend(self, service_id: int) -> None:
        self._simple("suspend_service", service_id)

    def resume(self, service_id: int) -> None:
        self._simple("resume_service", service_id)

    def delete(self, service_id: int) -> None:
        self._simple("delete_service", service_id)

    def _simple(self, fn: str, service_id: int) -> None:
        from fulfil.services import lifecycle

        with self.app.session() as s:
            getattr(lifecycle, fn)(session=s, service_id=service_id)

    # the engine
    def run(self, *, skip_backoff: bool = True, max_rounds: int = 100) -> int:
        """Run every due operation in this thread. With ``skip_backoff`` retries
        waiting for their back-off run at once, until nothing is left to run."""
        total = 0
        for _ in range(max_rounds):
            if skip_backoff:
                self.skip_backoff()
            ran = self.worker.run_pending()
            total += ran
            if not ran:
                break
        return total

    def skip_backoff(self) -> None:
        from fulfil.db import utcnow

        m = _models()
        with self.app.session() as s:
            s.execute(update(m.Operation).where(m.Operation.state == "pending").values(run_after=utcnow()))

    # reading
    def service(self, service_id: int) -> dict[str, Any]:
        m = _models()
        with self.app.session(read_only=True) as s:
            svc = s.get(m.Service, service_id)
            return {
                "id": svc.id,
                "status": svc.status,
                "params": dict(svc.params),
                "addons": dict(svc.addons),
                "remote_id": svc.remote_id,
                "tariff_id": svc.tariff_id,
            }

    def tasks(self, service_id: int | None = None) -> list[dict[str, Any]]:
        m = _models()
        with self.app.session(read_only=True) as s:
            query = select(m.Task).order_by(m.Task.id)
            if service_id is not None:
                query = query.where(m.Task.service_id == service_id)
            return [
                {
                    "id": t.id, "type": t.type, "status": t.status, "department_id": t.department_id,
                    "description": t.description, "error": t.error, "retryable": t.retryable,
                    "main_settings": dict(t.main_settings), "addons": dict(t.addons),
                }
                for t in s.scalars(query)
            ]

    def history(self, service_id: int) -> list[dict[str, Any]]:
        m = _models()
        with self.app.session(read_only=True) as s:
            rows = s.scalars(select(m.HistoryEntry).where(m.HistoryEntry.service_id == service_id).order_by(m.HistoryEntry.id))
            return [{"event": h.event, "message": h.message, "detail": h.detail, "actor": h.actor} for h in rows]

    def operations(self, service_id: int) -> list[dict[str, Any]]:
        m = _models()
        with self.app.session(read_only=True) as s:
            rows = s.scalars(select(m.Operation).where(m.Operation.service_id == service_id).order_by(m.Operation.id))
            return [{"id": o.id, "key": o.key, "kind": o.kind, "state": o.state, "attempts": o.attempts, "last_error": o.last_error} for o in rows]

    def check_connection(self) -> tuple[bool, str]:
        """"Check connection" as staff press it: ``(ok, sentence)``."""
        from fulfil.services import catalog

        with self.app.session() as s:
            return catalog.check_connection(session=s, processing_module_id=self.processing_module_id)

    # working tasks as an admin would
    def _admin(self, s):
        return s.get(_models().Staff, self.admin_id)

    def retry_task(self, task_id: int) -> None:
        from fulfil.services import tasks

        with self.app.session() as s:
            tasks.retry(session=s, staff=self._admin(s), task_id=task_id)

    def close_task(self, task_id: int, main_settings: Mapping[str, Any] | None = None) -> None:
        from fulfil.services import tasks

        with self.app.session() as s:
            admin = self._admin(s)
            if main_settings:
                tasks.update_task(session=s, staff=admin, task_id=task_id, main_settings=main_settings)
            tasks.close(session=s, staff=admin, task_id=task_id)


def _models():
    from fulfil import models

    return models


# -- fixtures ---------------------------------------------------------------------------------------

_template_lock = threading.Lock()
_sqlite_template: Path | None = None


def migrated_sqlite_copy(target: Path) -> str:
    """A migrated SQLite database at ``target``, copied from a template migrated once
    per process (migrating is the slow part)."""
    global _sqlite_template
    with _template_lock:
        if _sqlite_template is None:
            from fulfil.db import make_engine
            from fulfil.migrate import upgrade

            tmpdir = Path(tempfile.mkdtemp(prefix="fulfil-template-"))
            path = tmpdir / "template.db"
            engine = make_engine(f"sqlite:///{path}")
            upgrade(engine)
            # the last connection to close checkpoints the WAL into the file
            engine.dispose()
            _sqlite_template = path
    shutil.copyfile(_sqlite_template, target)
    return f"sqlite:///{target}"


@pytest.fixture
def fulfil_database_url(tmp_path) -> str:
    """A fresh migrated database for one test (SQLite; override for PostgreSQL)."""
    return migrated_sqlite_copy(tmp_path / "fulfil.db")


@pytest.fixture
def fulfil_registry():
    """An empty plugin registry: register the module under test yourself."""
    from fulfil.plugins import ModuleRegistry

    return ModuleRegistry.empty()


@pytest.fixture
def fulfil_app(fulfil_database_url, fulfil_registry) -> Iterator[Any]:
    from fulfil.app import Fulfil

    app = Fulfil(fulfil_database_url, registry=fulfil_registry)
    try:
        yield app
    finally:
        app.dispose()


@pytest.fixture
def fake_module() -> Iterator[FakeModule]:
    fake = FakeModule()
    try:
        yield fake
    finally:
        fake.release()


@pytest.fixture
def module_harness(fulfil_app):
    """``module_harness(name, plugin, settings=..., addons=...)`` → :class:`ModuleHarness`."""
    registered: list[str] = []

    def make(plugin_name: str, plugin: Any = None, **kwargs: Any) -> ModuleHarness:
        if plugin is not None and plugin_name not in fulfil_app.registry.modules:
            if fulfil_app.registry.register_module(plugin_name, plugin) is None:
                raise ModuleError(fulfil_app.registry.load_errors[plugin_name])
            registered.append(plugin_name)
        return ModuleHarness(fulfil_app, plugin_name, **kwargs)

    try:
        yield make
    finally:
        for name in registered:
            fulfil_app.registry.unregister_module(name)


# -- PostgreSQL test databases ----------------------------------------------------------------------

DEFAULT_POSTGRES_ADMIN_URL = "postgresql+psycopg://root@127.0.0.1:5432/postgres"


def postgres_admin_url() -> str:
    import os

    return os.environ.get("FULFIL_TEST_POSTGRES_URL", DEFAULT_POSTGRES_ADMIN_URL)


def create_postgres_database(admin_url: str | None = None, *, migrate: bool = True) -> str:
    """Create (and migrate) a database of its own for one test run; returns its URL.
    Raises ``OperationalError`` when no PostgreSQL answers."""
    import uuid

    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    admin_url = admin_url or postgres_admin_url()
    name = f"fulfil_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    finally:
        admin.dispose()
    url = make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    if migrate:
        from fulfil.db import make_engine
        from fulfil.migrate import upgrade

        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
    return url


def drop_postgres_database(url: str, admin_url: str | None = None) -> None:
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url

    name = make_url(url).database
    admin = create_engine(admin_url or postgres_admin_url(), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def empty_all_tables(url: str) -> None:
    """Truncate every fulfil table (between tests sharing one PostgreSQL database)."""
    from fulfil.db import make_engine
    from fulfil.models import Base

    engine = make_engine(url)
    try:
        names = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
        with engine.begin() as conn:
            conn.exec_driver_sql(f"TRUNCATE {names} RESTART IDENTITY CASCADE")
    finally:
        engine.dispose()
