"""The service layer's errors as HTTP answers, always ``{"detail": ...}``.

NotFound → 404, Forbidden → 403, Conflict → 409, InvalidInput → 422 (and FastAPI's
own validation errors → 422 in the same shape: a list naming each bad field).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import DataError

from fulfil.errors import Conflict, Forbidden, FulfilError, InvalidInput, NotFound

log = logging.getLogger(__name__)

STATUS_OF = ((NotFound, 404), (Forbidden, 403), (Conflict, 409), (InvalidInput, 422))


class FieldError(BaseModel):
    """One bad field: ``field`` is the dotted name (``params.domain``), ``msg`` the reason."""

    loc: list[str | int]
    field: str
    msg: str
    type: str


class ErrorOut(BaseModel):
    detail: str


class ValidationErrorOut(BaseModel):
    detail: list[FieldError]


#: declared on every router so the OpenAPI document lists each answer the API gives
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorOut, "description": "No token, or a token that is not valid"},
    403: {"model": ErrorOut, "description": "Not allowed for this caller"},
    404: {"model": ErrorOut, "description": "Not found (or outside the caller's departments)"},
    409: {"model": ErrorOut, "description": "The current state does not allow it"},
    422: {"model": ValidationErrorOut, "description": "Bad input: each bad field with the reason"},
}


@contextmanager
def fields_renamed(names: dict[str, str]) -> Iterator[None]:
    """Where the API's field names differ from the service layer's (``module`` is the
    service layer's ``plugin``), report the API's."""
    try:
        yield
    except InvalidInput as exc:
        def rename(field: str) -> str:
            head, dot, rest = field.partition(".")
            return names.get(head, head) + dot + rest

        raise InvalidInput([(rename(f), r) for f, r in exc.errors]) from None


def field_error(field: str, msg: str, type_: str = "invalid") -> dict[str, Any]:
    return {"loc": field.split("."), "field": field, "msg": msg, "type": type_}


def _from_request_validation(exc: RequestValidationError) -> list[dict[str, Any]]:
    out = []
    for err in exc.errors():
        loc = [p if isinstance(p, int) else str(p) for p in err.get("loc", ())]
        # "body.name" reads better without the "body" prefix, the way the service layer names fields
        shown = loc[1:] if loc and loc[0] in ("body", "query", "path", "header") and len(loc) > 1 else loc
        typ = err.get("type", "invalid")
        msg = "unknown field" if typ == "extra_forbidden" else err.get("msg", "invalid")
        out.append({"loc": loc, "field": ".".join(str(p) for p in shown) or "body", "msg": msg, "type": typ})
    return out


def install(app: FastAPI) -> None:
    @app.exception_handler(FulfilError)
    async def _fulfil_error(_request: Request, exc: FulfilError) -> JSONResponse:
        if isinstance(exc, InvalidInput):
            return JSONResponse({"detail": [field_error(f, r) for f, r in exc.errors]}, status_code=422)
        for cls, code in STATUS_OF:
            if isinstance(exc, cls):
                return JSONResponse({"detail": exc.message}, status_code=code)
        return JSONResponse({"detail": exc.message}, status_code=400)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"detail": _from_request_validation(exc)}, status_code=422)

    @app.exception_handler(DataError)
    async def _data_error(_request: Request, exc: DataError) -> JSONResponse:
        # a value the database cannot store (a NUL character, a number out of range):
        # the input's fault, and nothing was written (the transaction rolled back)
        log.info("database refused a value: %s", type(exc.orig).__name__)
        return JSONResponse(
            {"detail": [field_error("body", "contains a value the database cannot store", "data_error")]},
            status_code=422,
        )
