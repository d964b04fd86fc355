"""Tasks as staff work them: list, show (the three-part form), assign to me, pass to
another department, edit main settings and add-ons, comment, retry, close.

Staff see only tasks of their departments (admins all); any other task is
:class:`NotFound`, as if it did not exist.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from fulfil import describe, history, secrets
from fulfil.app import registry_of
from fulfil.db import utcnow
from fulfil.errors import Conflict, Forbidden, InvalidInput, NotFound
from fulfil.models import (
    TASK_STATUSES,
    TASK_TYPES,
    Department,
    HistoryEntry,
    Operation,
    Service,
    Staff,
    Task,
)
from fulfil.operations import complete_operation, lock_service, service_info
from fulfil.services.lifecycle import _validate_addons, _validate_params, params_model_of, service_history

MAX_LIMIT = 200


# -- listing ----------------------------------------------------------------------------------


def encode_cursor(task_id: int) -> str:
    return base64.urlsafe_b64encode(f"t{task_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith("t"):
            raise ValueError
        return int(raw[1:])
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput.one("cursor", "is not a cursor this server gave out") from None


def _visible(query, staff: Staff):
    if staff.is_admin:
        return query
    return query.where(Task.department_id.in_(list(staff.department_ids)))


def list_tasks(
    *,
    session: Session,
    staff: Staff,
    status: str | None = None,
    type: str | None = None,  # noqa: A002 - the domain's word
    department_id: int | None = None,
    assignee: str | int | None = None,
    service_id: int | None = None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[Task], str | None]:
    """Newest first, keyset-paginated: ``(tasks, next_cursor)``."""
    if not 1 <= limit <= MAX_LIMIT:
        raise InvalidInput.one("limit", f"must be between 1 and {MAX_LIMIT}")
    query = _visible(select(Task), staff)
    if status is not None:
        if status not in TASK_STATUSES and status != "open":
            raise InvalidInput.one("status", f"must be one of {', '.join(TASK_STATUSES)}, open")
        query = query.where(Task.status != "closed") if status == "open" else query.where(Task.status == status)
    if type is not None:
        if type not in TASK_TYPES:
            raise InvalidInput.one("type", f"must be one of {', '.join(TASK_TYPES)}")
        query = query.where(Task.type == type)
    if department_id is not None:
        query = query.where(Task.department_id == department_id)
    if assignee is not None:
        if assignee == "me":
            query = query.where(Task.assignee_id == staff.id)
        elif assignee == "none":
            query = query.where(Task.assignee_id.is_(None))
        else:
            try:
                query = query.where(Task.assignee_id == int(assignee))
            except (TypeError, ValueError):
                raise InvalidInput.one("assignee", "must be me, none or a staff id") from None
    if service_id is not None:
        query = query.where(Task.service_id == service_id)
    if cursor:
        query = query.where(Task.id < decode_cursor(cursor))
    rows = list(session.scalars(query.order_by(Task.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor


def count_tasks(*, session: Session, staff: Staff) -> dict[str, int]:
    """How many visible tasks there are by status, and open ones mine / unassigned."""
    visible = _visible(select(Task.status, func.count()).select_from(Task), staff)
    by_status = dict(session.execute(visible.group_by(Task.status)).all())
    counts = {status: by_status.get(status, 0) for status in TASK_STATUSES}
    counts["open"] = counts["new"] + counts["in_progress"]
    counts["all"] = sum(by_status.values())
    open_tasks = _visible(select(func.count()).select_from(Task), staff).where(Task.status != "closed")
    counts["mine"] = session.scalar(open_tasks.where(Task.assignee_id == staff.id)) or 0
    counts["unassigned"] = session.scalar(open_tasks.where(Task.assignee_id.is_(None))) or 0
    return counts


def get_task(*, session: Session, staff: Staff, task_id: int) -> Task:
    task = session.scalar(_visible(select(Task).where(Task.id == task_id), staff))
    if task is None:
        raise NotFound("task", task_id)
    return task


# -- the task form -----------------------------------------------------------------------------


@dataclass
class TaskForm:
    """The three parts of the task form staff know."""

    task: Task
    service: Service
    general: dict[str, Any]
    main_settings: dict[str, Any]
    main_settings_schema: dict[str, Any] | None
    addons: dict[str, Any]
    addons_editable: bool
    addons_reason: str | None
    history: list[HistoryEntry]


def task_form(*, session: Session, staff: Staff, task_id: int, reveal_secrets: bool = False) -> TaskForm:
    """The task as the form shows it. Secrets in the main settings are masked unless
    ``reveal_secrets``; revealing is recorded in the service history."""
    task = get_task(session=session, staff=staff, task_id=task_id)
    service = task.service
    model = params_model_of(session, service.tariff)
    if reveal_secrets:
        history.record(
            session,
            service_id=service.id,
            event="task.secrets_shown",
            message=f"secrets of task #{task.id} shown to {staff.login}",
            staff=staff,
            task_id=task.id,
        )
        main_settings = dict(task.main_settings)
    else:
        main_settings = secrets.mask(task.main_settings, model)
    entries = service_history(session, service.id)
    general = {
        "id": task.id,
        "type": task.type,
        "status": task.status,
        "title": task.title,
        "activation_date": task.created_at,
        "department": {"id": task.department.id, "name": task.department.name},
        "assignee": {"id": task.assignee.id, "login": task.assignee.login, "name": task.assignee.name}
        if task.assignee
        else None,
        "description": task.description,
        "close_actions": task.close_actions,
        "error": task.error,
        "retryable": task.retryable and task.status != "closed",
        "service_description": describe.service_description(service_info(service), model),
        "service_id": service.id,
        "client": {"id": service.client.id, "name": service.client.name},
        "closed_at": task.closed_at,
    }
    editable = task.type == "change" and task.status != "closed"
    reason = None
    if task.type != "change":
        reason = f"add-ons can be edited only on change tasks; this is a {task.type} task"
    elif task.status == "closed":
        reason = "the task is closed"
    return TaskForm(
        task=task,
        service=service,
        general=general,
        main_settings=main_settings,
        main_settings_schema=model.model_json_schema() if model is not None else None,
        addons=dict(task.addons),
        addons_editable=editable,
        addons_reason=reason,
        history=entries,
    )


# -- actions -------------------------------------------------------------------------------------


def _not_closed(task: Task) -> None:
    if task.status == "closed":
        raise Conflict(f"task #{task.id} is already closed")


def assign_to_me(*, session: Session, staff: Staff, task_id: int) -> Task:
    """The database decides the single winner; the same person again is a no-op."""
    task = get_task(session=session, staff=staff, task_id=task_id)
    now = utcnow()
    result = session.execute(
        update(Task)
        .where(Task.id == task.id, Task.assignee_id.is_(None), Task.status != "closed")
        .values(assignee_id=staff.id, status="in_progress", assigned_at=now, version=Task.version + 1)
        .execution_options(synchronize_session=False)
    )
    session.refresh(task)
    if result.rowcount == 1:
        history.record(
            session, service_id=task.service_id, event="task.assigned",
            message=f"task #{task.id} assigned to {staff.login}", staff=staff, task_id=task.id,
        )
        return task
    if task.assignee_id == staff.id:
        return task
    _not_closed(task)
    holder = task.assignee.login if task.assignee else "someone else"
    raise Conflict(f"task #{task.id} is already assigned to {holder}")


def transfer(*, session: Session, staff: Staff, task_id: int, department_id: int) -> Task:
    """Pass the task to another department; the assignee is cleared."""
    task = get_task(session=session, staff=staff, task_id=task_id)
    _not_closed(task)
    target = session.get(Department, department_id)
    if target is None:
        raise InvalidInput.one("department_id", f"department {department_id} does not exist")
    if target.id == task.department_id:
        raise Conflict(f"task #{task.id} already belongs to department {target.name}")
    source = task.department
    result = session.execute(
        update(Task)
        .where(Task.id == task.id, Task.version == task.version, Task.status != "closed")
        .values(department_id=target.id, assignee_id=None, status="new", assigned_at=None, version=Task.version + 1)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict(f"task #{task.id} changed at the same moment; look again and retry")
    session.refresh(task)
    history.record(
        session, service_id=task.service_id, event="task.transferred",
        message=f"task #{task.id} passed from {source.name} to {target.name}", staff=staff, task_id=task.id,
    )
    session.flush()
    registry_of(session).notify(
        "fulfil_task_transferred", session=session, task_id=task.id,
        from_department_id=source.id, to_department_id=target.id,
    )
    return task


def _may_edit(task: Task, staff: Staff, what: str) -> None:
    _not_closed(task)
    if staff.is_admin or task.assignee_id == staff.id:
        return
    if task.assignee_id is None:
        raise Conflict(f"assign task #{task.id} to yourself before you {what}")
    raise Conflict(f"task #{task.id} is assigned to {task.assignee.login}; only they or an admin can {what}")


def update_task(
    *,
    session: Session,
    staff: Staff,
    task_id: int,
    main_settings: Mapping[str, Any] | None = None,
    addons: Mapping[str, Any] | None = None,
) -> Task:
    """Edit the task's main settings (validated by the module's params model) and,
    on change tasks only, its add-ons. Applied to the service when the task closes."""
    task = get_task(session=session, staff=staff, task_id=task_id)
    if addons is not None and task.type != "change":
        raise Conflict(f"add-ons can be edited only on change tasks; task #{task.id} is a {task.type} task")
    _may_edit(task, staff, "edit it")
    service = task.service
    changed: list[str] = []
    if main_settings is not None:
        merged = secrets.unmask({**task.main_settings, **main_settings}, task.main_settings)
        validated = _validate_params(session, service.tariff, merged)
        changed += [f"main setting {k}" for k in sorted(validated) if task.main_settings.get(k) != validated[k]]
        task.main_settings = validated
    if addons is not None:
        validated_addons = _validate_addons(service.tariff, addons, base=task.addons)
        changed += [f"add-on {k}" for k in sorted(validated_addons) if task.addons.get(k) != validated_addons[k]]
        task.addons = validated_addons
    if changed:
        task.version += 1
        # names only: values may be secrets
        history.record(
            session, service_id=service.id, event="task.edited",
            message=f"task #{task.id}: changed {', '.join(changed)}", staff=staff, task_id=task.id,
        )
    session.flush()
    return task


def add_comment(*, session: Session, staff: Staff, task_id: int, text: str) -> HistoryEntry:
    task = get_task(session=session, staff=staff, task_id=task_id)
    text = (text or "").strip()
    if not text:
        raise InvalidInput.one("text", "must not be empty")
    if len(text) > 10_000:
        raise InvalidInput.one("text", "must be at most 10000 characters")
    entry = history.record(
        session, service_id=task.service_id, event="comment", message=text, staff=staff, task_id=task.id
    )
    session.flush()
    return entry


def retry(*, session: Session, staff: Staff, task_id: int) -> Task:
    """Run the automatic module again; on success the task closes itself."""
    task = get_task(session=session, staff=staff, task_id=task_id)
    _not_closed(task)
    if not task.retryable:
        raise Conflict(f"task #{task.id} did not come from a module failure: there is nothing to retry")
    result = session.execute(
        update(Operation)
        .where(Operation.id == task.operation_id, Operation.state == "waiting_task")
        .values(state="pending", run_after=utcnow(), attempts=0, lease_owner=None, lease_expires=None)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        raise Conflict(f"the module is already running again for task #{task.id}")
    history.record(
        session, service_id=task.service_id, event="task.retry",
        message=f"task #{task.id}: {staff.login} asked the module to try again", staff=staff,
        task_id=task.id, operation_id=task.operation_id,
    )
    session.info["fulfil.wake"] = True
    return task


def close(*, session: Session, staff: Staff, task_id: int) -> Task:
    """Close the task: the status change and the staged changes apply in this one
    transaction. Closing a closed task does nothing."""
    task = get_task(session=session, staff=staff, task_id=task_id)
    if task.status == "closed":
        return task
    if not staff.is_admin and task.assignee_id != staff.id:
        if task.assignee_id is None:
            raise Forbidden(f"assign task #{task.id} to yourself before closing it")
        raise Forbidden(f"only {task.assignee.login} (the assignee) or an admin can close task #{task.id}")
    now = utcnow()
    claimed = session.execute(
        update(Task)
        .where(Task.id == task.id, Task.status != "closed")
        .values(status="closed", closed_at=now, closed_by_id=staff.id, version=Task.version + 1)
        .execution_options(synchronize_session=False)
    )
    if claimed.rowcount != 1:
        session.refresh(task)
        return task  # closed a moment ago by someone else: nothing more to do
    op_done = session.execute(
        update(Operation)
        .where(Operation.id == task.operation_id, Operation.state == "waiting_task")
        .values(state="done", finished_at=now)
        .execution_options(synchronize_session=False)
    )
    if op_done.rowcount != 1:
        raise Conflict(f"the module is running again for task #{task.id}; wait for it to finish")
    session.refresh(task)
    op = session.get(Operation, task.operation_id)
    session.refresh(op)
    service = lock_service(session, task.service_id)
    history.record(
        session, service_id=service.id, event="task.closed", message=f"task #{task.id} closed by {staff.login}",
        staff=staff, task_id=task.id, operation_id=op.id,
    )
    complete_operation(
        session,
        registry_of(session),
        op_id=op.id,
        kind=op.kind,
        payload=op.payload,
        service_id=service.id,
        old_status=service.status,
        params=task.main_settings,
        addons=task.addons if task.type == "change" else None,
        staff=staff,
        message=f"{op.kind} done by hand (task #{task.id})",
    )
    registry_of(session).notify("fulfil_task_closed", session=session, task_id=task.id)
    return task
