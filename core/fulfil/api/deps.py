"""Who is calling (bearer tokens) and the transaction a request works in."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from fulfil.app import Fulfil
from fulfil.errors import Forbidden
from fulfil.models import Staff
from fulfil.services import catalog

_bearer = HTTPBearer(auto_error=False, description="An API token: `Authorization: Bearer <token>`")


def get_fulfil(request: Request) -> Fulfil:
    return request.app.state.fulfil


@dataclass(frozen=True)
class Caller:
    """The authenticated staff member (or API client) behind a request."""

    fulfil: Fulfil
    #: as read when the token was checked, departments included
    staff: Staff

    @property
    def is_admin(self) -> bool:
        return self.staff.is_admin

    @contextmanager
    def session(self, *, read_only: bool = False) -> Iterator[tuple[Session, Staff]]:
        """One transaction for the request, with the caller in it. It commits when
        the block ends, so the answer is sent only after the change is durable."""
        with self.fulfil.session(read_only=read_only) as session:
            # the row was read a moment ago by the token check: attach that copy
            # instead of reading it (and its departments) again
            yield session, session.merge(self.staff, load=False)


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def current_caller(
    fulfil: Annotated[Fulfil, Depends(get_fulfil)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Caller:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthorized("give an API token: Authorization: Bearer <token>")
    with fulfil.session(read_only=True) as session:
        staff = catalog.authenticate_token(session=session, token=credentials.credentials)
        if staff is None:
            raise _unauthorized("the API token is not valid")
        return Caller(fulfil=fulfil, staff=staff)


def admin_caller(caller: Annotated[Caller, Depends(current_caller)]) -> Caller:
    if not caller.is_admin:
        raise Forbidden("only an admin may do this")
    return caller


StaffCaller = Annotated[Caller, Depends(current_caller)]
AdminCaller = Annotated[Caller, Depends(admin_caller)]
