"""A stand-in for ``fulfil serve`` in the end-to-end tests while the CLI lacks it:
the web UI and the operation workers in one process, as ``fulfil serve`` runs them.

    uvicorn --factory serve_factory:create_app --app-dir tests/web
"""

from __future__ import annotations

from contextlib import asynccontextmanager

from fastapi import FastAPI

import fulfil.web
from fulfil.app import Fulfil


def create_app() -> FastAPI:
    fulfil_app = Fulfil()
    worker = fulfil_app.worker(concurrency=2, poll_interval=0.1)

    @asynccontextmanager
    async def lifespan(_app):
        worker.start()
        try:
            yield
        finally:
            worker.stop()
            fulfil_app.dispose()

    app = FastAPI(lifespan=lifespan)
    fulfil.web.mount(app, fulfil_app)
    return app
