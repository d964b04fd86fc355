"""The staff web UI: sign-in, the Tasks page, the three-tab task form, admin pages.

Server-rendered (Jinja2 templates and one stylesheet shipped in this package, no
JavaScript build step); every page works without JavaScript. Like the REST API it
calls the service layer directly, so the same rules hold: staff see only their
departments' tasks, secrets stay masked until someone presses "show", and every
change is one transaction.

``fulfil.api.create_app`` calls :func:`mount`; a test or an embedding application
can do the same::

    app = fastapi.FastAPI()
    fulfil.web.mount(app, Fulfil())

Configuration (environment):

* ``FULFIL_SECRET_KEY`` — signs the session cookies; without it a random key is
  used (sessions end when the process restarts) and a warning is logged.
* ``FULFIL_COOKIE_SECURE`` — ``true`` / ``false`` / ``auto`` (default): cookies are
  ``Secure`` except on plain http to localhost.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from fulfil.app import Fulfil
from fulfil.web.security import cookie_secure_from_env, secret_key_from_env
from fulfil.web.ui import WebUI

STATIC_PATH = "/static/web"

__all__ = ["mount", "STATIC_PATH"]


def mount(
    app: FastAPI,
    fulfil: Fulfil,
    *,
    secret_key: str | bytes | None = None,
    secure_cookies: bool | None = None,
) -> WebUI:
    """Add the web UI's pages to ``app``: ``/`` (→ ``/tasks``), ``/login``,
    ``/logout``, ``/tasks``, ``/tasks/{id}``, ``/admin/…`` and the stylesheet under
    ``/static/web``. Arguments left out are read from the environment."""
    from fulfil.web import admin, pages

    if secret_key is None:
        key = secret_key_from_env()
    else:
        key = secret_key.encode() if isinstance(secret_key, str) else secret_key
    ui = WebUI(fulfil, secret_key=key, secure_cookies=secure_cookies if secure_cookies is not None else cookie_secure_from_env())
    app.include_router(pages.build_router(ui))
    app.include_router(admin.build_router(ui))
    app.mount(STATIC_PATH, StaticFiles(directory=str(Path(__file__).parent / "static")), name="fulfil-web-static")
    app.state.fulfil_web = ui
    return ui
