"""The web UI in-process (no browser): sign-in, CSRF, visibility, the task form's
messages and errors, admin pages. Runs on SQLite and PostgreSQL."""

from __future__ import annotations

import re

from sqlalchemy import select

from fulfil.models import Service, Task
from fulfil.services import lifecycle


def _task_of(app, service_id: int) -> int:
    with app.session(read_only=True) as s:
        return s.query(Task.id).filter(Task.service_id == service_id).order_by(Task.id.desc()).first()[0]


def _ordered_task(web_app, fulfil_app, **params) -> tuple[int, int]:
    sid = web_app.state.order(**params)
    web_app.state.run_worker()
    return sid, _task_of(fulfil_app, sid)


def _flash(html: str) -> str:
    return " ".join(re.sub(r"<[^>]+>", " ", m) for m in re.findall(r'<div class="flash[^"]*"[^>]*>(.*?)</div>', html, re.S))


# -- signing in ---------------------------------------------------------------------------------


def test_pages_ask_to_sign_in_first(web_app):
    from fastapi.testclient import TestClient

    with TestClient(web_app, base_url="https://testserver") as client:
        resp = client.get("/tasks?status=new", follow_redirects=False)
        assert resp.status_code == 303
        assert resp.headers["location"] == "/login?next=/tasks%3Fstatus%3Dnew"
        assert client.get("/", follow_redirects=False).headers["location"] == "/tasks"


def test_wrong_password_is_refused_with_a_message(web_app):
    from fastapi.testclient import TestClient

    with TestClient(web_app, base_url="https://testserver") as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        for login in ("alice", "nobody"):
            resp = client.post("/login", data={"login": login, "password": "wrong password", "csrf_token": token})
            assert resp.status_code == 401
            assert "do not match an active staff member" in _flash(resp.text)
        assert client.get("/tasks", follow_redirects=False).status_code == 303


def test_session_cookie_is_signed_httponly_samesite_and_secure(web_app, password):
    from fastapi.testclient import TestClient

    with TestClient(web_app, base_url="https://testserver") as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        resp = client.post("/login", data={"login": "alice", "password": password, "csrf_token": token, "next": "//evil.example/x"}, follow_redirects=False)
        assert resp.headers["location"] == "/tasks"  # never an open redirect
        cookie = resp.headers["set-cookie"]
        assert "fulfil_session=" in cookie
        for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
            assert flag.lower() in cookie.lower()
        assert client.get("/tasks").status_code == 200
        # a tampered cookie is no session at all
        value = client.cookies.get("fulfil_session")
    body, mac = value.rsplit(".", 1)
    with TestClient(web_app, base_url="https://testserver") as other:
        ok = other.get("/tasks", headers={"cookie": f"fulfil_session={value}"}, follow_redirects=False)
        assert ok.status_code == 200
        forged_body = body[:-2] + ("xx" if not body.endswith("xx") else "yy")
        for forged in (f"{forged_body}.{mac}", f"{body}.{mac[::-1]}", body):
            resp = other.get("/tasks", headers={"cookie": f"fulfil_session={forged}"}, follow_redirects=False)
            assert resp.status_code == 303, forged


def test_sign_out_ends_the_session(sign_in):
    alice = sign_in("alice")
    resp = alice.post("/logout")
    assert resp.headers["location"] == "/login"
    assert alice.client.get("/tasks", follow_redirects=False).status_code == 303


def test_a_new_password_ends_other_sessions(sign_in, fulfil_app):
    from fulfil.services import catalog

    alice = sign_in("alice")
    with fulfil_app.session() as s:
        catalog.set_password(catalog.staff_by_login(s, "alice"), "a brand new password")
    assert alice.client.get("/tasks", follow_redirects=False).status_code == 303


# -- CSRF -------------------------------------------------------------------------------------------


def test_post_without_csrf_token_is_refused_and_changes_nothing(web_app, fulfil_app, sign_in, password):
    _sid, task_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    for data in ({}, {"csrf_token": "forged"}):
        resp = alice.client.post(f"/tasks/{task_id}/assign", data=data, follow_redirects=False)
        assert resp.status_code == 403
        assert "security token" in resp.text
    with fulfil_app.session(read_only=True) as s:
        assert s.get(Task, task_id).assignee_id is None
    # and sign-in itself needs the token the login page gave out
    from fastapi.testclient import TestClient

    with TestClient(web_app, base_url="https://testserver") as fresh:
        assert fresh.post("/login", data={"login": "alice", "password": password}).status_code == 403


# -- the Tasks page and visibility ------------------------------------------------------------------


def test_tasks_page_lists_own_departments_tasks_with_service_client_and_holder(web_app, fulfil_app, sign_in):
    sid, task_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    page = alice.client.get("/tasks").text
    assert f'href="/tasks/{task_id}"' in page
    assert f"#{sid} · Shared hosting S" in page and "Acme Ltd" in page and "unassigned" in page
    assert re.search(r'<span class="count-num">1</span> <span class="count-label">Unassigned', page)
    bob = sign_in("bob")
    assert f'href="/tasks/{task_id}"' not in bob.client.get("/tasks").text
    assert bob.client.get(f"/tasks/{task_id}").status_code == 404
    assert bob.client.get(f"/tasks/{task_id}?tab=main").status_code == 404
    assert bob.post(f"/tasks/{task_id}/assign").status_code == 404


def test_tasks_page_filters_and_pages_with_keyset_links(web_app, fulfil_app, sign_in):
    from sqlalchemy import event

    for _ in range(55):
        web_app.state.order()
    web_app.state.run_worker()
    alice = sign_in("alice")
    statements: list[str] = []

    def count(_conn, _cursor, statement, *_args):
        statements.append(statement)

    event.listen(fulfil_app.engine, "before_cursor_execute", count)
    try:
        first = alice.client.get("/tasks").text
    finally:
        event.remove(fulfil_app.engine, "before_cursor_execute", count)
    # a page of 50 tasks costs a handful of queries, not one per row
    assert len(statements) <= 10, "\n".join(s.split("\n")[0][:120] for s in statements)
    ids_first = [int(i) for i in re.findall(r'href="/tasks/(\d+)"', first)]
    assert len(ids_first) == 50 and ids_first == sorted(ids_first, reverse=True)
    next_link = re.search(r'rel="next" href="([^"]+)"', first).group(1).replace("&amp;", "&")
    second = alice.client.get(next_link).text
    ids_second = [int(i) for i in re.findall(r'href="/tasks/(\d+)"', second)]
    assert len(ids_second) == 5 and max(ids_second) < min(ids_first)
    assert 'rel="next"' not in second
    assert re.findall(r'href="/tasks/(\d+)"', alice.client.get("/tasks?who=mine").text) == []
    assert len(re.findall(r'href="/tasks/\d+"', alice.client.get("/tasks?type=delete&status=all").text)) == 0
    bad = alice.client.get("/tasks?cursor=garbage")
    assert bad.status_code == 400 and "not a cursor" in _flash(bad.text)


# -- the task form ------------------------------------------------------------------------------------


def test_someone_else_taking_the_task_is_a_message_not_an_error_page(web_app, fulfil_app, sign_in):
    _sid, task_id = _ordered_task(web_app, fulfil_app)
    alice, carol = sign_in("alice"), sign_in("carol")
    assert alice.post(f"/tasks/{task_id}/assign").status_code == 303
    resp = carol.post(f"/tasks/{task_id}/assign")
    assert resp.status_code == 303 and resp.headers["location"] == f"/tasks/{task_id}"
    page = carol.client.get(resp.headers["location"])
    assert page.status_code == 200
    assert "already assigned to alice" in _flash(page.text)
    assert 'role="alert"' in page.text


def test_closing_an_unassigned_task_is_refused_with_a_message(web_app, fulfil_app, sign_in):
    _sid, task_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    resp = alice.post(f"/tasks/{task_id}/close")
    page = alice.client.get(resp.headers["location"]).text
    assert "Assign task" in _flash(page) and "yourself before closing it" in _flash(page)


def test_invalid_main_setting_is_shown_next_to_its_field_and_nothing_is_saved(web_app, fulfil_app, sign_in):
    _sid, task_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    alice.post(f"/tasks/{task_id}/assign")
    resp = alice.post(
        f"/tasks/{task_id}/main-settings",
        {"ms.domain": "acme.example", "ms.ip_address": "300.1.2.3", "ms.password": ""},
    )
    assert resp.status_code == 422
    field = re.search(r'<div class="field has-error">.*?</div>', resp.text, re.S).group(0)
    assert 'id="f-ip_address"' in field and 'aria-invalid="true"' in field
    assert 'class="field-error" id="f-ip_address-error"' in field
    assert 'value="300.1.2.3"' in field  # what was typed stays in the form
    assert 'value="acme.example"' in resp.text
    with fulfil_app.session(read_only=True) as s:
        assert s.get(Task, task_id).main_settings.get("domain") is None


def test_secrets_stay_hidden_until_shown_and_showing_is_recorded(web_app, fulfil_app, sign_in):
    sid, task_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    alice.post(f"/tasks/{task_id}/assign")
    resp = alice.post(f"/tasks/{task_id}/main-settings", {"ms.username": "acme", "ms.password": "s3cret-Pa55"})
    assert resp.status_code == 303
    main = alice.client.get(f"/tasks/{task_id}?tab=main").text
    assert "s3cret-Pa55" not in main and 'value="********"' in main
    assert 'type="password"' in main and "Show secrets" in main
    # saving the form back with the mask keeps the secret
    alice.post(f"/tasks/{task_id}/main-settings", {"ms.username": "acme2", "ms.password": "********"})
    with fulfil_app.session(read_only=True) as s:
        assert s.get(Task, task_id).main_settings["password"] == "s3cret-Pa55"
    shown = alice.post(f"/tasks/{task_id}/reveal", csrf_from=f"/tasks/{task_id}?tab=main")
    assert shown.status_code == 200 and 'value="s3cret-Pa55"' in shown.text
    general = alice.client.get(f"/tasks/{task_id}").text
    assert f"secrets of task #{task_id} shown to alice" in general
    assert "s3cret-Pa55" not in general


def test_add_ons_are_read_only_with_the_reason_on_a_setup_task(web_app, fulfil_app, sign_in):
    _sid, task_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    alice.post(f"/tasks/{task_id}/assign")
    page = alice.client.get(f"/tasks/{task_id}?tab=addons").text
    assert "add-ons can be edited only on change tasks; this is a setup task" in page
    assert 'name="addon.disk_gb"' not in page
    assert alice.post(f"/tasks/{task_id}/addons", {"addon.disk_gb": "20"}).status_code == 303
    with fulfil_app.session(read_only=True) as s:
        assert s.get(Task, task_id).addons["disk_gb"] == 10


def test_change_task_add_ons_are_edited_and_applied_on_close(web_app, fulfil_app, sign_in):
    sid, setup_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    alice.post(f"/tasks/{setup_id}/assign")
    alice.post(f"/tasks/{setup_id}/close")
    with fulfil_app.session() as s:
        lifecycle.edit_service(session=s, service_id=sid, addons={"disk_gb": 20})
    web_app.state.run_worker()
    change_id = _task_of(fulfil_app, sid)
    alice.post(f"/tasks/{change_id}/assign")
    page = alice.client.get(f"/tasks/{change_id}?tab=addons").text
    assert 'name="addon.disk_gb"' in page and 'value="20"' in page
    bad = alice.post(f"/tasks/{change_id}/addons", {"addon.disk_gb": "500"}, csrf_from=f"/tasks/{change_id}?tab=addons")
    assert bad.status_code == 422 and 'id="addon-disk_gb-error"' in bad.text and "between 1 and 100" in bad.text
    assert alice.post(f"/tasks/{change_id}/addons", {"addon.disk_gb": "30"}).status_code == 303
    alice.post(f"/tasks/{change_id}/close")
    with fulfil_app.session(read_only=True) as s:
        assert s.get(Service, sid).addons["disk_gb"] == 30


def test_comments_go_to_the_history_and_empty_ones_are_refused(web_app, fulfil_app, sign_in):
    _sid, task_id = _ordered_task(web_app, fulfil_app)
    alice = sign_in("alice")
    assert alice.post(f"/tasks/{task_id}/comment", {"text": "Called the client <b>about</b> DNS"}).status_code == 303
    page = alice.client.get(f"/tasks/{task_id}").text
    assert "Called the client &lt;b&gt;about&lt;/b&gt; DNS" in page  # escaped, never markup
    empty = alice.post(f"/tasks/{task_id}/comment", {"text": "   "})
    assert empty.status_code == 422 and 'id="f-text-error"' in empty.text and "must not be empty" in empty.text


def test_passing_a_task_to_another_department_hands_it_over(web_app, fulfil_app, sign_in):
    _sid, task_id = _ordered_task(web_app, fulfil_app)
    alice, bob = sign_in("alice"), sign_in("bob")
    network = web_app.state.world.network_id
    resp = alice.post(f"/tasks/{task_id}/transfer", {"department_id": str(network)})
    assert resp.headers["location"] == "/tasks"
    assert "passed to Network" in _flash(alice.client.get("/tasks").text)
    assert alice.client.get(f"/tasks/{task_id}").status_code == 404
    assert bob.client.get(f"/tasks/{task_id}").status_code == 200
    unchosen = bob.post(f"/tasks/{task_id}/transfer", {"department_id": ""})
    assert unchosen.status_code == 422 and "choose a department" in unchosen.text


# -- admin pages ---------------------------------------------------------------------------------------


def test_admin_pages_are_for_admins_only(sign_in):
    alice = sign_in("alice")
    for section in ("departments", "staff", "modules", "tariffs", "services"):
        assert alice.client.get(f"/admin/{section}").status_code == 403
    assert alice.client.post("/admin/departments", data={"csrf_token": alice.csrf(), "name": "Sneaky"}).status_code == 403
    assert "/admin/" not in alice.client.get("/tasks").text
    root = sign_in("root")
    for section in ("departments", "staff", "modules", "tariffs", "services"):
        assert root.client.get(f"/admin/{section}").status_code == 200, section


def test_admin_creates_catalogue_entries_and_sees_errors_by_field(sign_in):
    root = sign_in("root")
    assert root.post("/admin/departments", {"name": "Billing", "notify": "on"}).status_code == 303
    assert "Billing" in root.client.get("/admin/departments").text
    dup = root.post("/admin/departments", {"name": "Billing"})
    assert dup.status_code == 422 and 'id="f-name-error"' in dup.text and "already exists" in dup.text
    resp = root.post("/admin/staff", {"login": "dave", "name": "Dave", "password": "long enough pw", "department_ids": "1"})
    assert resp.status_code == 303
    short = root.post("/admin/staff", {"login": "erin", "password": "short"})
    assert short.status_code == 422 and "at least 8 characters" in short.text
    bad_json = root.post("/admin/tariffs", {"name": "T", "service_type": "x", "processing_module_id": "1", "addons": "{nope"})
    assert bad_json.status_code == 422 and 'id="f-addons-error"' in bad_json.text


def test_check_connection_and_service_actions(web_app, fulfil_app, sign_in):
    world = web_app.state.world
    root = sign_in("root")
    resp = root.post(f"/admin/modules/{world.module_id}/check")
    assert "needs no connection" in _flash(root.client.get(resp.headers["location"]).text)
    sid, task_id = _ordered_task(web_app, fulfil_app)
    root.post(f"/tasks/{task_id}/close")
    page = root.client.get("/admin/services").text
    assert f'action="/admin/services/{sid}/suspend"' in page
    assert "suspension requested" in _flash(root.client.get(root.post(f"/admin/services/{sid}/suspend").headers["location"]).text)
    again = root.post(f"/admin/services/{sid}/suspend")
    assert "cannot be suspended" in _flash(root.client.get(again.headers["location"]).text)
    unconfirmed = root.post(f"/admin/services/{sid}/delete")
    assert "tick the box" in _flash(root.client.get(unconfirmed.headers["location"]).text)


def test_a_failed_module_task_offers_retry_and_closes_itself_when_it_works(web_app, fulfil_app, sign_in, fake_module):
    from fulfil.services import catalog

    world = web_app.state.world
    fulfil_app.registry.register_module("fake", fake_module)
    try:
        with fulfil_app.session() as s:
            module = catalog.create_processing_module(session=s, name="Fake panel", plugin="fake", department_id=world.support_id)
            tariff = catalog.create_tariff(session=s, name="Fake plan", service_type="fake", processing_module_id=module.id)
            sid = lifecycle.order_service(session=s, client_id=world.client_id, tariff_id=tariff.id).id
        fake_module.plan("open", "fail")
        web_app.state.run_worker()
        task_id = _task_of(fulfil_app, sid)
        alice = sign_in("alice")
        page = alice.client.get(f"/tasks/{task_id}").text
        assert "The processing module failed" in page and "fake panel refused the open" in page
        assert f'action="/tasks/{task_id}/retry"' in page
        resp = alice.post(f"/tasks/{task_id}/retry")
        assert "running again" in _flash(alice.client.get(resp.headers["location"]).text)
        web_app.state.run_worker()
        with fulfil_app.session(read_only=True) as s:
            assert s.get(Task, task_id).status == "closed"
            assert s.get(Service, sid).status == "active"
        assert f'action="/tasks/{task_id}/retry"' not in alice.client.get(f"/tasks/{task_id}").text
    finally:
        fulfil_app.registry.unregister_module("fake")


def test_repeated_wrong_passwords_are_slowed_down(web_app, password):
    from fastapi.testclient import TestClient

    with TestClient(web_app, base_url="https://testserver") as client:
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        codes = [
            client.post("/login", data={"login": "carol", "password": f"guess {i}", "csrf_token": token}).status_code
            for i in range(11)
        ]
        assert codes[:10] == [401] * 10 and codes[10] == 429
        refused = client.post("/login", data={"login": "carol", "password": password, "csrf_token": token})
        assert refused.status_code == 429 and "Too many failed sign-ins" in _flash(refused.text)


def test_odd_urls_get_pages_not_tracebacks(sign_in):
    alice = sign_in("alice")
    for url in ("/tasks/abc", "/tasks/999999", "/tasks/999999?tab=main", "/tasks?department=x&type=&who=zzz"):
        resp = alice.client.get(url)
        assert resp.status_code in (200, 404), url
        assert resp.headers["content-type"].startswith("text/html"), url
    assert alice.client.get("/tasks?type=bogus").status_code == 400
    assert alice.client.get("/login", follow_redirects=False).headers["location"] == "/tasks"
    resp = alice.client.post("/tasks/1/comment", content=b"x" * 2_000_000,
                             headers={"content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 413


def test_admin_changes_where_and_whether_a_department_gets_alerts(web_app, fulfil_app, sign_in):
    from fulfil.models import Department

    root = sign_in("root")
    with fulfil_app.session(read_only=True) as s:
        dept_id = s.scalars(select(Department.id).order_by(Department.id)).first()
    saved = root.post(f"/admin/departments/{dept_id}/alerts", {"email": "noc@example.test"}, csrf_from="/admin/departments")
    assert saved.status_code == 303
    page = root.client.get("/admin/departments").text
    assert "Alerts of" in page and 'value="noc@example.test"' in page
    with fulfil_app.session(read_only=True) as s:
        dept = s.get(Department, dept_id)
        assert (dept.email, dept.notify) == ("noc@example.test", False)
    bad = root.post(f"/admin/departments/{dept_id}/alerts", {"email": "not-an-address", "notify": "on"}, csrf_from="/admin/departments")
    assert bad.status_code == 303
    assert "Alert email not saved: email: is not an email address" in root.client.get("/admin/departments").text
    with fulfil_app.session(read_only=True) as s:
        assert s.get(Department, dept_id).email == "noc@example.test"
