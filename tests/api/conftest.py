"""An in-process client of the REST API on a real database (SQLite and PostgreSQL),
and a small world to work in: two departments, staff in each, an admin, the real
Manual Setup module, a fake automatic module and a module with secret settings."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel, ConfigDict, SecretStr
from sqlalchemy import select

from fulfil import EmptyParams, ModuleError, ModuleInfo, hookimpl
from fulfil.api import create_app
from fulfil.models import Task
from fulfil.services import catalog, lifecycle

API = "/api/v1"


class PanelSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str
    api_key: SecretStr


class SecretivePanel:
    """A module with a secret in its connection settings; its panel answers only
    at http://panel.test."""

    @hookimpl
    def fulfil_module_info(self) -> ModuleInfo:
        return ModuleInfo(title="Secretive panel", settings_model=PanelSettings, params_model=EmptyParams)

    @hookimpl
    def fulfil_check_connection(self, settings) -> str:
        if settings.url != "http://panel.test":
            raise ModuleError(f"cannot reach {settings.url}")
        return "panel reachable"


@dataclass
class World:
    """Ids and tokens; ``headers(role)`` for role in owner, owner2, other, admin, none."""

    fulfil: Any
    client: TestClient
    fake: Any
    tokens: dict[str, str] = field(default_factory=dict)
    staff_ids: dict[str, int] = field(default_factory=dict)
    owner_dept: int = 0
    other_dept: int = 0
    client_id: int = 0
    manual_module: int = 0
    manual_tariff: int = 0
    fake_module: int = 0
    fake_tariff: int = 0

    def headers(self, role: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens[role]}"} if role != "none" else {}

    def run(self) -> int:
        """Run every due operation now, in this thread."""
        return self.fulfil.worker(concurrency=1).run_pending()

    def order(self, tariff_id: int, params: dict | None = None, addons: dict | None = None) -> int:
        with self.fulfil.session() as s:
            return lifecycle.order_service(
                session=s, client_id=self.client_id, tariff_id=tariff_id, params=params, addons=addons
            ).id

    def task_of(self, service_id: int) -> int:
        with self.fulfil.session(read_only=True) as s:
            return s.scalar(select(Task.id).where(Task.service_id == service_id).order_by(Task.id.desc()))

    def call(self, role: str, method: str, path: str, **kwargs):
        return self.client.request(method, API + path, headers=self.headers(role), **kwargs)

    def active_service(self) -> int:
        """A service on the fake module that is active (the module succeeds)."""
        sid = self.order(self.fake_tariff)
        self.run()
        return sid

    def manual_task(self, *, assign_to: str | None = None) -> tuple[int, int]:
        """A Manual Setup service and its setup task (assigned to ``assign_to``)."""
        sid = self.order(self.manual_tariff, params={"domain": "example.com", "password": "s3cret-pass"})
        self.run()
        tid = self.task_of(sid)
        if assign_to:
            assert self.call(assign_to, "POST", f"/tasks/{tid}/assign").status_code == 200
        return sid, tid


@pytest.fixture
def api_client(fulfil_app) -> Iterator[TestClient]:
    with TestClient(create_app(fulfil_app)) as client:
        yield client


@pytest.fixture
def world(fulfil_app, api_client, fake_module) -> Iterator[World]:
    registry = fulfil_app.registry
    registry.register_module("fake", fake_module)
    registry.register_module("secretive", SecretivePanel())
    w = World(fulfil=fulfil_app, client=api_client, fake=fake_module)
    addons = {"disk_gb": {"unit": "GB", "min": 1, "max": 100, "default": 10}}
    with fulfil_app.session() as s:
        owner = catalog.create_department(session=s, name="Support")
        other = catalog.create_department(session=s, name="Network")
        w.owner_dept, w.other_dept = owner.id, other.id
        for role, depts, admin in (
            ("owner", [owner.id], False),
            ("owner2", [owner.id], False),
            ("other", [other.id], False),
            ("admin", [], True),
        ):
            staff, token = catalog.create_staff(session=s, login=role, department_ids=depts, is_admin=admin)
            w.tokens[role], w.staff_ids[role] = token, staff.id
        w.client_id = catalog.create_client(session=s, name="Acme Ltd", email="it@acme.example").id
        manual = catalog.create_processing_module(session=s, name="Manual Setup", plugin="manual", department_id=owner.id)
        w.manual_module = manual.id
        w.manual_tariff = catalog.create_tariff(
            session=s, name="Hosting", service_type="hosting", processing_module_id=manual.id, addons=addons
        ).id
        fake = catalog.create_processing_module(session=s, name="Fake panel", plugin="fake", department_id=owner.id)
        w.fake_module = fake.id
        w.fake_tariff = catalog.create_tariff(
            session=s, name="Fake hosting", service_type="hosting", processing_module_id=fake.id, addons=addons
        ).id
    try:
        yield w
    finally:
        registry.unregister_module("fake")
        registry.unregister_module("secretive")
