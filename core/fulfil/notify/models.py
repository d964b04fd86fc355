"""The outbox: one row per email, written in the transaction of the event it tells about.

A row's life::

    pending ──claim──▶ sending ──250──▶ sent
       ▲                  │  ╲
       │ back-off         │   ╲ the sender stopped after handing the message over
       └── 4xx, no link ◀─┘    ╲ (crash, or the link broke before the reply)
                          │     ▼
          5xx, template ──┴─▶ failed          unconfirmed
                                 │                  │
                                 └── fulfil outbox retry ──▶ pending

``context`` is what the templates are rendered from at send time. For a client's
"opened"/"changed" message it holds the service's main settings in plain, secrets
included (the services table holds them in plain too); the values are wiped from the
row once the message is sent. Nothing that lists messages ever reads ``context``.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from fulfil.db import utcnow
from fulfil.models import Base

#: pending: waits for its time (``next_attempt_at``) · sending: a sender holds the
#: lease · sent: the SMTP server accepted it · failed: refused for good (5xx, a broken
#: template) · unconfirmed: handed to the SMTP server, reply never recorded
OUTBOX_STATES = ("pending", "sending", "sent", "failed", "unconfirmed")
AUDIENCES = ("client", "department")


class OutboxMessage(Base):
    __tablename__ = "outbox_messages"

    id: Mapped[int] = mapped_column(primary_key=True)
    #: the RFC 5322 Message-ID, fixed when the row is written and the same on every
    #: attempt, so a copy delivered twice is recognisable as the same message
    message_id: Mapped[str] = mapped_column(String(255), unique=True)
    #: the template's name: service_opened, task_created, …
    kind: Mapped[str] = mapped_column(String(40))
    audience: Mapped[str] = mapped_column(String(12))
    recipient: Mapped[str] = mapped_column(String(254))
    language: Mapped[str] = mapped_column(String(8), default="en")
    context: Mapped[dict[str, Any]] = mapped_column(default=dict)
    #: rendered when queued and again when sent; a subject never carries a secret
    subject: Mapped[str | None] = mapped_column(String(300))
    service_id: Mapped[int | None] = mapped_column(ForeignKey("services.id"), index=True)
    task_id: Mapped[int | None] = mapped_column(ForeignKey("tasks.id"))
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    state: Mapped[str] = mapped_column(String(12), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_owner: Mapped[str | None] = mapped_column(String(100))
    lease_expires: Mapped[datetime | None] = mapped_column()
    #: set, in its own commit, just before the message is handed to the SMTP server
    #: (the DATA command): past this point a resend could make a duplicate
    handed_over_at: Mapped[datetime | None] = mapped_column()
    #: the SMTP server's reply to the message (usually names its queue id)
    smtp_reply: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column()

    __table_args__ = (Index("ix_outbox_messages_state_next_attempt_at", "state", "next_attempt_at"),)
