"""Who may call what: every task and service endpoint × (a staff member of the
owning department, one of another department, an admin, no token)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from fulfil.services import lifecycle

ROLES = ("owner", "other", "admin", "none")


@dataclass(frozen=True)
class Case:
    name: str
    method: str
    #: builds what the request needs in the world; returns (path, json body or None)
    prepare: Callable[[Any], tuple[str, Any]]
    #: expected status per role, in the order of ROLES
    expect: tuple[int, int, int, int]


def _active(w):
    return w.active_service()


def _suspended(w):
    sid = w.active_service()
    with w.fulfil.session() as s:
        lifecycle.suspend_service(session=s, service_id=sid)
    w.run()
    return sid


def _failed_task(w):
    w.fake.plan("open", "fail")
    sid = w.order(w.fake_tariff)
    w.run()
    return w.task_of(sid)


CASES = [
    # services
    Case("order", "POST", lambda w: ("/services", {"client_id": w.client_id, "tariff_id": w.fake_tariff}),
         (202, 403, 202, 401)),
    Case("list services", "GET", lambda w: (_active(w) and "/services", None), (200, 200, 200, 401)),
    Case("show service", "GET", lambda w: (f"/services/{_active(w)}", None), (200, 404, 200, 401)),
    Case("edit service", "PATCH", lambda w: (f"/services/{_active(w)}", {"addons": {"disk_gb": 20}}),
         (202, 404, 202, 401)),
    Case("suspend", "POST", lambda w: (f"/services/{_active(w)}/suspend", None), (202, 404, 202, 401)),
    Case("resume", "POST", lambda w: (f"/services/{_suspended(w)}/resume", None), (202, 404, 202, 401)),
    Case("delete", "DELETE", lambda w: (f"/services/{_active(w)}", None), (202, 404, 202, 401)),
    # tasks
    Case("list tasks", "GET", lambda w: (w.manual_task() and "/tasks", None), (200, 200, 200, 401)),
    Case("show task", "GET", lambda w: (f"/tasks/{w.manual_task()[1]}", None), (200, 404, 200, 401)),
    Case("assign", "POST", lambda w: (f"/tasks/{w.manual_task()[1]}/assign", None), (200, 404, 200, 401)),
    Case("transfer", "POST", lambda w: (f"/tasks/{w.manual_task()[1]}/transfer", {"department_id": w.other_dept}),
         (200, 404, 200, 401)),
    Case("edit task", "PATCH",
         lambda w: (f"/tasks/{w.manual_task(assign_to='owner')[1]}", {"main_settings": {"hostname": "web1.example.com"}}),
         (200, 404, 200, 401)),
    Case("comment", "POST", lambda w: (f"/tasks/{w.manual_task()[1]}/comments", {"text": "called the client"}),
         (201, 404, 201, 401)),
    Case("retry", "POST", lambda w: (f"/tasks/{_failed_task(w)}/retry", None), (202, 404, 202, 401)),
    Case("close", "POST", lambda w: (f"/tasks/{w.manual_task(assign_to='owner')[1]}/close", None),
         (200, 404, 200, 401)),
]


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_authorization_matrix(world, case: Case, role: str):
    path, body = case.prepare(world)
    response = world.call(role, case.method, path, json=body)
    expected = case.expect[ROLES.index(role)]
    assert response.status_code == expected, response.text
    assert "detail" in response.json() if expected >= 400 else True
    if expected == 401:
        assert response.headers["www-authenticate"] == "Bearer"


def test_a_colleague_who_is_not_the_assignee_can_neither_edit_nor_close(world):
    _, tid = world.manual_task(assign_to="owner")
    edit = world.call("owner2", "PATCH", f"/tasks/{tid}", json={"main_settings": {"hostname": "x.example.com"}})
    assert edit.status_code == 409
    assert "assigned to owner" in edit.json()["detail"]
    close = world.call("owner2", "POST", f"/tasks/{tid}/close")
    assert close.status_code == 403
    assert "only owner" in close.json()["detail"]


def test_lists_show_only_what_the_caller_may_see(world):
    sid, tid = world.manual_task()
    mine = world.call("owner", "GET", "/tasks").json()["items"]
    theirs = world.call("other", "GET", "/tasks").json()["items"]
    assert [t["id"] for t in mine] == [tid] and theirs == []
    assert [s["id"] for s in world.call("owner", "GET", "/services").json()["items"]] == [sid]
    assert world.call("other", "GET", "/services").json()["items"] == []
    assert [s["id"] for s in world.call("admin", "GET", "/services").json()["items"]] == [sid]


def test_a_bad_token_is_401_and_a_non_admin_on_an_admin_endpoint_is_403(world):
    bad = world.client.get("/api/v1/tasks", headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401 and bad.json() == {"detail": "the API token is not valid"}
    basic = world.client.get("/api/v1/tasks", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert basic.status_code == 401
    for path in ("/departments", "/staff", "/modules", "/processing-modules", "/tariffs", "/clients",
                 f"/processing-modules/{world.manual_module}", f"/tariffs/{world.manual_tariff}"):
        assert world.call("owner", "GET", path).status_code == 403, path
        assert world.call("none", "GET", path).status_code == 401, path
        assert world.call("admin", "GET", path).status_code == 200, path
    for method, path, body in (
        ("POST", "/departments", {"name": "Sales"}),
        ("POST", "/staff", {"login": "eve", "is_admin": True}),
        ("POST", "/processing-modules", {"name": "M", "module": "manual", "department_id": world.owner_dept}),
        ("PATCH", f"/processing-modules/{world.manual_module}", {"name": "Mine now"}),
        ("POST", f"/processing-modules/{world.manual_module}/check-connection", None),
        ("POST", "/tariffs", {"name": "T", "service_type": "x", "processing_module_id": world.manual_module}),
        ("PATCH", f"/tariffs/{world.manual_tariff}", {"name": "Mine now"}),
        ("POST", "/clients", {"name": "C", "email": "c@example.test"}),
    ):
        response = world.call("owner", method, path, json=body)
        assert response.status_code == 403 and response.json() == {"detail": "only an admin may do this"}, path
        assert world.call("none", method, path, json=body).status_code == 401, path
    assert world.call("admin", "GET", "/staff").json()["items"][-1]["login"] == "admin"  # nothing was created
