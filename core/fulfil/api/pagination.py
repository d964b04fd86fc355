"""Cursors for lists: ``{"items": [...], "next_cursor": "…" | null}``, ``limit`` ≤ 200."""

from __future__ import annotations

import base64
from typing import Annotated

from fastapi import Query
from sqlalchemy import select
from sqlalchemy.orm import Session

from fulfil.errors import InvalidInput

MAX_LIMIT = 200

Limit = Annotated[int, Query(ge=1, le=MAX_LIMIT, description=f"items per page (at most {MAX_LIMIT})")]
Cursor = Annotated[str | None, Query(max_length=100, description="next_cursor of the previous page")]


def encode(kind: str, ident: int) -> str:
    return base64.urlsafe_b64encode(f"{kind}{ident}".encode()).decode().rstrip("=")


def decode(kind: str, cursor: str | None) -> int | None:
    if not cursor:
        return None
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        if not raw.startswith(kind):
            raise ValueError
        ident = int(raw[len(kind):])
        if not 0 < ident < 2**63:
            raise ValueError
        return ident
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput.one("cursor", "is not a cursor this server gave out") from None


def keyset(session: Session, model, *, kind: str, limit: int, cursor: str | None) -> tuple[list, str | None]:
    """Oldest first, by id: for the catalogs (departments, staff, clients, …)."""
    after = decode(kind, cursor)
    query = select(model).order_by(model.id).limit(limit + 1)
    if after is not None:
        query = query.where(model.id > after)
    rows = list(session.scalars(query))
    next_cursor = encode(kind, rows[limit - 1].id) if len(rows) > limit else None
    return rows[:limit], next_cursor
