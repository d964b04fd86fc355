"""Delivery: never lost, never doubled — with the SMTP server down, refusing, or the
sender dying at the worst moments."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from fulfil.db import utcnow
from fulfil.notify.models import OutboxMessage
from fulfil.notify.outbox import retry_messages
from fulfil.notify.sender import OutboxSender, SmtpConfigError, SmtpSettings
from fulfil.testing import FakeModule
from .helpers import CLIENT, outbox

SECRET = "S3cret-root-pw!"


def open_services(module_harness, n: int, **params) -> tuple:
    h = module_harness("fake", FakeModule(done_params={"ip": "198.51.100.9", "password": SECRET, **params}))
    ids = [h.order() for _ in range(n)]
    h.run()
    return h, ids


def expire_leases(app) -> None:
    with app.session() as s:
        s.execute(update(OutboxMessage).values(lease_expires=utcnow() - timedelta(seconds=1)))


class Crash(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_smtp_server_down_messages_wait_and_go_out_once_it_is_back(
    module_harness, notifications, sender, smtp_server
):
    smtp_server.stop()
    h, ids = open_services(module_harness, 3)
    assert sender.send_pending() == 0
    assert sender.send_pending() == 0
    rows = outbox(h.app)
    assert [r["state"] for r in rows] == ["pending"] * 3
    assert all(r["attempts"] == 2 for r in rows)
    assert all("cannot reach the SMTP server" in r["last_error"] for r in rows)

    smtp_server.start()
    assert sender.send_pending() == 3
    assert sender.send_pending() == 0
    received = smtp_server.inbox.to(CLIENT)
    assert len(received) == 3
    assert len({m.message_id for m in received}) == 3
    assert sorted(m.message_id for m in received) == sorted(r["message_id"] for r in outbox(h.app))
    assert [r["state"] for r in outbox(h.app)] == ["sent"] * 3


def test_retries_back_off_exponentially(module_harness, notifications, make_sender, smtp_server):
    smtp_server.stop()
    sender = make_sender(retry_base_delay=10, retry_max_delay=60)
    h, _ = open_services(module_harness, 1)
    assert sender.send_pending() == 0
    assert sender.send_pending() == 0  # not due yet: no second attempt
    [row] = outbox(h.app)
    assert row["attempts"] == 1
    assert [sender.backoff(n) <= cap for n, cap in [(1, 10), (2, 20), (3, 40), (9, 60)]] == [True] * 4
    assert all(sender.backoff(9) >= 30 for _ in range(20))


def test_a_sender_dying_before_handing_the_message_over_sends_it_once_later(
    module_harness, notifications, make_sender, smtp_server
):
    h, _ = open_services(module_harness, 1)
    dying = make_sender()
    [claimed] = dying.claim(10)  # …and the process dies before it connects
    assert outbox(h.app)[0]["state"] == "sending"
    assert make_sender().send_pending() == 0  # the lease still holds: nobody takes it
    expire_leases(h.app)
    assert make_sender().send_pending() == 1
    assert len(smtp_server.received) == 1
    [row] = outbox(h.app)
    assert (row["state"], row["attempts"]) == ("sent", 2)


def test_a_sender_dying_after_handing_the_message_over_never_resends_it_by_itself(
    module_harness, notifications, make_sender, smtp_server, monkeypatch
):
    from typer.testing import CliRunner

    from fulfil.notify.cli import app as outbox_cli

    h, _ = open_services(module_harness, 1)
    dying = make_sender()

    def die(*args, **kwargs):
        raise Crash

    monkeypatch.setattr(dying, "_sent", die)  # the server said 250; we die before recording it
    with pytest.raises(Crash):
        dying.send_pending()
    assert len(smtp_server.received) == 1
    assert outbox(h.app)[0]["state"] == "sending"

    expire_leases(h.app)
    assert make_sender().send_pending() == 0
    [row] = outbox(h.app)
    assert row["state"] == "unconfirmed"
    assert "Message-ID" in row["last_error"]
    assert len(smtp_server.received) == 1

    url = h.app.database_url
    listed = CliRunner().invoke(outbox_cli, ["--database-url", url, "list", "--state", "unconfirmed"])
    assert listed.exit_code == 0, listed.output
    assert "unconfirmed" in listed.output and row["message_id"] in listed.output

    # staff checked the mail server's log and decided to send it again
    retried = CliRunner().invoke(outbox_cli, ["--database-url", url, "retry", str(row["id"])])
    assert retried.exit_code == 0, retried.output
    assert make_sender().send_pending() == 1
    first, second = smtp_server.received
    assert first.message_id == second.message_id == row["message_id"]  # a duplicate is recognisable


def test_the_link_breaking_while_the_server_takes_the_message_leaves_it_unconfirmed(
    module_harness, notifications, sender, smtp_server, monkeypatch
):
    import smtplib

    h, _ = open_services(module_harness, 2)

    def broken_data(self, msg):
        self.close()
        raise smtplib.SMTPServerDisconnected("Connection unexpectedly closed")

    monkeypatch.setattr(smtplib.SMTP, "data", broken_data)
    assert sender.send_pending() == 0
    first, second = outbox(h.app)
    assert first["state"] == "unconfirmed"  # it may have arrived: not resent by itself
    assert second["state"] == "pending"  # never handed over: goes out next time
    monkeypatch.undo()
    assert sender.send_pending() == 1
    assert [r["state"] for r in outbox(h.app)] == ["unconfirmed", "sent"]


def test_a_refused_recipient_fails_for_good_until_retried(
    module_harness, notifications, sender, smtp_server
):
    smtp_server.inbox.refuse[CLIENT] = "550 5.1.1 <client@example.test>: Recipient address rejected"
    h, _ = open_services(module_harness, 1)
    assert sender.send_pending() == 0
    [row] = outbox(h.app)
    assert row["state"] == "failed"
    assert "550 5.1.1" in row["last_error"]
    assert sender.send_pending() == 0  # failed stays failed

    del smtp_server.inbox.refuse[CLIENT]
    with h.app.session() as s:
        result = retry_messages(s, all_failed=True)
    assert result.requeued == [row["id"]]
    assert sender.send_pending() == 1
    assert len(smtp_server.received) == 1


def test_a_temporary_refusal_is_retried(module_harness, notifications, sender, smtp_server):
    smtp_server.inbox.refuse[CLIENT] = "451 4.3.0 try again later"
    h, _ = open_services(module_harness, 1)
    assert sender.send_pending() == 0
    assert outbox(h.app)[0]["state"] == "pending"
    del smtp_server.inbox.refuse[CLIENT]
    assert sender.send_pending() == 1


def test_retry_leaves_sent_messages_alone_unless_asked(module_harness, notifications, sender, smtp_server):
    h, _ = open_services(module_harness, 1)
    sender.send_pending()
    [row] = outbox(h.app)
    with h.app.session() as s:
        result = retry_messages(s, ids=[row["id"], 999])
    assert result.requeued == []
    assert result.skipped == {row["id"]: "already sent (resend it with --resend)", 999: "no such message"}
    with h.app.session() as s:
        assert retry_messages(s, ids=[row["id"]], resend_sent=True).requeued == [row["id"]]
    assert sender.send_pending() == 1
    second = smtp_server.received[1]
    assert SECRET not in second.text  # the values were wiped once it was sent
    assert "********" in second.text


def test_two_senders_never_send_the_same_message(module_harness, notifications, make_sender, smtp_server):
    h, _ = open_services(module_harness, 12)
    senders = [make_sender(batch_size=2) for _ in range(3)]
    errors: list[BaseException] = []

    def run(s: OutboxSender) -> None:
        try:
            s.send_pending()
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(s,)) for s in senders]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    received = smtp_server.received
    assert len(received) == 12
    assert len({m.message_id for m in received}) == 12
    assert all(r["state"] == "sent" and r["attempts"] == 1 for r in outbox(h.app))


def test_the_background_sender_delivers_soon_after_the_event_commits(
    module_harness, notifications, make_sender, smtp_server
):
    sender = make_sender(poll_interval=30)  # woken by the commit, not by polling
    assert sender.start()
    open_services(module_harness, 1)
    deadline = time.monotonic() + 10
    while not smtp_server.received and time.monotonic() < deadline:
        time.sleep(0.05)
    sender.stop()
    assert len(smtp_server.received) == 1


def test_no_smtp_host_means_no_sender_and_messages_wait(fulfil_app, monkeypatch):
    monkeypatch.delenv("FULFIL_SMTP_HOST", raising=False)
    sender = OutboxSender(fulfil_app.engine)
    assert sender.start() is False


def test_smtp_settings_come_from_the_environment():
    env = {
        "FULFIL_SMTP_HOST": "mail.hosting.test",
        "FULFIL_SMTP_SECURITY": "starttls",
        "FULFIL_SMTP_USER": "fulfil",
        "FULFIL_SMTP_PASSWORD": "smtp-pass",
        "FULFIL_SMTP_FROM": "Hosting <noreply@hosting.test>",
    }
    s = SmtpSettings.from_env(env)
    assert (s.host, s.port, s.security, s.user, s.envelope_from) == (
        "mail.hosting.test", 587, "starttls", "fulfil", "noreply@hosting.test",
    )
    assert "smtp-pass" not in repr(s)
    assert SmtpSettings.from_env({**env, "FULFIL_SMTP_SECURITY": "ssl"}).port == 465
    assert SmtpSettings.from_env({**env, "FULFIL_SMTP_PORT": "2525"}).port == 2525
    assert SmtpSettings.from_env({}) is None
    with pytest.raises(SmtpConfigError):
        SmtpSettings.from_env({**env, "FULFIL_SMTP_SECURITY": "tls"})


@pytest.fixture
def tls_files(tmp_path):
    """A self-signed certificate for 127.0.0.1 (the openssl command line tool)."""
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    return cert, key


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_login(security, tls_files, module_harness, notifications, make_sender):
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    from .conftest import FROM, Inbox, free_port

    cert, key = tls_files
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    logins: list[tuple[bytes, bytes]] = []

    def authenticator(server, session, envelope, mechanism, auth_data):
        logins.append((auth_data.login, auth_data.password))
        return AuthResult(success=(auth_data.login, auth_data.password) == (b"fulfil", b"smtp-pass"))

    inbox = Inbox()
    port = free_port()
    common = {"hostname": "127.0.0.1", "port": port, "authenticator": authenticator}
    if security == "starttls":
        controller = Controller(inbox, tls_context=server_tls, require_starttls=True, auth_require_tls=True, **common)
    else:
        # aiosmtpd counts only STARTTLS as TLS for AUTH; this link is TLS from the start
        controller = Controller(inbox, ssl_context=server_tls, auth_require_tls=False, **common)
    controller.start()
    try:
        settings = SmtpSettings(
            host="127.0.0.1", port=port, security=security, user="fulfil", password="smtp-pass",
            from_address=FROM, timeout=5, helo="fulfil.test", ca_file=str(cert),
        )
        open_services(module_harness, 1)
        assert make_sender(smtp=settings).send_pending() == 1
        assert logins == [(b"fulfil", b"smtp-pass")]
        [mail] = inbox.received
        assert SECRET in mail.text

        # a certificate nobody vouches for is refused; the message waits
        untrusted = SmtpSettings(**{**settings.__dict__, "ca_file": None})
        h, _ = open_services(module_harness, 1)
        assert make_sender(smtp=untrusted).send_pending() == 0
        row = outbox(h.app)[-1]
        assert row["state"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
    finally:
        controller.stop()
