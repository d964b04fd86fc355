"""The `fulfil` command, run in-process on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from fulfil.app import Fulfil
from fulfil.cli import app
from fulfil.models import Staff
from fulfil.services import tasks


@pytest.fixture
def fulfil_cmd(fulfil_database_url, monkeypatch):
    """``fulfil_cmd("service", "list", "--json")`` → parsed JSON (or the text)."""
    monkeypatch.setenv("FULFIL_DATABASE_URL", fulfil_database_url)
    runner = CliRunner()

    def run(*args: str, input: str | None = None, expect: int = 0):
        result = runner.invoke(app, list(args), input=input)
        assert result.exit_code == expect, (result.output, result.exception)
        if "--json" in args:
            return json.loads(result.stdout)
        return result.output

    return run


def _run_worker(url: str) -> None:
    fulfil = Fulfil(url)
    try:
        fulfil.worker(concurrency=1).run_pending()
    finally:
        fulfil.dispose()


def test_a_service_is_set_up_from_the_terminal(fulfil_cmd, fulfil_database_url):
    assert "department #1 Support added" in fulfil_cmd("department", "add", "Support")
    alice = fulfil_cmd("staff", "add", "alice", "--department", "Support", "--json")
    assert alice["department_ids"] == [1] and alice["token"]
    text = fulfil_cmd("staff", "add", "bob", "--admin", "--password", input="bob-password\nbob-password\n")
    assert "API token (shown once): ful_" in text and "bob-password" not in text.split("Password")[-1]
    pm = fulfil_cmd("module", "add", "Manual", "--module", "manual", "--department", "Support", "--json")
    assert pm["module"] == "manual" and pm["department"]["name"] == "Support"
    assert fulfil_cmd("module", "check", "Manual", "--json")["ok"] is True
    tariff = fulfil_cmd("tariff", "add", "Hosting", "--type", "hosting", "--module", "Manual",
                        "--addon", "disk_gb=1:100:10:GB", "--json")
    assert tariff["addons"]["disk_gb"]["max"] == 100
    fulfil_cmd("client", "add", "Acme Ltd", "it@acme.example")
    service = fulfil_cmd("service", "order", "--client", "it@acme.example", "--tariff", "Hosting",
                         "--param", "domain=acme.example", "--addon", "disk_gb=20", "--json")
    assert service["status"] == "ordered" and service["addons"] == {"disk_gb": 20}

    _run_worker(fulfil_database_url)
    listed = fulfil_cmd("task", "list", "--as", "alice", "--json")
    [task] = listed["items"]
    assert task["type"] == "setup" and listed["next_cursor"] is None
    tid = str(task["id"])
    assert "assigned to alice" in fulfil_cmd("task", "assign", tid, "--as", "alice")
    fulfil_cmd("task", "edit", tid, "--setting", "ip_address=192.0.2.5", "--setting", "password=pw-123456", "--as", "alice")
    fulfil_cmd("task", "comment", tid, "set up on web3", "--as", "alice")
    shown = fulfil_cmd("task", "show", tid, "--as", "alice", "--json")
    assert shown["main_settings"]["password"] == "********"
    assert "Set up the service" in fulfil_cmd("task", "show", tid, "--as", "alice")
    assert fulfil_cmd("task", "close", tid, "--as", "alice", "--json")["status"] == "closed"

    detail = fulfil_cmd("service", "show", str(service["id"]), "--json")
    assert detail["status"] == "active" and detail["params"]["ip_address"] == "192.0.2.5"
    assert detail["params"]["password"] == "********"
    assert "comment" in [h["event"] for h in detail["history"]]
    assert "Acme Ltd" in fulfil_cmd("service", "list")
    assert "pw-123456" not in fulfil_cmd("service", "list") + fulfil_cmd("service", "show", str(service["id"]))


def test_mistakes_get_a_message_and_exit_code_1(fulfil_cmd):
    fulfil_cmd("department", "add", "Support")
    fulfil_cmd("staff", "add", "alice", "--department", "Support")
    assert "task 999 not found" in fulfil_cmd("task", "assign", "999", "--as", "alice", expect=1)
    assert "staff member nobody not found" in fulfil_cmd("task", "list", "--as", "nobody", expect=1)
    assert "already exists" in fulfil_cmd("department", "add", "Support", expect=1)
    assert "module nonesuch is not installed" in fulfil_cmd(
        "module", "add", "X", "--module", "nonesuch", "--department", "Support", expect=1
    )
    assert "--tariff T --all" in fulfil_cmd("service", "suspend", expect=1)


def test_bulk_suspend_of_a_tariff_plan(fulfil_cmd, fulfil_database_url):
    fulfil_cmd("department", "add", "Support")
    fulfil_cmd("staff", "add", "boss", "--admin")
    fulfil_cmd("module", "add", "Manual", "--module", "manual", "--department", "Support")
    fulfil_cmd("tariff", "add", "Hosting", "--type", "hosting", "--module", "Manual")
    fulfil_cmd("client", "add", "Acme Ltd", "it@acme.example")
    ids = [fulfil_cmd("service", "order", "--client", "1", "--tariff", "Hosting", "--json")["id"] for _ in range(3)]
    _run_worker(fulfil_database_url)
    fulfil = Fulfil(fulfil_database_url)
    try:
        with fulfil.session() as s:
            boss = s.scalar(select(Staff).where(Staff.login == "boss"))
            for task in tasks.list_tasks(session=s, staff=boss)[0][:2]:
                tasks.close(session=s, staff=boss, task_id=task.id)
    finally:
        fulfil.dispose()
    assert "suspend requested" in fulfil_cmd("service", "suspend", str(ids[1]))
    # every service that is or will be active: one still waiting for its setup task too
    result = fulfil_cmd("service", "suspend", "--tariff", "Hosting", "--all", "--json")
    assert sorted(result["requested"]) == [ids[0], ids[2]] and result["refused"] == []
    statuses = {s["id"]: s["target_status"] for s in fulfil_cmd("service", "list", "--json")}
    assert statuses == {i: "suspended" for i in ids}
    assert "0 service(s)" in fulfil_cmd("service", "suspend", "--tariff", "Hosting", "--all")


def test_demo_once_creates_known_logins_and_tasks_only_once(fulfil_cmd):
    first = fulfil_cmd("demo", "--once", "--json")
    assert first["created"] is True
    assert {x["login"]: x["token"] for x in first["logins"]}["admin"] == "demo-admin-token"
    assert "Web Hosting Basic" in first["tariffs"]
    assert [t["type"] for t in first["tasks"]].count("setup") >= 2
    again = fulfil_cmd("demo", "--once", "--json")
    assert again["created"] is False and again["service_ids"] is None
    assert "exists already" in fulfil_cmd("demo", expect=1)


def test_modules_lists_installed_plugins(fulfil_cmd):
    listed = fulfil_cmd("modules", "--json")
    manual = next(m for m in listed["modules"] if m["name"] == "manual")
    assert manual["operations"] == ["close", "edit", "open", "resume", "suspend"]
    assert "Manual Setup" in fulfil_cmd("modules")


def test_an_unmigrated_postgresql_database_is_named_with_the_command_that_fixes_it(postgres_url, monkeypatch):
    from fulfil.testing import create_postgres_database, drop_postgres_database

    url = create_postgres_database(migrate=False)
    try:
        monkeypatch.setenv("FULFIL_DATABASE_URL", url)
        runner = CliRunner()
        refused = runner.invoke(app, ["department", "list"])
        assert refused.exit_code == 1 and "run `fulfil db upgrade` first" in refused.output
        assert runner.invoke(app, ["db", "upgrade"]).exit_code == 0
        assert runner.invoke(app, ["department", "list", "--json"]).stdout.strip() == "[]"
    finally:
        drop_postgres_database(url)


def test_an_sqlite_file_is_migrated_when_a_command_opens_it(tmp_path, monkeypatch):
    monkeypatch.setenv("FULFIL_DATABASE_URL", f"sqlite:///{tmp_path / 'new.db'}")
    result = CliRunner().invoke(app, ["department", "add", "Support", "--json"])
    assert result.exit_code == 0 and json.loads(result.stdout)["name"] == "Support"
