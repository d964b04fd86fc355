"""Admin pages: departments, staff, processing modules, tariff plans, services."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response

from fulfil import secrets
from fulfil.errors import Conflict, InvalidInput
from fulfil.models import SERVICE_STATUSES, ProcessingModule, Staff
from fulfil.services import catalog, lifecycle
from fulfil.web.forms import FormData, parse_json_object
from fulfil.web.pages import _in_thread, _sentence
from fulfil.web.ui import WebUI

SECTIONS = {
    "departments": "Departments",
    "staff": "Staff",
    "modules": "Processing modules",
    "tariffs": "Tariff plans",
    "services": "Services",
}
SERVICES_PAGE = 50


def build_router(ui: WebUI) -> APIRouter:
    router = APIRouter(prefix="/admin", route_class=ui.route_class(), include_in_schema=False)

    def page(request: Request, section: str, *, errors=None, submitted=None, status: int = 200) -> Response:
        errors = errors or []
        with ui.fulfil.session(read_only=True) as s:
            ui.staff(request, s, admin=True)
            ctx: dict[str, Any] = {
                "nav": "admin", "section": section, "sections": SECTIONS,
                "errors": _admin_errors(errors),
                "form": submitted or {},
                "departments": catalog.list_departments(session=s),
            }
            if errors:
                ui.flash_now(request, "error", "Nothing was saved: correct the fields marked below.")
            if section == "departments":
                ctx["staff_counts"] = {
                    d.id: sum(1 for m in catalog.list_staff(session=s) if d in m.departments) for d in ctx["departments"]
                }
            elif section == "staff":
                ctx["staff_list"] = catalog.list_staff(session=s)
            elif section == "modules":
                registry = ui.fulfil.registry
                ctx["modules"] = [
                    {
                        "module": m,
                        "settings": catalog.masked_module_settings(s, m),
                        "installed": registry.info(m.plugin) is not None,
                        "missing_reason": None if registry.info(m.plugin) else registry.missing_reason(m.plugin),
                    }
                    for m in catalog.list_processing_modules(session=s)
                ]
                ctx["plugins"] = sorted(registry.modules)
                ctx["load_errors"] = dict(registry.load_errors)
            elif section == "tariffs":
                ctx["tariffs"] = [
                    {"tariff": t, "default_params": secrets.mask(t.default_params, lifecycle.params_model_of(s, t))}
                    for t in catalog.list_tariffs(session=s)
                ]
                ctx["modules"] = catalog.list_processing_modules(session=s)
            elif section == "services":
                q = request.query_params
                status_filter = q.get("status") if q.get("status") in SERVICE_STATUSES else None
                after = int(q["after"]) if (q.get("after") or "").isdigit() else None
                rows = lifecycle.list_services(
                    session=s, status=status_filter, limit=SERVICES_PAGE + 1, after_id=after
                )
                ctx.update(
                    services=rows[:SERVICES_PAGE],
                    next_after=rows[SERVICES_PAGE - 1].id if len(rows) > SERVICES_PAGE else None,
                    status_filter=status_filter or "",
                    service_statuses=SERVICE_STATUSES,
                    first_page=after is not None,
                )
            return ui.render(request, f"admin/{section}.html", ctx, status=status)

    @router.get("")
    def admin_home() -> Response:
        return ui.redirect("/admin/departments")

    for name in SECTIONS:
        def view(request: Request, _section: str = name) -> Response:
            return page(request, _section)

        router.add_api_route(f"/{name}", view, methods=["GET"], name=f"admin_{name}")

    def write(request: Request, section: str, form: FormData, action, done) -> Response:
        """One admin change in one transaction: success → back to the list with a
        message; bad input → the form again with each error by its field."""
        try:
            with ui.fulfil.session() as s:
                staff = ui.staff(request, s, admin=True)
                result = action(s, staff)
            message = done(result) if callable(done) else done
            ui.flash(request, "success", message)
        except InvalidInput as exc:
            submitted = {k: form.get(k) for k in _names(form)}
            submitted["department_ids"] = form.getlist("department_ids")
            return page(request, section, errors=exc.errors, submitted=submitted, status=422)
        except Conflict as exc:
            ui.flash(request, "error", _sentence(exc.message))
        back = request.headers.get("referer", "")
        return ui.redirect(f"/admin/{section}" + ("?" + back.split("?", 1)[1] if section == "services" and "?" in back else ""))

    @router.post("/departments")
    async def create_department(request: Request) -> Response:
        form = await ui.form(request)
        return await _in_thread(
            write, request, "departments", form,
            lambda s, staff: catalog.create_department(
                session=s, name=form.get("name") or "", email=(form.get("email") or "").strip() or None,
                notify="notify" in form,
            ),
            lambda d: f"Department {d.name} created.",
        )

    @router.post("/departments/{department_id}/alerts")
    async def department_alerts(request: Request, department_id: int) -> Response:
        form = await ui.form(request)

        def save(s, staff):
            try:
                return catalog.update_department(
                    session=s, department_id=department_id, email=form.get("email") or None,
                    notify="notify" in form,
                )
            except InvalidInput as exc:
                # the row's small form has no room for field errors: say it on top
                raise Conflict(f"Alert email not saved: {exc.message}") from None

        return await _in_thread(write, request, "departments", form, save, lambda d: f"Alerts of {d.name} saved.")

    @router.post("/staff")
    async def create_staff(request: Request) -> Response:
        form = await ui.form(request)

        def action(s, staff):
            ids = [int(x) for x in form.getlist("department_ids") if x.isdigit()]
            password = form.get("password") or None
            member, _token = catalog.create_staff(
                session=s, login=form.get("login") or "", name=(form.get("name") or "").strip(),
                email=(form.get("email") or "").strip() or None, department_ids=ids,
                is_admin="is_admin" in form, password=password,
            )
            return member

        return await _in_thread(write, request, "staff", form, action, lambda m: f"Staff member {m.login} added.")

    @router.post("/staff/{staff_id}/password")
    async def set_staff_password(request: Request, staff_id: int) -> Response:
        form = await ui.form(request)

        def action(s, staff):
            member = catalog.get(s, Staff, staff_id, "staff member")
            try:
                catalog.set_password(member, form.get("password") or "")
            except InvalidInput as exc:
                raise InvalidInput([(f"password-{staff_id}", r) for _f, r in exc.errors]) from None
            return member

        return await _in_thread(write, request, "staff", form, action, lambda m: f"New password set for {m.login}.")

    @router.post("/modules")
    async def create_module(request: Request) -> Response:
        form = await ui.form(request)

        def action(s, staff):
            dept = form.get("department_id") or ""
            if not dept.isdigit():
                raise InvalidInput.one("department_id", "choose the responsible department")
            return catalog.create_processing_module(
                session=s, name=form.get("name") or "", plugin=form.get("plugin") or "",
                department_id=int(dept), settings=parse_json_object(form.get("settings"), "settings"),
                enabled="enabled" in form,
            )

        return await _in_thread(write, request, "modules", form, action, lambda m: f"Processing module {m.name} created.")

    @router.post("/modules/{module_id}/check")
    async def check_connection(request: Request, module_id: int) -> Response:
        await ui.form(request)

        def check() -> Response:
            with ui.fulfil.session(read_only=True) as s:
                ui.staff(request, s, admin=True)
                module = catalog.get(s, ProcessingModule, module_id, "processing module")
                name = module.name
                ok, message = catalog.check_connection(session=s, processing_module_id=module_id)
            ui.flash(request, "success" if ok else "error", f"{name}: {_sentence(message)}")
            return ui.redirect("/admin/modules")

        return await _in_thread(check)

    @router.post("/modules/{module_id}/enabled")
    async def toggle_module(request: Request, module_id: int) -> Response:
        form = await ui.form(request)
        enabled = form.get("enabled") == "1"
        return await _in_thread(
            write, request, "modules", form,
            lambda s, staff: catalog.update_processing_module(session=s, processing_module_id=module_id, enabled=enabled),
            lambda m: f"Processing module {m.name} {'enabled' if m.enabled else 'disabled'}.",
        )

    @router.post("/tariffs")
    async def create_tariff(request: Request) -> Response:
        form = await ui.form(request)

        def action(s, staff):
            module = form.get("processing_module_id") or ""
            if not module.isdigit():
                raise InvalidInput.one("processing_module_id", "choose a processing module")
            return catalog.create_tariff(
                session=s, name=form.get("name") or "", service_type=form.get("service_type") or "",
                processing_module_id=int(module),
                default_params=parse_json_object(form.get("default_params"), "default_params"),
                addons=parse_json_object(form.get("addons"), "addons"),
            )

        return await _in_thread(write, request, "tariffs", form, action, lambda t: f"Tariff plan {t.name} created.")

    for verb, fn, past in (
        ("suspend", lifecycle.suspend_service, "suspension"),
        ("resume", lifecycle.resume_service, "resumption"),
        ("delete", lifecycle.delete_service, "deletion"),
    ):
        async def service_action(request: Request, service_id: int, _fn=fn, _past=past, _verb=verb) -> Response:
            form = await ui.form(request)
            if _verb == "delete" and form.get("confirm") != "yes":
                ui.flash(request, "error", f"Service #{service_id} was not deleted: tick the box to confirm.")
                return ui.redirect("/admin/services")
            return await _in_thread(
                write, request, "services", form,
                lambda s, staff: _fn(session=s, service_id=service_id, staff=staff),
                f"Service #{service_id}: {_past} requested. It runs in the background (or becomes a task).",
            )

        router.add_api_route(f"/services/{{service_id}}/{verb}", service_action, methods=["POST"], name=f"service_{verb}")

    return router


def _names(form: FormData) -> list[str]:
    return [k for k in form.names() if k != "csrf_token"]


def _admin_errors(errors) -> dict[str, str]:
    """By form field; a JSON box's error keeps the key inside it (settings.url)."""
    out: dict[str, str] = {}
    for name, reason in errors:
        top = name.split(".")[0]
        out.setdefault(top, f"{name[len(top) + 1:]}: {reason}" if "." in name else reason)
    return out
