"""Writing to the outbox (from the observer plugin) and working it (CLI, API).

Everything here runs in the caller's session and transaction. Listing never reads a
message's ``context``: it may hold the client's secrets.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from email.utils import parseaddr
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from fulfil.db import utcnow
from fulfil.notify.models import OUTBOX_STATES, OutboxMessage
from fulfil.notify.render import RenderError, render

log = logging.getLogger(__name__)

#: set on a session that queued a message; after its commit local senders wake up
WAKE_KEY = "fulfil.notify.wake"
MAX_LIMIT = 500

_wakers: set = set()


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop(WAKE_KEY, False):
        for waker in list(_wakers):
            waker.set()


@event.listens_for(Session, "after_rollback")
def _forget_after_rollback(session: Session) -> None:
    session.info.pop(WAKE_KEY, None)


def message_id_domain() -> str:
    """The right-hand side of our Message-IDs: the sender address's domain."""
    _, address = parseaddr(os.environ.get("FULFIL_SMTP_FROM", ""))
    domain = address.rpartition("@")[2]
    return domain or socket.gethostname() or "localhost"


def new_message_id() -> str:
    return f"<fulfil.{uuid.uuid4().hex}@{message_id_domain()}>"


def enqueue(
    session: Session,
    *,
    kind: str,
    audience: str,
    recipient: str,
    context: dict[str, Any],
    language: str | None = None,
    service_id: int | None = None,
    task_id: int | None = None,
    department_id: int | None = None,
) -> OutboxMessage:
    """Queue one email in the caller's transaction: it exists if and only if the event
    commits. The subject is rendered now for listing; the bodies when it is sent, so a
    template fixed in the meantime applies and a broken one never blocks the event."""
    try:
        subject: str | None = render(kind, language, context).subject
    except RenderError as exc:
        log.warning("outbox: cannot render the subject of a %s message yet: %s", kind, exc)
        subject = None
    now = utcnow()
    message = OutboxMessage(
        message_id=new_message_id(),
        kind=kind,
        audience=audience,
        recipient=recipient,
        language=language or "en",
        context=context,
        subject=subject,
        service_id=service_id,
        task_id=task_id,
        department_id=department_id,
        state="pending",
        attempts=0,
        next_attempt_at=now,
        created_at=now,
    )
    session.add(message)
    session.flush()
    session.info[WAKE_KEY] = True
    log.info("outbox: queued %s message %s for %s", kind, message.id, recipient)
    return message


# -- reading ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutboxEntry:
    """A message as lists show it: who, what, how far — never the body."""

    id: int
    kind: str
    audience: str
    recipient: str
    subject: str | None
    state: str
    attempts: int
    last_error: str | None
    next_attempt_at: datetime | None
    created_at: datetime
    sent_at: datetime | None
    message_id: str
    service_id: int | None
    task_id: int | None


_ENTRY_COLUMNS = (
    OutboxMessage.id,
    OutboxMessage.kind,
    OutboxMessage.audience,
    OutboxMessage.recipient,
    OutboxMessage.subject,
    OutboxMessage.state,
    OutboxMessage.attempts,
    OutboxMessage.last_error,
    OutboxMessage.next_attempt_at,
    OutboxMessage.created_at,
    OutboxMessage.sent_at,
    OutboxMessage.message_id,
    OutboxMessage.service_id,
    OutboxMessage.task_id,
)


def list_messages(
    session: Session,
    *,
    state: str | None = None,
    service_id: int | None = None,
    limit: int = 50,
) -> list[OutboxEntry]:
    """Newest first. Selects the listed columns only: ``context`` is never loaded."""
    if state is not None and state not in OUTBOX_STATES:
        raise ValueError(f"state must be one of {', '.join(OUTBOX_STATES)}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be between 1 and {MAX_LIMIT}")
    query = select(*_ENTRY_COLUMNS).order_by(OutboxMessage.id.desc()).limit(limit)
    if state is not None:
        query = query.where(OutboxMessage.state == state)
    if service_id is not None:
        query = query.where(OutboxMessage.service_id == service_id)
    return [OutboxEntry(**row._mapping) for row in session.execute(query)]


# -- retrying -----------------------------------------------------------------------------------


@dataclass
class RetryResult:
    requeued: list[int]
    #: id → why it was left alone
    skipped: dict[int, str]


def retry_messages(
    session: Session,
    *,
    ids: Iterable[int] = (),
    all_failed: bool = False,
    resend_sent: bool = False,
) -> RetryResult:
    """Queue messages again, to go out at once, with the same Message-ID.

    * ``failed`` and ``unconfirmed`` messages go back to ``pending``. An unconfirmed
      message may already be in the client's mailbox: retry it after checking the
      mail server's log for its Message-ID.
    * ``pending`` ones skip the rest of their back-off.
    * ``sent`` ones only with ``resend_sent`` (a client says it never arrived); the
      main settings' values were wiped from the row once it was sent, so the copy
      shows them masked.
    * a message a sender is working on right now is left alone.

    ``all_failed`` adds every failed message (not the unconfirmed: each of those
    needs a look).
    """
    wanted: Sequence[int] = sorted(set(ids))
    query = select(OutboxMessage).with_for_update()
    if all_failed:
        query = query.where((OutboxMessage.state == "failed") | OutboxMessage.id.in_(wanted))
    else:
        query = query.where(OutboxMessage.id.in_(wanted))
    rows = {m.id: m for m in session.scalars(query.order_by(OutboxMessage.id))}
    result = RetryResult(requeued=[], skipped={})
    now = utcnow()
    for mid in wanted:
        if mid not in rows:
            result.skipped[mid] = "no such message"
    for message in rows.values():
        if message.state == "sending" and message.lease_expires and message.lease_expires > now:
            result.skipped[message.id] = "a sender is sending it right now"
            continue
        if message.state == "sent" and not resend_sent:
            result.skipped[message.id] = "already sent (resend it with --resend)"
            continue
        message.state = "pending"
        message.next_attempt_at = now
        message.lease_owner = None
        message.lease_expires = None
        message.handed_over_at = None
        result.requeued.append(message.id)
        log.info("outbox: message %s queued again by hand", message.id)
    if result.requeued:
        session.flush()
        session.info[WAKE_KEY] = True
    return result
