"""Writing the service history: one helper, used for every event."""

from __future__ import annotations

from sqlalchemy.orm import Session

from fulfil.db import utcnow
from fulfil.models import HistoryEntry, Staff


def record(
    session: Session,
    *,
    service_id: int,
    event: str,
    message: str,
    staff: Staff | None = None,
    actor: str | None = None,
    detail: str | None = None,
    task_id: int | None = None,
    operation_id: int | None = None,
) -> HistoryEntry:
    entry = HistoryEntry(
        service_id=service_id,
        created_at=utcnow(),
        event=event,
        message=message,
        detail=detail,
        staff_id=staff.id if staff else None,
        actor=actor or (staff.login if staff else "system"),
        task_id=task_id,
        operation_id=operation_id,
    )
    session.add(entry)
    return entry
