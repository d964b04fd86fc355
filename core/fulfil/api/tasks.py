"""Tasks as staff work them, scoped to the caller's departments (admins: all).
A task of another department answers 404, as if it did not exist."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from fulfil.api import schemas as s
from fulfil.api import views
from fulfil.api.deps import StaffCaller
from fulfil.api.errors import ERROR_RESPONSES
from fulfil.api.pagination import Cursor, Limit
from fulfil.services import tasks

router = APIRouter(responses=ERROR_RESPONSES, tags=["tasks"])

TaskId = Annotated[int, Path(ge=1, le=s.MAX_ID)]
OptionalId = Annotated[int | None, Query(ge=1, le=s.MAX_ID)]


@router.get("/tasks", response_model=s.Page[s.TaskRead])
def list_tasks(
    caller: StaffCaller,
    status: Annotated[s.TaskStatusFilter | None, Query(description="open = new or in_progress")] = None,
    type: s.TaskType | None = None,  # noqa: A002 - the domain's word
    department_id: OptionalId = None,
    assignee: Annotated[
        str | None, Query(pattern=r"^(me|none|[1-9][0-9]{0,9})$", description="me, none or a staff id")
    ] = None,
    service_id: OptionalId = None,
    limit: Limit = 50,
    cursor: Cursor = None,
):
    with caller.session(read_only=True) as (session, staff):
        rows, nxt = tasks.list_tasks(
            session=session, staff=staff, status=status, type=type, department_id=department_id,
            assignee=assignee, service_id=service_id, limit=limit, cursor=cursor,
        )
        page = s.Page[s.TaskRead](items=[views.task(t) for t in rows], next_cursor=nxt)
    # the busiest endpoint: the page is built from the schema already, so send it as
    # it is rather than have FastAPI validate it a second time
    return Response(page.model_dump_json(), media_type="application/json")


@router.get("/tasks/{task_id}", response_model=s.TaskDetail)
def get_task(
    task_id: TaskId,
    caller: StaffCaller,
    reveal_secrets: Annotated[
        bool, Query(description="show secrets of the main settings (recorded in the service history)")
    ] = False,
):
    # revealing writes a history entry, so it needs a writing transaction
    with caller.session(read_only=not reveal_secrets) as (session, staff):
        form = tasks.task_form(session=session, staff=staff, task_id=task_id, reveal_secrets=reveal_secrets)
        return views.task_detail(form)


@router.post("/tasks/{task_id}/assign", response_model=s.TaskRead)
def assign_to_me(task_id: TaskId, caller: StaffCaller):
    with caller.session() as (session, staff):
        return views.task(tasks.assign_to_me(session=session, staff=staff, task_id=task_id))


@router.post("/tasks/{task_id}/transfer", response_model=s.TaskRead)
def transfer(task_id: TaskId, body: s.TaskTransfer, caller: StaffCaller):
    with caller.session() as (session, staff):
        return views.task(tasks.transfer(session=session, staff=staff, task_id=task_id, department_id=body.department_id))


@router.patch("/tasks/{task_id}", response_model=s.TaskDetail)
def update_task(task_id: TaskId, body: s.TaskUpdate, caller: StaffCaller):
    with caller.session() as (session, staff):
        tasks.update_task(session=session, staff=staff, task_id=task_id, main_settings=body.main_settings, addons=body.addons)
        return views.task_detail(tasks.task_form(session=session, staff=staff, task_id=task_id))


@router.post("/tasks/{task_id}/comments", response_model=s.HistoryRead, status_code=201)
def add_comment(task_id: TaskId, body: s.CommentCreate, caller: StaffCaller):
    with caller.session() as (session, staff):
        return views.history(tasks.add_comment(session=session, staff=staff, task_id=task_id, text=body.text))


@router.post("/tasks/{task_id}/retry", response_model=s.TaskRead, status_code=202)
def retry(task_id: TaskId, caller: StaffCaller):
    with caller.session() as (session, staff):
        return views.task(tasks.retry(session=session, staff=staff, task_id=task_id))


@router.post("/tasks/{task_id}/close", response_model=s.TaskRead)
def close(task_id: TaskId, caller: StaffCaller):
    with caller.session() as (session, staff):
        return views.task(tasks.close(session=session, staff=staff, task_id=task_id))
