"""What the client and the departments receive, through the real engine, a real
database (SQLite and PostgreSQL) and a real SMTP server."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy import func, select

from fulfil.notify.models import OutboxMessage
from fulfil.services import tasks as task_service
from fulfil.services.catalog import create_department
from fulfil.testing import FakeModule
from .helpers import CLIENT, OPS, outbox, set_client_language, set_department

SECRET = "S3cret-root-pw!"
MAIN_SETTINGS = {"ip": "203.0.113.7", "password": SECRET, "nameservers": ["ns1.hosting.test", "ns2.hosting.test"]}


def test_closing_setup_task_emails_the_client_the_main_settings_once(
    module_harness, fake_module, notifications, sender, smtp_server
):
    fake_module.plan("open", "manual")
    h = module_harness("fake", fake_module)
    sid = h.order()
    h.run()
    [task] = h.tasks(sid)
    assert sender.send_pending() == 0  # nothing for the client yet (Operations has no address)

    h.close_task(task["id"], main_settings=MAIN_SETTINGS)
    assert sender.send_pending() == 1
    assert sender.send_pending() == 0

    [mail] = smtp_server.inbox.to(CLIENT)
    assert len(smtp_server.received) == 1
    assert mail.subject == f'Your service "fake tariff #1" (#{sid}) is ready'
    for text in (mail.text, mail.html):
        assert "203.0.113.7" in text
        assert SECRET in text
        assert "ns1.hosting.test, ns2.hosting.test" in text
    assert mail.message["From"] == "Hosting <noreply@hosting.test>"
    assert mail.message["Auto-Submitted"] == "auto-generated"
    [row] = outbox(h.app)
    assert (row["kind"], row["state"], row["attempts"]) == ("service_opened", "sent", 1)
    assert row["message_id"] == mail.message_id
    assert "queued as" in row["smtp_reply"]


def test_automatic_open_emails_the_client_the_main_settings_once(module_harness, notifications, sender, smtp_server):
    fake = FakeModule(done_params={"ip": "198.51.100.9", "password": SECRET})
    h = module_harness("fake", fake)
    sid = h.order()
    h.run()
    assert h.service(sid)["status"] == "active"
    assert sender.send_pending() == 1
    h.run()
    assert sender.send_pending() == 0
    [mail] = smtp_server.received
    assert mail.rcpt_tos == [CLIENT]
    assert "198.51.100.9" in mail.text and SECRET in mail.text
    assert "is ready" in mail.subject


def test_the_client_hears_of_suspend_resume_change_and_delete(module_harness, notifications, sender, smtp_server):
    fake = FakeModule(done_params={"ip": "198.51.100.9"})
    h = module_harness("fake", fake)
    sid = h.order()
    h.run()
    h.suspend(sid)
    h.run()
    h.resume(sid)
    h.run()
    h.edit(sid, params={"hostname": "box.example.test"})
    h.run()
    h.delete(sid)
    h.run()
    assert h.service(sid)["status"] == "deleted"
    assert sender.send_pending() == 5
    kinds = [row["kind"] for row in outbox(h.app)]
    assert kinds == ["service_opened", "service_suspended", "service_resumed", "service_changed", "service_deleted"]
    subjects = [m.subject for m in smtp_server.inbox.to(CLIENT)]
    assert subjects == [
        f'Your service "fake tariff #1" (#{sid}) is ready',
        f'Your service "fake tariff #1" (#{sid}) is suspended',
        f'Your service "fake tariff #1" (#{sid}) is working again',
        f'Your service "fake tariff #1" (#{sid}) has been changed',
        f'Your service "fake tariff #1" (#{sid}) has been deleted',
    ]
    changed = smtp_server.inbox.to(CLIENT)[3]
    assert "box.example.test" in changed.text and "198.51.100.9" in changed.text


def test_the_client_gets_emails_in_their_language(module_harness, fulfil_app, notifications, sender, smtp_server):
    fake = FakeModule(done_params={"ip": "198.51.100.9", "password": SECRET})
    h = module_harness("fake", fake)
    set_client_language(fulfil_app, h.client_id, "ru")
    sid = h.order()
    h.run()
    sender.send_pending()
    [mail] = smtp_server.received
    assert mail.subject == f"Ваша услуга «fake tariff #1» (№{sid}) готова"
    assert "Основные параметры" in mail.text and SECRET in mail.text
    assert 'lang="ru"' in mail.html


def open_and_suspend_with_provider_template(module_harness, tmp_path, monkeypatch, template: str):
    """A provider directory with ``en/service_suspended.txt``; a service opened and suspended."""
    (tmp_path / "en").mkdir()
    (tmp_path / "en" / "service_suspended.txt").write_text(template)
    monkeypatch.setenv("FULFIL_TEMPLATES_DIR", str(tmp_path))
    h = module_harness("fake", FakeModule())
    sid = h.order()
    h.run()
    h.suspend(sid)
    h.run()
    return h, sid


def test_a_provider_overrides_a_template_from_its_own_directory(
    module_harness, notifications, sender, smtp_server, tmp_path, monkeypatch
):
    _, sid = open_and_suspend_with_provider_template(
        module_harness, tmp_path, monkeypatch,
        "{% set subject %}ACME: service {{ service.id }} on hold{% endset %}\nDear {{ client.name }}, pay us.\n",
    )
    sender.send_pending()
    opened, suspended = smtp_server.received
    assert "is ready" in opened.subject  # not overridden: the shipped template
    assert suspended.subject == f"ACME: service {sid} on hold"
    assert suspended.text.strip() == "Dear Test Client, pay us."
    assert "has been suspended" in suspended.html  # the HTML part was not overridden


def test_a_broken_provider_template_fails_the_message_not_the_event(
    module_harness, notifications, sender, smtp_server, tmp_path, monkeypatch
):
    h, sid = open_and_suspend_with_provider_template(
        module_harness, tmp_path, monkeypatch, "{% set subject %}{{ service.nope }}{% endset %}x\n"
    )
    assert h.service(sid)["status"] == "suspended"
    sender.send_pending()
    rows = outbox(h.app)
    assert [(r["kind"], r["state"]) for r in rows] == [("service_opened", "sent"), ("service_suspended", "failed")]
    assert "service_suspended.txt" in rows[1]["last_error"] and "UndefinedError" in rows[1]["last_error"]


def test_a_module_failure_alerts_the_department_with_the_error(module_harness, fulfil_app, notifications, sender, smtp_server):
    fake = FakeModule()
    fake.plan("open", "fail")
    h = module_harness("fake", fake)
    set_department(fulfil_app, h.department_id, email=OPS)
    sid = h.order()
    h.run()
    [task] = h.tasks(sid)
    assert sender.send_pending() == 1
    [alert] = smtp_server.inbox.to(OPS)
    assert alert.subject == f"[Operations] New setup task #{task['id']}: {'Setup fake tariff #1 for Test Client'}"
    assert "fake panel refused the open" in alert.text
    assert "fake panel refused the open" in alert.html
    assert f"#{sid}" in alert.text
    assert not smtp_server.inbox.to(CLIENT)


def test_manual_work_alerts_the_department_and_no_one_when_alerts_are_off(
    module_harness, fulfil_app, notifications, sender, smtp_server
):
    fake = FakeModule()
    fake.plan("open", "manual", "manual")
    h = module_harness("fake", fake)
    set_department(fulfil_app, h.department_id, email=OPS)
    first = h.order()
    h.run()
    set_department(fulfil_app, h.department_id, email=OPS, notify=False)
    h.order()
    h.run()
    sender.send_pending()
    [alert] = smtp_server.received
    assert alert.rcpt_tos == [OPS]
    assert f"#{first}" in alert.text and "module failed" not in alert.text


def test_a_task_passed_to_a_department_alerts_it(module_harness, fulfil_app, notifications, sender, smtp_server):
    fake = FakeModule()
    fake.plan("open", "manual")
    h = module_harness("fake", fake)
    with fulfil_app.session() as s:
        network = create_department(session=s, name="Network", email="net@hosting.test").id
    sid = h.order()
    h.run()
    [task] = h.tasks(sid)
    with fulfil_app.session() as s:
        task_service.transfer(session=s, staff=h._admin(s), task_id=task["id"], department_id=network)
    sender.send_pending()
    [alert] = smtp_server.received
    assert alert.rcpt_tos == ["net@hosting.test"]
    assert alert.subject == f"[Network] Task #{task['id']} passed to you from Operations"


def test_secrets_appear_in_the_client_email_and_nowhere_else(
    module_harness, fulfil_app, notifications, sender, smtp_server, caplog
):
    from typer.testing import CliRunner

    from fulfil.notify.cli import app as outbox_cli
    from fulfil.notify.outbox import list_messages

    caplog.set_level(logging.DEBUG)
    fake = FakeModule()
    fake.plan("open", "manual")
    h = module_harness("fake", fake)
    set_department(fulfil_app, h.department_id, email=OPS)
    sid = h.order()
    h.run()
    [task] = h.tasks(sid)
    h.close_task(task["id"], main_settings=MAIN_SETTINGS)
    listed = CliRunner().invoke(outbox_cli, ["--database-url", fulfil_app.database_url, "list"])
    assert sender.send_pending() == 2

    [client_mail] = smtp_server.inbox.to(CLIENT)
    assert SECRET in client_mail.text and SECRET in client_mail.html
    [alert] = smtp_server.inbox.to(OPS)
    assert SECRET not in alert.raw.decode()

    assert listed.exit_code == 0, listed.output
    assert "service_opened" in listed.output and CLIENT in listed.output
    assert SECRET not in listed.output
    with fulfil_app.session(read_only=True) as s:
        assert SECRET not in repr(list_messages(s))
    for entry in h.history(sid):
        assert SECRET not in repr(entry)
    # the test SMTP server (logger mail.log) logs what it receives; fulfil must not
    ours = [r for r in caplog.records if not r.name.startswith("mail.log")]
    assert ours, "expected fulfil to log something"
    for record in ours:
        assert SECRET not in record.getMessage()
    # once sent, the main settings' values are wiped from the outbox row
    for row in outbox(fulfil_app):
        assert SECRET not in repr(row)


def test_no_message_is_queued_when_the_event_rolls_back(module_harness, fulfil_app, notifications):
    h = module_harness("fake", FakeModule())
    sid = h.order()
    h.run()
    before = outbox(fulfil_app)
    with pytest.raises(RuntimeError), fulfil_app.session() as s:
        fulfil_app.registry.notify(
            "fulfil_service_status_changed", session=s, service_id=sid, old_status="active", new_status="suspended"
        )
        # the row exists in this transaction…
        assert s.scalar(select(func.count()).select_from(OutboxMessage)) == len(before) + 1
        raise RuntimeError("the event fails after the observers ran")
    assert outbox(fulfil_app) == before  # …and went with it


def test_the_notifications_plugin_is_a_default_observer():
    from fulfil.defaults import DEFAULT_OBSERVERS
    from fulfil.plugins import ModuleRegistry

    assert "fulfil.notify.plugin:plugin" in DEFAULT_OBSERVERS
    registry = ModuleRegistry.discover()
    assert registry.pm.get_plugin("fulfil.notify.plugin:plugin") is not None
