"""What every page of the web UI shares: templates, the signed-in staff member,
CSRF checks, flash messages, and turning service-layer errors into pages."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates
from sqlalchemy.orm import Session
from starlette.responses import RedirectResponse, Response

from fulfil.app import Fulfil
from fulfil.db import utcnow
from fulfil.errors import Forbidden, NotFound
from fulfil.models import Staff
from fulfil.web.forms import FormData
from fulfil.web.security import CSRF_FIELD, Cookies, Signer, password_fingerprint

log = logging.getLogger(__name__)

HERE = Path(__file__).parent
MAX_FORM_BYTES = 1_000_000


class LoginRequired(Exception):
    pass


class CsrfRefused(Exception):
    pass


class BadForm(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Named:
    id: int
    name: str


@dataclass(frozen=True)
class Viewer:
    """The signed-in staff member as pages show them: plain values, so an error page
    rendered after the transaction rolled back can still show who is signed in."""

    id: int
    login: str
    name: str
    is_admin: bool
    departments: tuple[Named, ...]

    @classmethod
    def of(cls, staff: Staff) -> Viewer:
        return cls(staff.id, staff.login, staff.name, staff.is_admin, tuple(Named(d.id, d.name) for d in staff.departments))


def age(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago, the way a queue is read: 5 min, 3 h, 2 d."""
    if value is None:
        return ""
    now = now or utcnow()
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    seconds = max(0, int((now - value).total_seconds()))
    if seconds < 60:
        return "just now"
    if seconds < 3600:
        return f"{seconds // 60} min"
    if seconds < 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} d"


def when(value: datetime | None) -> str:
    if value is None:
        return ""
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def iso(value: datetime | None) -> str:
    return value.isoformat() if value else ""


class WebUI:
    def __init__(self, fulfil: Fulfil, *, secret_key: bytes, secure_cookies: bool | None) -> None:
        self.fulfil = fulfil
        from fulfil.web.pages import SignInThrottle

        self.cookies = Cookies(Signer(secret_key), secure=secure_cookies)
        self.throttle = SignInThrottle()
        self.templates = Jinja2Templates(directory=str(HERE / "templates"))
        env = self.templates.env
        env.filters.update(age=age, when=when, iso=iso)
        env.globals.update(CSRF_FIELD=CSRF_FIELD)
        env.trim_blocks = True
        env.lstrip_blocks = True

    # -- who is asking -------------------------------------------------------------------

    def staff(self, request: Request, session: Session, *, admin: bool = False) -> Staff:
        """The signed-in staff member, or LoginRequired. A deactivated account or a
        changed password ends the session."""
        web = self.cookies.session(request)
        staff = session.get(Staff, web.staff_id) if web.staff_id else None
        if staff is None or not staff.active or web.fingerprint != password_fingerprint(staff.password_hash):
            raise LoginRequired()
        request.state.staff = Viewer.of(staff)
        if admin and not staff.is_admin:
            raise Forbidden("Only administrators can open this page.")
        return staff

    async def form(self, request: Request) -> FormData:
        """The POSTed form, after its CSRF token is checked."""
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        length = request.headers.get("content-length") or "0"
        if not length.isdigit() or int(length) > MAX_FORM_BYTES:
            raise BadForm("The form is too large.", 413)
        body = b""
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_FORM_BYTES:
                raise BadForm("The form is too large.", 413)
        if ctype not in ("application/x-www-form-urlencoded", ""):
            raise BadForm("Forms are sent as application/x-www-form-urlencoded.", 415)
        data = FormData.parse(body)
        if not self.cookies.check_csrf(request, data.get(CSRF_FIELD)):
            raise CsrfRefused()
        return data

    # -- responses -----------------------------------------------------------------------

    def flash(self, request: Request, level: str, text: str) -> None:
        self.cookies.add_flash(request, level, text)

    def redirect(self, url: str) -> RedirectResponse:
        return RedirectResponse(url, status_code=303)

    def render(self, request: Request, template: str, context: Mapping[str, Any] | None = None, *, status: int = 200) -> Response:
        web = self.cookies.session(request)
        staff = getattr(request.state, "staff", None)
        messages = self.cookies.take_flash(request) + [tuple(m) for m in getattr(request.state, "web_flash_now", [])]
        ctx = {
            "request": request,
            "staff": staff,
            "csrf_token": web.csrf,
            "messages": messages,
            "nav": context.get("nav", "") if context else "",
            "url_with": lambda **kw: url_with(request, **kw),
        }
        ctx.update(context or {})
        return self.templates.TemplateResponse(request, template, ctx, status_code=status)

    def flash_now(self, request: Request, level: str, text: str) -> None:
        """A message on the page being rendered (no redirect)."""
        now = getattr(request.state, "web_flash_now", None)
        if now is None:
            now = request.state.web_flash_now = []
        now.append((level, text))

    def error_page(self, request: Request, status: int, title: str, message: str) -> Response:
        return self.render(request, "error.html", {"title": title, "message": message, "code": status}, status=status)

    def route_class(self) -> type[APIRoute]:
        ui = self

        class WebRoute(APIRoute):
            """Every page answers in HTML: service-layer errors become pages, a
            missing session the sign-in page; cookies are written on the way out."""

            def get_route_handler(self) -> Callable:
                handler = super().get_route_handler()

                async def route(request: Request) -> Response:
                    try:
                        response = await handler(request)
                    except LoginRequired:
                        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                        if request.method != "GET":
                            target = "/tasks"
                        response = ui.redirect("/login?next=" + quote(target, safe="/"))
                    except CsrfRefused:
                        response = ui.error_page(
                            request, 403, "Form expired",
                            "This form was missing its security token or the token had expired, so "
                            "nothing was changed. Go back, reload the page and try again.",
                        )
                    except NotFound:
                        response = ui.error_page(request, 404, "Not found", "There is no such page, or it is not yours to see.")
                    except Forbidden as exc:
                        response = ui.error_page(request, 403, "Not allowed", exc.message)
                    except BadForm as exc:
                        response = ui.error_page(request, exc.status, "Bad request", exc.message)
                    except RequestValidationError:
                        response = ui.error_page(request, 404, "Not found", "There is no such page.")
                    response.headers.setdefault("Cache-Control", "no-store")
                    response.headers.setdefault("X-Frame-Options", "DENY")
                    response.headers.setdefault("X-Content-Type-Options", "nosniff")
                    response.headers.setdefault("Referrer-Policy", "same-origin")
                    response.headers.setdefault(
                        "Content-Security-Policy",
                        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
                    )
                    return ui.cookies.write(request, response)

                return route

        return WebRoute


def url_with(request: Request, **changes: Any) -> str:
    """The current URL with some query parameters changed (None drops one)."""
    params = dict(request.query_params)
    for key, value in changes.items():
        if value is None or value == "":
            params.pop(key, None)
        else:
            params[key] = str(value)
    query = urlencode(params)
    return request.url.path + (f"?{query}" if query else "")


def safe_next(target: str | None) -> str:
    """Only a path on this site: never an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return "/tasks"
    return target
