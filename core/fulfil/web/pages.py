"""Sign-in, the Tasks page and the three-tab task form."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from sqlalchemy import select
from sqlalchemy.orm import Session
from starlette.responses import Response

from fulfil.errors import Conflict, Forbidden, InvalidInput
from fulfil.models import TASK_TYPES, Department, Service, Staff
from fulfil.secrets import MASK
from fulfil.services import catalog, tasks
from fulfil.web.forms import field_errors, read_fields, schema_fields
from fulfil.web.ui import CsrfRefused, LoginRequired, WebUI, safe_next

log = logging.getLogger(__name__)

TABS = {"general": "General information", "main": "Main settings", "addons": "Add-ons"}
PAGE_SIZE = 50
STATUS_FILTERS = {"open": "Open", "new": "New", "in_progress": "In progress", "closed": "Closed", "all": "All"}


def build_router(ui: WebUI) -> APIRouter:
    router = APIRouter(route_class=ui.route_class(), include_in_schema=False)

    @router.get("/")
    def home() -> Response:
        return ui.redirect("/tasks")

    # -- signing in and out ----------------------------------------------------------------

    @router.get("/login")
    def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002
        if ui.cookies.session(request).staff_id is not None:
            try:
                with ui.fulfil.session(read_only=True) as s:
                    ui.staff(request, s)
                return ui.redirect(safe_next(next))  # already signed in
            except LoginRequired:
                request.state.staff = None
        return ui.render(request, "login.html", {"next": safe_next(next), "login": ""})

    @router.post("/login")
    async def login(request: Request) -> Response:
        form = await ui.form(request)
        login_name = (form.get("login") or "").strip()
        password = form.get("password") or ""
        target = safe_next(form.get("next"))
        return await _in_thread(_sign_in, ui, request, login_name, password, target)

    @router.post("/logout")
    async def logout(request: Request) -> Response:
        try:
            await ui.form(request)
        except CsrfRefused:
            if ui.cookies.session(request).staff_id is not None:
                raise
            return ui.redirect("/login")  # the session had already ended
        ui.cookies.sign_out(request)
        ui.flash(request, "info", "You are signed out.")
        return ui.redirect("/login")

    # -- the Tasks page ----------------------------------------------------------------------

    @router.get("/tasks")
    def task_list(request: Request) -> Response:
        q = request.query_params
        status = q.get("status") or "open"
        filters: dict[str, Any] = {
            "status": None if status == "all" else status,
            "type": q.get("type") or None,
            "department_id": int(q["department"]) if (q.get("department") or "").isdigit() else None,
            "assignee": {"mine": "me", "unassigned": "none"}.get(q.get("who") or ""),
            "service_id": int(q["service"]) if (q.get("service") or "").isdigit() else None,
        }
        with ui.fulfil.session(read_only=True) as s:
            staff = ui.staff(request, s)
            error = None
            try:
                rows, next_cursor = tasks.list_tasks(
                    session=s, staff=staff, limit=PAGE_SIZE, cursor=q.get("cursor") or None, **filters
                )
            except InvalidInput as exc:
                rows, next_cursor, error = [], None, exc.message
            # one query for every row's service (and its client and tariff plan); the
            # rows' lazy task.service then finds them in the session, which holds them
            # only while someone does: hence the local name
            service_ids = {t.service_id for t in rows}
            services = list(s.scalars(select(Service).where(Service.id.in_(service_ids)))) if service_ids else []
            departments = _departments_of(s, staff)
            if error:
                ui.flash_now(request, "error", f"Filter not understood: {error}")
            return ui.render(
                request,
                "tasks.html",
                {
                    "nav": "tasks",
                    "tasks": rows,
                    "services": services,
                    "next_cursor": next_cursor,
                    "first_page": bool(q.get("cursor")),
                    "counts": tasks.count_tasks(session=s, staff=staff),
                    "status": status,
                    "type": filters["type"] or "",
                    "department": filters["department_id"],
                    "who": q.get("who") or "",
                    "service_id": filters["service_id"],
                    "departments": departments,
                    "status_filters": STATUS_FILTERS,
                    "task_types": TASK_TYPES,
                },
                status=400 if error else 200,
            )

    # -- one task -------------------------------------------------------------------------------

    @router.get("/tasks/{task_id}")
    def task_page(request: Request, task_id: int, tab: str = "general") -> Response:
        return show_task(ui, request, task_id, tab=tab)

    @router.post("/tasks/{task_id}/reveal")
    async def reveal(request: Request, task_id: int) -> Response:
        await ui.form(request)
        return await _in_thread(show_task, ui, request, task_id, tab="main", reveal=True)

    @router.post("/tasks/{task_id}/assign")
    async def assign(request: Request, task_id: int) -> Response:
        form = await ui.form(request)
        return await _in_thread(
            _act, ui, request, task_id, form.get("tab"),
            lambda s, staff: tasks.assign_to_me(session=s, staff=staff, task_id=task_id),
            f"Task #{task_id} is now yours.",
        )

    @router.post("/tasks/{task_id}/retry")
    async def retry(request: Request, task_id: int) -> Response:
        form = await ui.form(request)
        return await _in_thread(
            _act, ui, request, task_id, form.get("tab"),
            lambda s, staff: tasks.retry(session=s, staff=staff, task_id=task_id),
            f"The module is running again for task #{task_id}; the task closes itself if it succeeds.",
        )

    @router.post("/tasks/{task_id}/close")
    async def close(request: Request, task_id: int) -> Response:
        form = await ui.form(request)
        return await _in_thread(
            _act, ui, request, task_id, form.get("tab"),
            lambda s, staff: tasks.close(session=s, staff=staff, task_id=task_id),
            f"Task #{task_id} is closed.",
        )

    @router.post("/tasks/{task_id}/transfer")
    async def transfer(request: Request, task_id: int) -> Response:
        form = await ui.form(request)
        raw = form.get("department_id") or ""
        return await _in_thread(_transfer, ui, request, task_id, raw)

    @router.post("/tasks/{task_id}/comment")
    async def comment(request: Request, task_id: int) -> Response:
        form = await ui.form(request)
        text = form.get("text") or ""
        return await _in_thread(_comment, ui, request, task_id, text)

    @router.post("/tasks/{task_id}/main-settings")
    async def save_main_settings(request: Request, task_id: int) -> Response:
        form = await ui.form(request)
        return await _in_thread(_save_main_settings, ui, request, task_id, form)

    @router.post("/tasks/{task_id}/addons")
    async def save_addons(request: Request, task_id: int) -> Response:
        form = await ui.form(request)
        return await _in_thread(_save_addons, ui, request, task_id, form)

    return router


async def _in_thread(fn, *args, **kwargs):
    """The service layer is synchronous: run it off the event loop."""
    from starlette.concurrency import run_in_threadpool

    return await run_in_threadpool(fn, *args, **kwargs)


# -- helpers ------------------------------------------------------------------------------------


def _departments_of(s: Session, staff: Staff) -> list[Department]:
    if staff.is_admin:
        return list(catalog.list_departments(session=s))
    return list(staff.departments)


class SignInThrottle:
    """Failed sign-ins per login, in this process: after ``limit`` failures within
    ``window`` seconds further attempts are refused until the window passes, so a
    password cannot be guessed at argon2's full speed."""

    def __init__(self, limit: int = 10, window: float = 600.0) -> None:
        self.limit = limit
        self.window = window
        self._failures: dict[str, list[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, key: str, now: float) -> list[float]:
        recent = [t for t in self._failures.get(key, []) if now - t < self.window]
        if recent:
            self._failures[key] = recent
        else:
            self._failures.pop(key, None)
        return recent

    def blocked(self, login: str) -> bool:
        with self._lock:
            return len(self._recent(login.lower(), time.monotonic())) >= self.limit

    def failed(self, login: str) -> None:
        with self._lock:
            now = time.monotonic()
            if len(self._failures) > 10_000:  # bounded memory under a spray of logins
                self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}
            self._failures.setdefault(login.lower(), []).append(now)

    def succeeded(self, login: str) -> None:
        with self._lock:
            self._failures.pop(login.lower(), None)


def _sign_in(ui: WebUI, request: Request, login_name: str, password: str, target: str) -> Response:
    throttle: SignInThrottle = ui.throttle
    if throttle.blocked(login_name):
        log.warning("web sign-in refused for login %r: too many failures", login_name[:100])
        ui.flash_now(request, "error", "Too many failed sign-ins for this login. Wait ten minutes and try again.")
        return ui.render(request, "login.html", {"next": target, "login": login_name}, status=429)
    with ui.fulfil.session(read_only=True) as s:
        staff = s.scalar(select(Staff).where(Staff.login == login_name)) if login_name else None
        # an unknown login costs the same argon2 verification as a wrong password,
        # so response times do not tell which logins exist
        ok = catalog.check_password(staff, password) if staff is not None else _dummy_check(password)
        if not ok:
            throttle.failed(login_name)
            log.info("web sign-in failed for login %r", login_name[:100])
            ui.flash_now(request, "error", "That login and password do not match an active staff member.")
            return ui.render(request, "login.html", {"next": target, "login": login_name}, status=401)
        throttle.succeeded(login_name)
        ui.cookies.sign_in(request, staff.id, staff.password_hash)
        log.info("web sign-in: %s", staff.login)
    return ui.redirect(target)


_DUMMY: list[Staff] = []


def _dummy_check(password: str) -> bool:
    if not _DUMMY:
        dummy = Staff(login="-", active=True)
        catalog.set_password(dummy, "not-a-real-password")
        _DUMMY.append(dummy)
    catalog.check_password(_DUMMY[0], password)
    return False


def _task_url(task_id: int, tab: str | None = None) -> str:
    tab = tab if tab in TABS and tab != "general" else None
    return f"/tasks/{task_id}" + (f"?{urlencode({'tab': tab})}" if tab else "")


def _act(ui: WebUI, request: Request, task_id: int, tab: str | None, action, done: str) -> Response:
    """An action button: success and refusal both come back to the task as a
    message at the top of the page."""
    try:
        with ui.fulfil.session() as s:
            staff = ui.staff(request, s)
            action(s, staff)
        ui.flash(request, "success", done)
    except (Conflict, Forbidden) as exc:
        ui.flash(request, "error", _sentence(exc.message))
    return ui.redirect(_task_url(task_id, tab))


def _sentence(text: str) -> str:
    text = text.strip()
    return (text[:1].upper() + text[1:]).rstrip(".") + "."


def _transfer(ui: WebUI, request: Request, task_id: int, raw: str) -> Response:
    if not raw.isdigit():
        return show_task(ui, request, task_id, errors=[("department_id", "choose a department")], status=422)
    try:
        with ui.fulfil.session() as s:
            staff = ui.staff(request, s)
            task = tasks.transfer(session=s, staff=staff, task_id=task_id, department_id=int(raw))
            target = task.department.name
            still_visible = staff.is_admin or task.department_id in staff.department_ids
    except InvalidInput as exc:
        return show_task(ui, request, task_id, errors=exc.errors, status=422)
    except (Conflict, Forbidden) as exc:
        ui.flash(request, "error", _sentence(exc.message))
        return ui.redirect(_task_url(task_id))
    ui.flash(request, "success", f"Task #{task_id} passed to {target}.")
    return ui.redirect(_task_url(task_id) if still_visible else "/tasks")


def _comment(ui: WebUI, request: Request, task_id: int, text: str) -> Response:
    try:
        with ui.fulfil.session() as s:
            staff = ui.staff(request, s)
            tasks.add_comment(session=s, staff=staff, task_id=task_id, text=text)
    except InvalidInput as exc:
        return show_task(ui, request, task_id, errors=exc.errors, submitted={"text": text}, status=422)
    ui.flash(request, "success", "Comment added to the service history.")
    return ui.redirect(_task_url(task_id) + "#history")


def _save_main_settings(ui: WebUI, request: Request, task_id: int, form) -> Response:
    submitted = form.with_prefix("ms.")
    present = set(submitted)
    try:
        with ui.fulfil.session() as s:
            staff = ui.staff(request, s)
            view = tasks.task_form(session=s, staff=staff, task_id=task_id)
            fields = schema_fields(view.main_settings_schema, view.main_settings)
            values = read_fields(fields, submitted, present)
            tasks.update_task(session=s, staff=staff, task_id=task_id, main_settings=values)
    except InvalidInput as exc:
        return show_task(ui, request, task_id, tab="main", errors=exc.errors, submitted=submitted, status=422)
    except (Conflict, Forbidden) as exc:
        ui.flash(request, "error", _sentence(exc.message))
        return ui.redirect(_task_url(task_id, "main"))
    ui.flash(request, "success", "Main settings saved. They apply to the service when the task is closed.")
    return ui.redirect(_task_url(task_id, "main"))


def _save_addons(ui: WebUI, request: Request, task_id: int, form) -> Response:
    submitted = form.with_prefix("addon.")
    values: dict[str, Any] = {}
    for name, raw in submitted.items():
        raw = raw.strip()
        values[name] = int(raw) if raw.lstrip("-").isdigit() else raw
    try:
        with ui.fulfil.session() as s:
            staff = ui.staff(request, s)
            tasks.update_task(session=s, staff=staff, task_id=task_id, addons=values)
    except InvalidInput as exc:
        return show_task(ui, request, task_id, tab="addons", errors=exc.errors, submitted=submitted, status=422)
    except (Conflict, Forbidden) as exc:
        ui.flash(request, "error", _sentence(exc.message))
        return ui.redirect(_task_url(task_id, "addons"))
    ui.flash(request, "success", "Add-ons saved. They apply to the service when the task is closed.")
    return ui.redirect(_task_url(task_id, "addons"))


def show_task(
    ui: WebUI,
    request: Request,
    task_id: int,
    *,
    tab: str = "general",
    reveal: bool = False,
    errors: list[tuple[str, str]] | None = None,
    submitted: dict[str, str] | None = None,
    status: int = 200,
) -> Response:
    tab = tab if tab in TABS else "general"
    errors = errors or []
    with ui.fulfil.session(read_only=not reveal) as s:
        staff = ui.staff(request, s)
        view = tasks.task_form(session=s, staff=staff, task_id=task_id, reveal_secrets=reveal)
        task, general = view.task, view.general
        closed = task.status == "closed"
        may_edit = not closed and (staff.is_admin or task.assignee_id == staff.id)
        if closed:
            edit_reason = "The task is closed: its settings are what was applied to the service."
        elif task.assignee_id is None:
            edit_reason = "Assign the task to yourself to edit it."
        elif not may_edit:
            edit_reason = f"The task is assigned to {task.assignee.login}; only they or an admin can edit it."
        else:
            edit_reason = None

        ms_errors = field_errors(errors, "params", "main_settings") if tab == "main" else {}
        values = dict(view.main_settings)
        if tab == "main" and submitted is not None:
            values.update(submitted)
        fields = schema_fields(view.main_settings_schema, values, errors=ms_errors)
        has_secrets = any(f.secret and f.masked for f in fields) or any(v == MASK for v in view.main_settings.values())

        definitions = view.service.tariff.addons or {}
        ad_errors = field_errors(errors, "addons") if tab == "addons" else {}
        addon_rows = []
        for name in list(definitions) + [n for n in view.addons if n not in definitions]:
            spec = definitions.get(name, {})
            value = view.addons.get(name, spec.get("default", ""))
            if tab == "addons" and submitted is not None and name in submitted:
                value = submitted[name]
            addon_rows.append({
                "name": name, "title": spec.get("title") or name, "unit": spec.get("unit", ""),
                "min": spec.get("min"), "max": spec.get("max"), "value": value,
                "current": view.service.addons.get(name), "error": ad_errors.get(name),
            })

        general_errors = field_errors(errors) if tab == "general" else {}
        other_errors = [
            (f, r) for f, r in errors
            if not ((tab == "main" and f.split(".")[-1] in ms_errors) or (tab == "addons" and f.split(".")[-1] in ad_errors)
                    or (tab == "general" and f in general_errors))
        ]
        for field_name, reason in other_errors:
            ui.flash_now(request, "error", f"{field_name}: {reason}")
        if errors:
            ui.flash_now(request, "error", "Nothing was saved: correct the fields marked below.")
        if reveal:
            ui.flash_now(request, "info", "Secrets are shown; this was recorded in the service history.")

        return ui.render(
            request,
            "task.html",
            {
                "nav": "tasks",
                "task": task,
                "service": view.service,
                "general": general,
                "tab": tab,
                "tabs": TABS,
                "fields": fields,
                "revealed": reveal,
                "has_secrets": has_secrets,
                "addon_rows": addon_rows,
                "addons_editable": view.addons_editable and may_edit,
                "addons_reason": view.addons_reason or (edit_reason if view.addons_editable else None),
                "history": view.history,
                "may_edit": may_edit,
                "edit_reason": edit_reason,
                "can_assign": not closed and task.assignee_id is None,
                "departments": [d for d in catalog.list_departments(session=s) if d.id != task.department_id],
                "errors": general_errors,
                "comment_text": (submitted or {}).get("text", "") if tab == "general" else "",
            },
            status=status,
        )
