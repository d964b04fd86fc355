"""Delivering the outbox over SMTP, once.

What SMTP can and cannot promise
--------------------------------
An SMTP server takes responsibility for a message when it answers ``250`` to the
end of its DATA. If the link breaks, or this process dies, after the message's last
byte went out and before that reply is read (and recorded), nobody can tell whether
the server has it, and SMTP offers no way to ask (RFC 1047 describes the problem).
So no SMTP client can promise exactly-once in every case; what this sender promises:

* **Never lost.** A message is queued in the event's own transaction; it leaves the
  outbox only as ``sent`` (the server said 250) or ``failed`` (the server refused it
  for good, or its template is broken) — both listed by ``fulfil outbox list`` and
  put back by ``fulfil outbox retry``. Connection failures, 4xx replies and a
  refused login are retried with exponential back-off (with jitter), without end.
* **Never sent twice automatically.** Each attempt *claims* the row (a conditional
  UPDATE to ``sending`` with a lease; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), so
  two senders never take the same message. Just before the DATA command the sender
  records ``handed_over_at`` in its own commit, and only while it still holds the
  lease. The rule for a row found ``sending`` with an expired lease (its sender died):

  - ``handed_over_at`` empty → the server never saw the message: it is sent again;
  - ``handed_over_at`` set → the server may have it: the row becomes
    ``unconfirmed`` and is **not** resent. Its Message-ID (fixed per row, the same
    on every attempt) is what to look for in the mail server's log; resend it with
    ``fulfil outbox retry ID`` if it is not there. A resend carries the same
    Message-ID, so a duplicate is recognisable as one.

  The same holds when the link breaks while the server has the message: the row is
  ``unconfirmed`` at once. The window is the server's reply time; it takes a crash
  in it to leave a message unconfirmed.

Configuration (environment): ``FULFIL_SMTP_HOST`` (no host: the sender does not
start and messages wait in the outbox), ``FULFIL_SMTP_PORT`` (default 25, 587 with
``starttls``, 465 with ``ssl``), ``FULFIL_SMTP_SECURITY`` = ``none`` | ``starttls`` |
``ssl``, ``FULFIL_SMTP_USER`` / ``FULFIL_SMTP_PASSWORD`` (login, when a user is given),
``FULFIL_SMTP_FROM`` (the From address), ``FULFIL_SMTP_TIMEOUT`` (seconds, default 30),
``FULFIL_SMTP_CA_FILE`` (CA certificates to trust instead of the system's),
``FULFIL_SMTP_HELO`` (the EHLO name). The server's TLS certificate is always verified.

Running it: ``OutboxSender(engine).start()`` in ``fulfil serve`` / ``fulfil worker``
processes (any number of them), ``stop()`` on shutdown; ``send_pending()`` sends
what is due in the calling thread (tests, one-off runs).
"""

from __future__ import annotations

import logging
import os
import random
import smtplib
import socket
import ssl
import threading
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from typing import Any

from sqlalchemy import Engine, and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from fulfil.db import is_sqlite, session_factory, utcnow
from fulfil.notify import outbox
from fulfil.notify.models import OutboxMessage
from fulfil.notify.render import RenderError, Rendered, render

log = logging.getLogger(__name__)

SECURITY_MODES = ("none", "starttls", "ssl")
DEFAULT_PORTS = {"none": 25, "starttls": 587, "ssl": 465}
#: what a sent message's main settings are replaced with in the row
WIPED = "********"


class SmtpConfigError(ValueError):
    """The SMTP settings in the environment are not usable."""


@dataclass(frozen=True)
class SmtpSettings:
    host: str
    port: int
    security: str = "none"
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    from_address: str = "fulfil@localhost"
    timeout: float = 30.0
    #: the name given in EHLO (default: the machine's name)
    helo: str | None = None
    #: CA certificates to trust for the server's TLS certificate (default: the system's)
    ca_file: str | None = None

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> SmtpSettings | None:
        """The settings from ``FULFIL_SMTP_*``; None when no host is configured."""
        env = os.environ if environ is None else environ
        host = (env.get("FULFIL_SMTP_HOST") or "").strip()
        if not host:
            return None
        security = (env.get("FULFIL_SMTP_SECURITY") or "none").strip().lower()
        if security not in SECURITY_MODES:
            raise SmtpConfigError(f"FULFIL_SMTP_SECURITY must be one of {', '.join(SECURITY_MODES)}, not {security!r}")
        try:
            port = int(env.get("FULFIL_SMTP_PORT") or DEFAULT_PORTS[security])
            timeout = float(env.get("FULFIL_SMTP_TIMEOUT") or 30)
        except ValueError:
            raise SmtpConfigError("FULFIL_SMTP_PORT and FULFIL_SMTP_TIMEOUT must be numbers") from None
        from_address = (env.get("FULFIL_SMTP_FROM") or "").strip() or f"fulfil@{socket.gethostname() or 'localhost'}"
        if "@" not in parseaddr(from_address)[1]:
            raise SmtpConfigError("FULFIL_SMTP_FROM must be an email address, e.g. Hosting <noreply@example.com>")
        return cls(
            host=host,
            port=port,
            security=security,
            user=env.get("FULFIL_SMTP_USER") or None,
            password=env.get("FULFIL_SMTP_PASSWORD") or None,
            from_address=from_address,
            timeout=timeout,
            helo=env.get("FULFIL_SMTP_HELO") or None,
            ca_file=env.get("FULFIL_SMTP_CA_FILE") or None,
        )

    @property
    def envelope_from(self) -> str:
        return parseaddr(self.from_address)[1]


@dataclass
class Claimed:
    id: int
    attempt: int
    message_id: str
    kind: str
    recipient: str
    language: str
    context: dict[str, Any]
    #: this sender recorded the point of no return for this attempt
    handed_over: bool = False


class LinkBroken(Exception):
    """The SMTP connection is gone; the rest of the batch waits for the next round."""


def build_email(settings: SmtpSettings, c: Claimed, rendered: Rendered) -> EmailMessage:
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["Subject"] = rendered.subject
    msg["From"] = settings.from_address
    msg["To"] = c.recipient
    msg["Date"] = format_datetime(utcnow())
    msg["Message-ID"] = c.message_id
    # RFC 3834: no vacation auto-replies to us
    msg["Auto-Submitted"] = "auto-generated"
    msg["Content-Language"] = c.language
    msg.set_content(rendered.text)
    msg.add_alternative(rendered.html, subtype="html")
    return msg


def wiped(context: dict[str, Any]) -> dict[str, Any]:
    """The context with the main settings' values gone (kept once a message is sent)."""
    if "settings" not in context:
        return context
    return {
        **context,
        "settings": [{**s, "value": WIPED} for s in context.get("settings") or []],
    }


def _reply_text(reply: Any) -> str:
    if isinstance(reply, bytes):
        return reply.decode("utf-8", "replace")
    return str(reply)


class OutboxSender:
    """Claims due outbox rows and sends them; see the module's docstring for the rules."""

    def __init__(
        self,
        engine: Engine,
        *,
        smtp: SmtpSettings | None = None,
        batch_size: int = 20,
        lease_seconds: float = 300.0,
        poll_interval: float = 5.0,
        retry_base_delay: float = 10.0,
        retry_max_delay: float = 3600.0,
        name: str | None = None,
    ) -> None:
        self.engine = engine
        self.smtp = smtp if smtp is not None else SmtpSettings.from_env()
        self.batch_size = max(1, batch_size)
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_interval = poll_interval
        self.retry_base_delay = retry_base_delay
        self.retry_max_delay = retry_max_delay
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.sessions: sessionmaker[Session] = session_factory(engine)
        self.postgres = not is_sqlite(engine)
        self._random = random.Random()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- running -----------------------------------------------------------------------------

    def start(self) -> bool:
        """Send in a background thread until :meth:`stop`. Returns False (and sends
        nothing: messages wait in the outbox) when no SMTP host is configured."""
        if self.smtp is None:
            log.warning("outbox: FULFIL_SMTP_HOST is not set; emails wait in the outbox until it is")
            return False
        if self._thread is not None:
            return True
        self._stop.clear()
        outbox._wakers.add(self._wake)
        self._thread = threading.Thread(target=self._loop, name="fulfil-outbox", daemon=True)
        self._thread.start()
        log.info(
            "outbox: sender %s started (%s:%s, %s)", self.owner, self.smtp.host, self.smtp.port, self.smtp.security
        )
        return True

    def stop(self, timeout: float = 30.0) -> None:
        self._stop.set()
        self._wake.set()
        outbox._wakers.discard(self._wake)
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            try:
                self.send_pending()
            except Exception:  # noqa: BLE001 - the database or the server may be away
                log.exception("outbox: sending failed; trying again in %ss", self.poll_interval)
            self._wake.wait(self.poll_interval)

    def send_pending(self, *, max_rounds: int = 100) -> int:
        """Send every message that is due now, in this thread; return how many went out."""
        if self.smtp is None:
            raise RuntimeError("no SMTP server configured (FULFIL_SMTP_HOST)")
        sent = 0
        tried: set[int] = set()
        for _ in range(max_rounds):
            self.recover_abandoned()
            # each message at most once per call, whatever its back-off
            batch = self.claim(self.batch_size, exclude=tried)
            if not batch:
                break
            tried.update(c.id for c in batch)
            delivered, link_ok = self.deliver(batch)
            sent += delivered
            if not link_ok or self._stop.is_set():
                break  # the server is away: the rest waits for the next call
        return sent

    # -- the database's part -------------------------------------------------------------------

    def recover_abandoned(self) -> int:
        """Rows whose sender died after handing the message to the server become
        ``unconfirmed``; they are never resent on their own."""
        now = utcnow()
        m = OutboxMessage
        with self.sessions() as session, session.begin():
            rows = session.execute(
                update(m)
                .where(m.state == "sending", m.lease_expires < now, m.handed_over_at.is_not(None))
                .values(
                    state="unconfirmed",
                    lease_owner=None,
                    lease_expires=None,
                    last_error="the sender stopped after handing the message to the SMTP server and before "
                    "recording its reply: look for the Message-ID in the mail server's log, and resend "
                    "with `fulfil outbox retry` only if it is not there",
                )
                .returning(m.id, m.message_id),
                execution_options={"synchronize_session": False},
            ).all()
        for row in rows:
            log.warning("outbox: message %s (Message-ID %s) is unconfirmed: its sender died mid-delivery", row.id, row.message_id)
        return len(rows)

    def claim(self, limit: int, *, exclude: set[int] | frozenset[int] = frozenset()) -> list[Claimed]:
        now = utcnow()
        m = OutboxMessage
        due = or_(
            and_(m.state == "pending", m.next_attempt_at <= now),
            # a dead sender's row it never handed over: the server never saw it
            and_(m.state == "sending", m.lease_expires < now, m.handed_over_at.is_(None)),
        )
        query = select(m.id).where(due).order_by(m.id).limit(limit)
        if exclude:
            query = query.where(m.id.not_in(sorted(exclude)))
        if self.postgres:
            query = query.with_for_update(skip_locked=True)
        with self.sessions() as session, session.begin():
            ids = list(session.scalars(query))
            if not ids:
                return []
            rows = session.execute(
                update(m)
                .where(m.id.in_(ids), due)
                .values(
                    state="sending",
                    lease_owner=self.owner,
                    lease_expires=now + self.lease,
                    attempts=m.attempts + 1,
                    handed_over_at=None,
                )
                .returning(m.id, m.attempts, m.message_id, m.kind, m.recipient, m.language, m.context),
                execution_options={"synchronize_session": False},
            ).all()
        claimed = sorted(
            (
                Claimed(
                    id=r.id, attempt=r.attempts, message_id=r.message_id, kind=r.kind,
                    recipient=r.recipient, language=r.language, context=dict(r.context or {}),
                )
                for r in rows
            ),
            key=lambda c: c.id,
        )
        for c in claimed:
            log.debug("outbox: claimed message %s (attempt %s)", c.id, c.attempt)
        return claimed

    def _mine(self, c: Claimed):
        m = OutboxMessage
        return and_(m.id == c.id, m.state == "sending", m.lease_owner == self.owner, m.attempts == c.attempt)

    def _update(self, where, **values: Any) -> bool:
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(OutboxMessage).where(where).values(**values),
                execution_options={"synchronize_session": False},
            )
            return result.rowcount == 1

    def _hand_over(self, c: Claimed) -> bool:
        """The point of no return, committed before the server sees the message."""
        return self._update(self._mine(c), handed_over_at=utcnow())

    def _sent(self, c: Claimed, reply: str, subject: str) -> None:
        m = OutboxMessage
        # the server has it: record that even if our lease ran out meanwhile and the
        # row was marked unconfirmed (but not if it was queued again by hand since)
        where = and_(m.id == c.id, m.attempts == c.attempt, m.state.in_(("sending", "unconfirmed")))
        for attempt in range(3):
            try:
                self._update(
                    where, state="sent", sent_at=utcnow(), smtp_reply=reply[:500], subject=subject,
                    last_error=None, lease_owner=None, lease_expires=None, context=wiped(c.context),
                )
                break
            except Exception:  # noqa: BLE001 - left "sending": it turns unconfirmed, never resent
                log.exception("outbox: recording message %s as sent failed (try %s)", c.id, attempt + 1)
                if self._stop.wait(0.5 * (attempt + 1)):
                    break
        log.info("outbox: sent message %s (%s) to %s: %s", c.id, c.kind, c.recipient, reply[:200])

    def _failed(self, c: Claimed, reason: str, *, transient: bool, subject: str | None = None) -> None:
        values: dict[str, Any] = {
            "last_error": reason[:2000], "lease_owner": None, "lease_expires": None, "handed_over_at": None,
        }
        if subject:
            values["subject"] = subject
        if transient:
            delay = self.backoff(c.attempt)
            values.update(state="pending", next_attempt_at=utcnow() + timedelta(seconds=delay))
            log.warning("outbox: message %s not sent (attempt %s), next try in %.0f s: %s", c.id, c.attempt, delay, reason)
        else:
            values.update(state="failed")
            log.error("outbox: message %s failed for good: %s", c.id, reason)
        self._update(self._mine(c), **values)

    def _unconfirmed(self, c: Claimed, reason: str) -> None:
        self._update(
            and_(OutboxMessage.id == c.id, OutboxMessage.attempts == c.attempt, OutboxMessage.state == "sending"),
            state="unconfirmed", lease_owner=None, lease_expires=None,
            last_error=f"{reason}; the server may have the message: look for its Message-ID in the mail "
            "server's log, and resend with `fulfil outbox retry` only if it is not there",
        )
        log.warning("outbox: message %s (Message-ID %s) is unconfirmed: %s", c.id, c.message_id, reason)

    def backoff(self, attempt: int) -> float:
        """Exponential, capped, with jitter (half to full)."""
        delay = min(self.retry_max_delay, self.retry_base_delay * 2 ** max(0, attempt - 1))
        return delay * (0.5 + self._random.random() / 2)

    # -- the SMTP part ---------------------------------------------------------------------------

    def connect(self) -> smtplib.SMTP:
        s = self.smtp
        context = ssl.create_default_context(cafile=s.ca_file)
        if s.security == "ssl":
            client: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, local_hostname=s.helo, timeout=s.timeout, context=context)
        else:
            client = smtplib.SMTP(s.host, s.port, local_hostname=s.helo, timeout=s.timeout)
        try:
            client.ehlo()
            if s.security == "starttls":
                client.starttls(context=context)
                client.ehlo()
            if s.user:
                client.login(s.user, s.password or "")
        except BaseException:
            _close(client)
            raise
        return client

    def deliver(self, batch: list[Claimed]) -> tuple[int, bool]:
        """Send a claimed batch over one connection; every row ends sent, pending
        (back-off), failed or unconfirmed. Returns (how many were sent, whether the
        connection held)."""
        try:
            client = self.connect()
        except (OSError, smtplib.SMTPException) as exc:
            reason = f"cannot reach the SMTP server {self.smtp.host}:{self.smtp.port}: {_describe(exc)}"
            for c in batch:
                self._failed(c, reason, transient=True)
            return 0, False
        sent = 0
        try:
            for i, c in enumerate(batch):
                try:
                    if self._send_one(client, c):
                        sent += 1
                except LinkBroken as exc:
                    for rest in batch[i + 1 :]:
                        self._failed(rest, f"the SMTP connection broke: {exc}", transient=True)
                    return sent, False
                except Exception as exc:  # noqa: BLE001 - one odd message must not stop the rest
                    log.exception("outbox: message %s: unexpected error", c.id)
                    if c.handed_over:
                        continue  # left "sending": it turns unconfirmed, never resent blindly
                    try:
                        self._failed(c, f"unexpected error while sending: {type(exc).__name__}", transient=True)
                    except Exception:  # noqa: BLE001 - the database is away: the lease runs out instead
                        log.exception("outbox: message %s: recording the error failed", c.id)
        finally:
            _close(client, quit=True)
        return sent, True

    def _send_one(self, client: smtplib.SMTP, c: Claimed) -> bool:
        try:
            rendered = render(c.kind, c.language, c.context)
            data = build_email(self.smtp, c, rendered).as_bytes()
        except RenderError as exc:
            self._failed(c, str(exc), transient=False)
            return False
        except (ValueError, TypeError) as exc:  # e.g. a header the email package refuses
            self._failed(c, f"cannot build the message: {type(exc).__name__}", transient=False)
            return False
        try:
            code, reply = client.mail(self.smtp.envelope_from)
            if code != 250:
                return self._refused(client, c, "MAIL FROM", code, reply, rendered.subject)
            code, reply = client.rcpt(c.recipient)
            if code not in (250, 251):
                return self._refused(client, c, "RCPT TO", code, reply, rendered.subject)
        except (OSError, smtplib.SMTPException) as exc:
            # nothing was handed over: safe to send again
            self._failed(c, f"SMTP error before the message was sent: {_describe(exc)}", transient=True, subject=rendered.subject)
            raise LinkBroken(_describe(exc)) from None
        if not self._hand_over(c):
            log.warning("outbox: lost the lease on message %s before sending it; left to its new owner", c.id)
            _rset(client)
            return False
        c.handed_over = True
        try:
            code, reply = client.data(data)
        except smtplib.SMTPDataError as exc:
            # the server refused DATA itself (no 354): it never saw the message
            return self._refused(client, c, "DATA", exc.smtp_code, exc.smtp_error, rendered.subject)
        except (OSError, smtplib.SMTPException) as exc:
            self._unconfirmed(c, f"the SMTP connection broke while the server was taking the message: {_describe(exc)}")
            raise LinkBroken(_describe(exc)) from None
        if code != 250:
            return self._refused(client, c, "end of DATA", code, reply, rendered.subject)
        self._sent(c, f"{code} {_reply_text(reply)}", rendered.subject)
        return True

    def _refused(self, client: smtplib.SMTP, c: Claimed, step: str, code: int, reply: Any, subject: str) -> bool:
        """A definite answer: the server does not have the message. 4xx: later; 5xx: never."""
        _rset(client)
        transient = not 500 <= code < 600
        self._failed(c, f"the SMTP server refused {step}: {code} {_reply_text(reply)}", transient=transient, subject=subject)
        return False


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"{exc.smtp_code} {_reply_text(exc.smtp_error)}"
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _rset(client: smtplib.SMTP) -> None:
    try:
        client.rset()
    except (OSError, smtplib.SMTPException):
        pass


def _close(client: smtplib.SMTP, *, quit: bool = False) -> None:  # noqa: A002
    try:
        if quit:
            client.quit()
    except (OSError, smtplib.SMTPException):
        pass
    finally:
        try:
            client.close()
        except OSError:
            pass
