"""A real SMTP server (aiosmtpd) on a free loopback port, the notifications plugin
on the test app's registry, and an outbox sender pointed at that server."""

from __future__ import annotations

import email
import email.policy
import socket
import threading
from dataclasses import dataclass, field

import pytest
from aiosmtpd.controller import Controller

from fulfil.notify.plugin import Notifications
from fulfil.notify.sender import OutboxSender, SmtpSettings

FROM = "Hosting <noreply@hosting.test>"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes

    @property
    def message(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def message_id(self) -> str:
        return str(self.message["Message-ID"])

    @property
    def text(self) -> str:
        return self.message.get_body(("plain",)).get_content()

    @property
    def html(self) -> str:
        return self.message.get_body(("html",)).get_content()


@dataclass
class Inbox:
    """The aiosmtpd handler: keeps what it accepted; refuses listed recipients."""

    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        with self.lock:
            self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos), bytes(envelope.content)))
            n = len(self.received)
        return f"250 2.0.0 Ok: queued as Q{n:05d}"

    def to(self, address: str) -> list[Received]:
        with self.lock:
            return [r for r in self.received if address in r.rcpt_tos]


class SmtpServer:
    """A real SMTP server that a test can stop and start again on the same port."""

    def __init__(self) -> None:
        self.host = "127.0.0.1"
        self.port = free_port()
        self.inbox = Inbox()
        self._controller: Controller | None = None

    def start(self) -> None:
        if self._controller is None:
            self._controller = Controller(self.inbox, hostname=self.host, port=self.port)
            self._controller.start()

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    @property
    def received(self) -> list[Received]:
        return list(self.inbox.received)


@pytest.fixture
def smtp_server():
    server = SmtpServer()
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def smtp_settings(smtp_server) -> SmtpSettings:
    return SmtpSettings(
        host=smtp_server.host, port=smtp_server.port, security="none", from_address=FROM, timeout=5, helo="fulfil.test"
    )


@pytest.fixture
def notifications(fulfil_app):
    """The notifications plugin on the test app's registry: the one a discovered
    registry got from DEFAULT_OBSERVERS, or one registered here on an empty registry."""
    present = [p for _, p in fulfil_app.registry.pm.list_name_plugin() if isinstance(p, Notifications)]
    if present:
        yield present[0]
        return
    plugin = Notifications()
    fulfil_app.registry.register_observer(plugin, name="notifications")
    try:
        yield plugin
    finally:
        fulfil_app.registry.unregister_observer(plugin)


@pytest.fixture
def make_sender(fulfil_app, smtp_settings):
    """``make_sender(**kwargs)`` → an :class:`OutboxSender` on the test database and
    SMTP server, with no back-off (tests do not wait)."""
    senders: list[OutboxSender] = []

    def make(**kwargs) -> OutboxSender:
        kwargs.setdefault("smtp", smtp_settings)
        kwargs.setdefault("retry_base_delay", 0)
        kwargs.setdefault("poll_interval", 0.05)
        sender = OutboxSender(fulfil_app.engine, **kwargs)
        senders.append(sender)
        return sender

    try:
        yield make
    finally:
        for sender in senders:
            sender.stop()


@pytest.fixture
def sender(make_sender) -> OutboxSender:
    return make_sender()
