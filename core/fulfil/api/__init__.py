"""The REST API under /api/v1 (FastAPI, OpenAPI at /openapi.json). See :func:`create_app`.

Thin on purpose: a schema in, one service-layer call in one transaction, a schema
out. Who may do what is the service layer's rule; this package only adds that admin
endpoints need an admin.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from fulfil import __version__
from fulfil.app import Fulfil

log = logging.getLogger(__name__)

API_PREFIX = "/api/v1"


def create_app(fulfil: Fulfil, *, with_worker: bool = False, concurrency: int = 4) -> FastAPI:
    """The API (and the web pages, when ``fulfil.web`` is installed) for ``fulfil``.
    With ``with_worker`` the app also runs the operations engine in threads for as
    long as it runs: the embedded default of ``fulfil serve``."""
    from fulfil.api import admin, errors, services, tasks

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        background = fulfil.start_background(concurrency=concurrency) if with_worker else None
        try:
            yield
        finally:
            if background is not None:
                background.stop()

    app = FastAPI(
        title="fulfil",
        version=__version__,
        description="Service processing of a hosting provider's billing system: services, tasks, "
        "processing modules. Authenticate with `Authorization: Bearer <token>`.",
        lifespan=lifespan,
    )
    app.state.fulfil = fulfil
    app.state.web_ui = False
    errors.install(app)
    for router in (admin.router, services.router, tasks.router):
        app.include_router(router, prefix=API_PREFIX)

    try:
        from fulfil.web import mount
    except ImportError as exc:
        if not (exc.name or "").startswith("fulfil.web"):
            # the web package is there but broken: say so, and keep the API up
            log.error("the web UI could not be loaded: %s", exc)
    else:
        mount(app, fulfil)
        app.state.web_ui = True
    return app


__all__ = ["API_PREFIX", "create_app"]
