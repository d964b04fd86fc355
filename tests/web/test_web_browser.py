"""End to end in headless Chromium against a real server process: staff work a
freshly ordered Manual Setup service from the Tasks page to an active service.

Screenshots of the Tasks page and each tab go to tests/artifacts/ (CI keeps them).
"""

from __future__ import annotations

import re
import time

import pytest
from playwright.sync_api import expect

from fulfil.models import Service, Task
from fulfil.services import lifecycle

pytestmark = pytest.mark.timeout(180)


def sign_in(page, server, login: str) -> None:
    page.goto(server.url + "/login")
    page.get_by_label("Login").fill(login)
    page.get_by_label("Password").fill(server.password)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(re.compile(r"/tasks"))


def wait_for_task(server, service_id: int, type: str = "setup", timeout: float = 20.0) -> int:  # noqa: A002
    """The server's own workers turn the request into a task."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with server.app.session(read_only=True) as s:
            task_id = s.query(Task.id).filter(Task.service_id == service_id, Task.type == type).scalar()
        if task_id:
            return task_id
        time.sleep(0.2)
    raise AssertionError(f"no task for service #{service_id} after {timeout}s:\n{server.log_path.read_text()[-2000:]}")


def expect_flash(page, text: str) -> None:
    """The message at the top of the page that a click led to (waits for it)."""
    expect(page.locator(".flash").filter(has_text=text)).to_be_visible()


def test_staff_set_up_a_manual_service_in_the_browser(live_server, browser_context, artifacts):
    server = live_server
    for _ in range(3):  # some older work in the queue, so the page looks like a queue
        wait_for_task(server, server.order())
    service_id = server.order()
    task_id = wait_for_task(server, service_id)

    page = browser_context().new_page()
    sign_in(page, server, "alice")

    # the Tasks page: the new task, newest first, with its service, client and holder
    row = page.locator("tbody tr").filter(has=page.locator(f'a[href="/tasks/{task_id}"]'))
    for _ in range(50):
        if row.count():
            break
        time.sleep(0.2)
        page.reload()
    assert page.locator("tbody tr").first.locator("a.task-link").get_attribute("href") == f"/tasks/{task_id}"
    assert "Acme Ltd" in row.inner_text() and "unassigned" in row.inner_text()
    assert page.get_by_role("heading", name="Tasks", level=1).is_visible()
    page.screenshot(path=str(artifacts / "tasks.png"), full_page=True)

    # keyboard: the first Tab lands on the skip link, which jumps to the content
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.className") == "skip-link"

    row.locator("a.task-link").click()
    page.wait_for_url(f"{server.url}/tasks/{task_id}")
    assert page.get_by_role("heading", level=1).inner_text().startswith(f"#{task_id}")

    page.get_by_role("button", name="Assign to me").click()
    expect_flash(page, f"Task #{task_id} is now yours")
    page.get_by_label("Add an internal comment").fill("Creating the account on web-04.")
    page.get_by_role("button", name="Add comment").click()
    expect(page.locator(".history")).to_contain_text("Creating the account on web-04.")
    page.screenshot(path=str(artifacts / "task-general.png"), full_page=True)

    # main settings: a form generated from the Manual Setup params schema
    page.get_by_role("link", name="Main settings").click()
    page.wait_for_url(f"{server.url}/tasks/{task_id}?tab=main")
    page.get_by_label("Domain").fill("acme.example")
    page.get_by_label("Hostname").fill("web-04.hosting.example")
    page.get_by_label("IP address").fill("not an address")
    page.get_by_label("Username").fill("acme")
    page.get_by_label("Password").fill("Tr0ub4dor&3")
    page.get_by_role("button", name="Save main settings").click()
    # a bad value is marked at its field, and what was typed is kept
    ip = page.get_by_label("IP address")
    expect(ip).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-ip_address-error")).to_contain_text("IP")
    assert page.get_by_label("Domain").input_value() == "acme.example"
    ip.fill("203.0.113.10")
    page.get_by_label("Password").fill("Tr0ub4dor&3")
    page.get_by_role("button", name="Save main settings").click()
    expect_flash(page, "Main settings saved")
    assert page.get_by_label("Password").get_attribute("type") == "password"
    assert page.get_by_label("Password").input_value() == "********"
    page.screenshot(path=str(artifacts / "task-main.png"), full_page=True)
    page.get_by_role("button", name="Show secrets").click()
    expect(page.get_by_label("Password")).to_have_value("Tr0ub4dor&3")
    page.screenshot(path=str(artifacts / "task-main-revealed.png"), full_page=True)

    page.get_by_role("link", name="Add-ons").click()
    expect(page.locator(".tab-panel")).to_contain_text("only on change tasks")
    page.screenshot(path=str(artifacts / "task-addons.png"), full_page=True)

    page.get_by_role("link", name="General information").click()
    page.get_by_role("button", name="Close task").click()
    expect_flash(page, f"Task #{task_id} is closed")
    expect(page.locator(".facts .badge-active")).to_have_text("active")
    history = page.locator(".history").inner_text()
    assert "shown to alice" in history and "Tr0ub4dor&3" not in history

    with server.app.session(read_only=True) as s:
        service = s.get(Service, service_id)
        assert service.status == "active"
        assert service.params["ip_address"] == "203.0.113.10" and service.params["password"] == "Tr0ub4dor&3"

    # a change of the service: its add-ons are edited on the change task
    with server.app.session() as s:
        lifecycle.edit_service(session=s, service_id=service_id, addons={"disk_gb": 20})
    change_id = wait_for_task(server, service_id, type="change")
    page.goto(f"{server.url}/tasks/{change_id}?tab=addons")
    page.get_by_role("button", name="Assign to me").click()
    expect_flash(page, "is now yours")
    expect(page.get_by_label("Disk")).to_have_value("20")
    page.get_by_label("Disk").fill("25")
    page.get_by_role("button", name="Save add-ons").click()
    expect_flash(page, "Add-ons saved")
    page.screenshot(path=str(artifacts / "task-addons-change.png"), full_page=True)
    page.get_by_role("button", name="Close task").click()
    expect_flash(page, f"Task #{change_id} is closed")
    with server.app.session(read_only=True) as s:
        assert s.get(Service, service_id).addons["disk_gb"] == 25

    # a phone: the same page, readable without sideways scrolling
    phone = browser_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True).new_page()
    sign_in(phone, server, "alice")
    phone.goto(server.url + "/tasks?status=all")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(artifacts / "tasks-phone.png"), full_page=True)
    phone.goto(f"{server.url}/tasks/{task_id}")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 390
    phone.screenshot(path=str(artifacts / "task-general-phone.png"), full_page=True)


def test_another_department_neither_sees_the_task_nor_opens_it(live_server, browser_context):
    server = live_server
    service_id = server.order()
    task_id = wait_for_task(server, service_id)
    page = browser_context().new_page()
    sign_in(page, server, "bob")
    assert page.locator(f'a[href="/tasks/{task_id}"]').count() == 0
    response = page.goto(f"{server.url}/tasks/{task_id}")
    assert response.status == 404
    expect(page.get_by_role("heading", name="Not found")).to_be_visible()


def test_a_post_without_the_csrf_token_is_refused(live_server, browser_context, artifacts):
    server = live_server
    service_id = server.order()
    task_id = wait_for_task(server, service_id)
    page = browser_context().new_page()
    sign_in(page, server, "alice")
    # the browser's own cookies, but no token: what a forged cross-site form sends
    response = page.request.post(f"{server.url}/tasks/{task_id}/assign", form={"tab": "general"}, max_redirects=0)
    assert response.status == 403
    assert "security token" in response.text()
    with server.app.session(read_only=True) as s:
        assert s.get(Task, task_id).assignee_id is None
    page.goto(f"{server.url}/tasks/{task_id}")
    page.get_by_role("button", name="Assign to me").click()
    expect_flash(page, "is now yours")


def test_admin_checks_a_connection_and_suspends_a_service(live_server, browser_context, artifacts):
    server = live_server
    service_id = server.order()
    task_id = wait_for_task(server, service_id)
    page = browser_context().new_page()
    sign_in(page, server, "root")
    page.goto(f"{server.url}/tasks/{task_id}")
    page.get_by_role("button", name="Close task").click()  # an admin may close any task
    expect_flash(page, "is closed")

    page.get_by_role("link", name="Admin").click()
    page.get_by_role("link", name="Processing modules").click()
    page.get_by_role("button", name="Check connection").click()
    expect_flash(page, "Manual hosting: Manual Setup needs no connection")
    page.screenshot(path=str(artifacts / "admin-modules.png"), full_page=True)

    page.get_by_role("link", name="Services").click()
    row = page.locator("tbody tr").filter(has_text=f"#{service_id}")
    row.get_by_role("button", name="Suspend").click()
    expect_flash(page, f"Service #{service_id}: suspension requested")
    page.screenshot(path=str(artifacts / "admin-services.png"), full_page=True)
    page.get_by_role("link", name="Staff", exact=True).click()
    page.screenshot(path=str(artifacts / "admin-staff.png"), full_page=True)
