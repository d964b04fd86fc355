"""Tasks over the API, as staff work them."""

from __future__ import annotations

from fulfil.secrets import MASK


def test_task_form_has_general_main_settings_and_addons_with_secrets_masked(world):
    sid, tid = world.manual_task()
    form = world.call("owner", "GET", f"/tasks/{tid}").json()
    general = form["general"]
    assert general["type"] == "setup" and general["status"] == "new" and general["assignee"] is None
    assert general["department"] == {"id": world.owner_dept, "name": "Support"}
    assert "Set up the service" in general["description"] and "makes the service active" in general["close_actions"]
    assert f"Service #{sid}" in general["service_description"]
    assert general["history"][-1]["event"] == "task.created" and general["activation_date"]
    assert form["main_settings"] == {"domain": "example.com", "password": MASK}
    assert "domain" in form["main_settings_schema"]["properties"]
    assert form["addons"] == {"disk_gb": 10} and form["addons_editable"] is False
    assert "s3cret" not in world.call("owner", "GET", f"/tasks/{tid}").text


def test_revealing_secrets_shows_them_and_is_recorded(world):
    _, tid = world.manual_task()
    form = world.call("owner", "GET", f"/tasks/{tid}", params={"reveal_secrets": True}).json()
    assert form["main_settings"]["password"] == "s3cret-pass"
    again = world.call("owner", "GET", f"/tasks/{tid}").json()
    assert again["general"]["history"][-1]["event"] == "task.secrets_shown"
    assert "s3cret" not in world.call("owner", "GET", "/tasks").text


def test_tasks_are_filtered_and_paged_with_a_cursor(world):
    tids = [world.manual_task()[1] for _ in range(3)]
    world.call("owner", "POST", f"/tasks/{tids[0]}/assign")
    page = world.call("owner", "GET", "/tasks", params={"limit": 2}).json()
    assert [t["id"] for t in page["items"]] == [tids[2], tids[1]]
    rest = world.call("owner", "GET", "/tasks", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [t["id"] for t in rest["items"]] == [tids[0]] and rest["next_cursor"] is None
    mine = world.call("owner", "GET", "/tasks", params={"assignee": "me"}).json()["items"]
    assert [t["id"] for t in mine] == [tids[0]] and mine[0]["assignee"]["login"] == "owner"
    free = world.call("owner", "GET", "/tasks", params={"assignee": "none", "status": "new"}).json()["items"]
    assert [t["id"] for t in free] == [tids[2], tids[1]]
    by_id = world.call("admin", "GET", "/tasks", params={"assignee": world.staff_ids["owner"]}).json()["items"]
    assert [t["id"] for t in by_id] == [tids[0]]
    assert world.call("owner", "GET", "/tasks", params={"type": "delete"}).json()["items"] == []
    assert world.call("owner", "GET", "/tasks", params={"department_id": world.other_dept}).json()["items"] == []
    assert world.call("owner", "GET", "/tasks", params={"assignee": "someone"}).status_code == 422
    assert world.call("owner", "GET", "/tasks", params={"type": "party"}).status_code == 422
    assert world.call("owner", "GET", "/tasks", params={"limit": 500}).status_code == 422


def test_assign_is_won_once_and_the_same_person_again_is_a_no_op(world):
    _, tid = world.manual_task()
    first = world.call("owner", "POST", f"/tasks/{tid}/assign")
    assert first.status_code == 200 and first.json()["status"] == "in_progress"
    assert world.call("owner", "POST", f"/tasks/{tid}/assign").status_code == 200
    second = world.call("owner2", "POST", f"/tasks/{tid}/assign")
    assert second.status_code == 409 and second.json()["detail"] == f"task #{tid} is already assigned to owner"


def test_transfer_clears_the_assignee_and_moves_the_task_out_of_sight(world):
    _, tid = world.manual_task(assign_to="owner")
    moved = world.call("owner", "POST", f"/tasks/{tid}/transfer", json={"department_id": world.other_dept})
    assert moved.status_code == 200
    assert moved.json()["assignee"] is None and moved.json()["department"]["name"] == "Network"
    assert world.call("owner", "GET", f"/tasks/{tid}").status_code == 404
    assert world.call("other", "GET", f"/tasks/{tid}").status_code == 200
    same = world.call("other", "POST", f"/tasks/{tid}/transfer", json={"department_id": world.other_dept})
    assert same.status_code == 409
    missing = world.call("other", "POST", f"/tasks/{tid}/transfer", json={"department_id": 999})
    assert missing.status_code == 422 and missing.json()["detail"][0]["field"] == "department_id"


def test_editing_main_settings_and_closing_activates_the_service(world):
    sid, tid = world.manual_task(assign_to="owner")
    edited = world.call("owner", "PATCH", f"/tasks/{tid}",
                        json={"main_settings": {"ip_address": "192.0.2.7", "password": MASK}})
    assert edited.status_code == 200
    assert edited.json()["main_settings"] == {"domain": "example.com", "password": MASK, "ip_address": "192.0.2.7"}
    bad = world.call("owner", "PATCH", f"/tasks/{tid}", json={"main_settings": {"ip_address": "not-an-ip"}})
    assert bad.status_code == 422 and bad.json()["detail"][0]["field"] == "params.ip_address"
    addons = world.call("owner", "PATCH", f"/tasks/{tid}", json={"addons": {"disk_gb": 20}})
    assert addons.status_code == 409 and "only on change tasks" in addons.json()["detail"]
    closed = world.call("owner", "POST", f"/tasks/{tid}/close")
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    service = world.call("owner", "GET", f"/services/{sid}").json()
    assert service["status"] == "active" and service["params"]["ip_address"] == "192.0.2.7"
    assert service["params"]["password"] == MASK
    assert world.call("owner", "POST", f"/tasks/{tid}/close").status_code == 200  # closing twice: nothing more
    late = world.call("owner2", "POST", f"/tasks/{tid}/assign")
    assert late.status_code == 409 and "already closed" in late.json()["detail"]


def test_change_task_takes_addons(world):
    sid, tid = world.manual_task(assign_to="owner")
    world.call("owner", "POST", f"/tasks/{tid}/close")
    assert world.call("owner", "PATCH", f"/services/{sid}", json={"addons": {"disk_gb": 30}}).status_code == 202
    world.run()
    change = world.task_of(sid)
    world.call("owner", "POST", f"/tasks/{change}/assign")
    form = world.call("owner", "PATCH", f"/tasks/{change}", json={"addons": {"disk_gb": 40}}).json()
    assert form["general"]["type"] == "change" and form["addons"] == {"disk_gb": 40} and form["addons_editable"]
    world.call("owner", "POST", f"/tasks/{change}/close")
    assert world.call("owner", "GET", f"/services/{sid}").json()["addons"] == {"disk_gb": 40}


def test_comments_land_in_the_history(world):
    sid, tid = world.manual_task()
    response = world.call("owner", "POST", f"/tasks/{tid}/comments", json={"text": "client asked for a call"})
    assert response.status_code == 201
    assert response.json()["event"] == "comment" and response.json()["actor"] == "owner"
    history = world.call("owner", "GET", f"/services/{sid}").json()["history"]
    assert history[-1]["message"] == "client asked for a call"
    empty = world.call("owner", "POST", f"/tasks/{tid}/comments", json={"text": ""})
    assert empty.status_code == 422 and empty.json()["detail"][0]["field"] == "text"


def test_retry_runs_the_module_again_and_the_task_closes_itself(world):
    world.fake.plan("open", "fail")
    sid = world.order(world.fake_tariff)
    world.run()
    tid = world.task_of(sid)
    task = world.call("owner", "GET", f"/tasks/{tid}").json()["general"]
    assert task["retryable"] and "refused" in task["error"]
    retried = world.call("owner", "POST", f"/tasks/{tid}/retry")
    assert retried.status_code == 202
    assert world.call("owner", "POST", f"/tasks/{tid}/retry").status_code == 409
    world.run()
    assert world.call("owner", "GET", f"/tasks/{tid}").json()["general"]["status"] == "closed"
    assert world.call("owner", "GET", f"/services/{sid}").json()["status"] == "active"


def test_retry_of_a_manual_task_is_409_and_unknown_tasks_are_404(world):
    _, tid = world.manual_task()
    response = world.call("owner", "POST", f"/tasks/{tid}/retry")
    assert response.status_code == 409 and "nothing to retry" in response.json()["detail"]
    for method, path in (("GET", "/tasks/999"), ("POST", "/tasks/999/assign"), ("POST", "/tasks/999/close")):
        assert world.call("admin", method, path).status_code == 404
