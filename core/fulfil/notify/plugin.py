"""The notifications plugin: an ordinary observer plugin, registered by default
(``fulfil.defaults.DEFAULT_OBSERVERS``); the core does not know it.

Every hook runs inside the transaction of its event and only writes outbox rows with
that session, so a message exists exactly when its event committed: a rolled-back
event (say, a worker that lost its lease) leaves no message behind, and a repeated
attempt cannot queue a second one. An error here is not swallowed: it fails the
event's transaction, which the core retries or reports — losing the client's email
in silence is worse than refusing the event.

Client messages (in the client's language): service opened (with its main
settings), suspended, resumed, deleted, changed (with the new main settings).
Department messages (language ``FULFIL_STAFF_LANGUAGE``, default ``en``), to
``Department.email`` when ``Department.notify`` is on: a new task, a task passed to
the department.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from sqlalchemy.orm import Session

from fulfil.hookspecs import hookimpl
from fulfil.models import Department, Service, Task
from fulfil.notify.outbox import enqueue

log = logging.getLogger(__name__)

STAFF_LANGUAGE_ENV = "FULFIL_STAFF_LANGUAGE"


def _registry(session: Session):
    # only the registry that runs this event; never discover a second one from here
    from fulfil.app import REGISTRY_KEY

    return session.info.get(REGISTRY_KEY)


def _params_model(session: Session, service: Service):
    registry = _registry(session)
    if registry is None:
        return None
    info = registry.info(service.tariff.processing_module.plugin)
    return info.params_model if info else None


def _label(name: str, model) -> str:
    field = model.model_fields.get(name) if model is not None else None
    if field is not None and field.title:
        return field.title
    return name.replace("_", " ").capitalize()


def _show(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return ", ".join(_show(v) for v in value)
    if isinstance(value, Mapping):
        return ", ".join(f"{k}: {_show(v)}" for k, v in value.items())
    if isinstance(value, bool):
        return "yes" if value else "no"
    return str(value)


def main_settings(params: Mapping[str, Any], model=None) -> list[dict[str, str]]:
    """The main settings as the email shows them, in the params model's order.
    Values are plain: secrets included."""
    order = list(model.model_fields) if model is not None else []
    names = [n for n in order if n in params] + [n for n in params if n not in order]
    return [
        {"name": n, "label": _label(n, model), "value": _show(params[n])}
        for n in names
        if params[n] not in (None, "", [], {})
    ]


def _service_context(service: Service) -> dict[str, Any]:
    return {
        "id": service.id,
        "tariff": service.tariff.name,
        "service_type": service.tariff.service_type,
        "status": service.status,
        "addons": {k: v for k, v in sorted((service.addons or {}).items())},
        "addon_units": {k: (d or {}).get("unit", "") for k, d in (service.tariff.addons or {}).items()},
    }


class Notifications:
    """Observer hooks → outbox rows."""

    # -- the client --------------------------------------------------------------------------

    def _to_client(self, session: Session, service_id: int, kind: str, params: Mapping[str, Any] | None = None) -> None:
        service = session.get(Service, service_id)
        if service is None:
            return
        client = service.client
        if not client.email:
            log.warning("notify: client %s has no email address; %s message not queued", client.id, kind)
            return
        context: dict[str, Any] = {
            "client": {"name": client.name, "email": client.email},
            "service": _service_context(service),
        }
        if params is not None:
            context["settings"] = main_settings(params, _params_model(session, service))
        enqueue(
            session,
            kind=kind,
            audience="client",
            recipient=client.email,
            language=client.language,
            context=context,
            service_id=service.id,
        )

    @hookimpl
    def fulfil_service_opened(self, session: Session, service_id: int, params: dict) -> None:
        self._to_client(session, service_id, "service_opened", params)

    @hookimpl
    def fulfil_service_changed(self, session: Session, service_id: int, params: dict) -> None:
        self._to_client(session, service_id, "service_changed", params)

    @hookimpl
    def fulfil_service_status_changed(self, session: Session, service_id: int, old_status: str, new_status: str) -> None:
        # becoming active the first time is fulfil_service_opened, with the settings
        if new_status == "suspended":
            kind = "service_suspended"
        elif new_status == "active" and old_status == "suspended":
            kind = "service_resumed"
        elif new_status == "deleted":
            kind = "service_deleted"
        else:
            return
        self._to_client(session, service_id, kind)

    # -- departments ---------------------------------------------------------------------------

    def _to_department(self, session: Session, task_id: int, department_id: int, kind: str, extra: dict[str, Any] | None = None) -> None:
        department = session.get(Department, department_id)
        task = session.get(Task, task_id)
        if department is None or task is None:
            return
        if not department.notify or not department.email:
            log.debug("notify: department %s gets no alerts (notify off or no email)", department.id)
            return
        service = task.service
        context = {
            "department": {"id": department.id, "name": department.name},
            "task": {
                "id": task.id,
                "type": task.type,
                "title": task.title,
                "status": task.status,
                "error": task.error,
                "retryable": task.retryable,
            },
            "service": {**_service_context(service), "client": service.client.name},
            **(extra or {}),
        }
        enqueue(
            session,
            kind=kind,
            audience="department",
            recipient=department.email,
            language=os.environ.get(STAFF_LANGUAGE_ENV) or "en",
            context=context,
            service_id=service.id,
            task_id=task.id,
            department_id=department.id,
        )

    @hookimpl
    def fulfil_task_created(self, session: Session, task_id: int) -> None:
        task = session.get(Task, task_id)
        if task is not None:
            self._to_department(session, task_id, task.department_id, "task_created")

    @hookimpl
    def fulfil_task_transferred(self, session: Session, task_id: int, from_department_id: int, to_department_id: int) -> None:
        source = session.get(Department, from_department_id)
        self._to_department(
            session, task_id, to_department_id, "task_transferred",
            {"from_department": {"id": from_department_id, "name": source.name if source else "?"}},
        )


#: the instance ``DEFAULT_OBSERVERS`` registers
plugin = Notifications()
