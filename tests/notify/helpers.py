from __future__ import annotations

from sqlalchemy import select

from fulfil.models import Client, Department
from fulfil.notify.models import OutboxMessage

CLIENT = "client@example.test"
OPS = "ops@hosting.test"


def outbox(app) -> list[dict]:
    with app.session(read_only=True) as s:
        return [
            {
                "id": m.id, "kind": m.kind, "state": m.state, "attempts": m.attempts, "recipient": m.recipient,
                "message_id": m.message_id, "last_error": m.last_error, "context": m.context, "subject": m.subject,
                "smtp_reply": m.smtp_reply,
            }
            for m in s.scalars(select(OutboxMessage).order_by(OutboxMessage.id))
        ]


def set_department(app, department_id: int, *, email: str | None = OPS, notify: bool = True) -> None:
    with app.session() as s:
        dept = s.get(Department, department_id)
        dept.email = email
        dept.notify = notify


def set_client_language(app, client_id: int, language: str) -> None:
    with app.session() as s:
        s.get(Client, client_id).language = language
