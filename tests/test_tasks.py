"""Tasks as staff work them, on the real Manual Setup module."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import select

from fulfil.errors import Conflict, Forbidden, InvalidInput, NotFound
from fulfil.models import HistoryEntry, Staff
from fulfil.services import catalog, tasks


@pytest.fixture
def people(manual, fulfil_app):
    """ops1, ops2 in the module's department; net1 in another; boss is an admin."""
    with fulfil_app.session() as s:
        other = catalog.create_department(session=s, name="Network")
        ids = {}
        for login, depts, admin in (
            ("ops1", [manual.department_id], False),
            ("ops2", [manual.department_id], False),
            ("net1", [other.id], False),
            ("boss", [], True),
        ):
            staff, _ = catalog.create_staff(session=s, login=login, department_ids=depts, is_admin=admin)
            ids[login] = staff.id
        ids["network"] = other.id
    return ids


def act(app, login, fn, **kwargs):
    with app.session() as s:
        staff = s.scalar(select(Staff).where(Staff.login == login))
        return fn(session=s, staff=staff, **kwargs)


@pytest.fixture
def setup_task(manual, people):
    sid = manual.order(params={"domain": "example.com"})
    manual.run()
    [task] = manual.tasks(sid)
    return task["id"], sid


def test_manual_setup_order_creates_a_setup_task_with_generated_texts(manual, fulfil_app, people, setup_task):
    task_id, sid = setup_task
    with fulfil_app.session() as s:
        staff = s.get(Staff, people["ops1"])
        form = tasks.task_form(session=s, staff=staff, task_id=task_id)
        assert form.general["type"] == "setup"
        assert form.general["status"] == "new"
        assert "Set up the service in the control panel" in form.general["description"]
        assert "domain: example.com" in form.general["description"]
        assert "makes the service active" in form.general["close_actions"]
        assert "Client: Test Client <client@example.test>" in form.general["service_description"]
        assert form.main_settings == {"domain": "example.com"}
        assert form.addons_editable is False and "only on change tasks" in form.addons_reason
        assert [h.event for h in form.history][-1] == "task.created"


def test_other_departments_do_not_see_the_task(fulfil_app, people, setup_task):
    task_id, _ = setup_task
    with pytest.raises(NotFound):
        act(fulfil_app, "net1", tasks.get_task, task_id=task_id)
    items, _ = act(fulfil_app, "net1", tasks.list_tasks)
    assert items == []
    items, _ = act(fulfil_app, "boss", tasks.list_tasks)
    assert [t.id for t in items] == [task_id]


def test_assign_to_me_is_won_by_exactly_one_of_twenty(fulfil_app, people, setup_task):
    task_id, _ = setup_task
    with fulfil_app.session() as s:
        logins = []
        for i in range(20):
            staff, _ = catalog.create_staff(session=s, login=f"racer{i}", department_ids=[s.get(Staff, people["ops1"]).departments[0].id])
            logins.append(staff.login)
    barrier = threading.Barrier(20)
    outcomes: dict[str, str] = {}

    def press(login):
        barrier.wait()
        try:
            act(fulfil_app, login, tasks.assign_to_me, task_id=task_id)
            outcomes[login] = "won"
        except Conflict as exc:
            outcomes[login] = exc.message

    threads = [threading.Thread(target=press, args=(login,)) for login in logins]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [login for login, o in outcomes.items() if o == "won"]
    assert len(winners) == 1
    assert all(f"already assigned to {winners[0]}" in o for login, o in outcomes.items() if o != "won")
    task = act(fulfil_app, "boss", tasks.get_task, task_id=task_id)
    assert task.assignee.login == winners[0] and task.status == "in_progress"


def test_assigning_again_to_the_same_person_is_a_no_op(fulfil_app, people, setup_task):
    task_id, sid = setup_task
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    with fulfil_app.session() as s:
        assigned = s.scalars(select(HistoryEntry).where(HistoryEntry.event == "task.assigned")).all()
        assert len(assigned) == 1


def test_transfer_moves_the_task_and_clears_the_assignee(fulfil_app, people, setup_task):
    task_id, _ = setup_task
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    task = act(fulfil_app, "ops1", tasks.transfer, task_id=task_id, department_id=people["network"])
    assert task.department_id == people["network"] and task.assignee_id is None and task.status == "new"
    with pytest.raises(NotFound):
        act(fulfil_app, "ops1", tasks.get_task, task_id=task_id)
    assert act(fulfil_app, "net1", tasks.get_task, task_id=task_id).id == task_id
    with pytest.raises(InvalidInput) as err:
        act(fulfil_app, "net1", tasks.transfer, task_id=task_id, department_id=9999)
    assert err.value.errors[0][0] == "department_id"


def test_main_settings_are_validated_naming_the_field(fulfil_app, people, setup_task):
    task_id, _ = setup_task
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    with pytest.raises(InvalidInput) as err:
        act(fulfil_app, "ops1", tasks.update_task, task_id=task_id, main_settings={"ip_address": "not-an-ip"})
    assert err.value.errors[0][0] == "params.ip_address"
    with pytest.raises(InvalidInput) as err:
        act(fulfil_app, "ops1", tasks.update_task, task_id=task_id, main_settings={"colour": "red"})
    assert err.value.errors == [("params.colour", "unknown field")]
    form = act(fulfil_app, "ops1", tasks.task_form, task_id=task_id)
    assert form.main_settings == {"domain": "example.com"}


def test_add_ons_are_editable_only_on_change_tasks(fulfil_app, people, setup_task):
    task_id, _ = setup_task
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    with pytest.raises(Conflict, match="only on change tasks"):
        act(fulfil_app, "ops1", tasks.update_task, task_id=task_id, addons={"disk_gb": 5})


def test_only_the_assignee_or_an_admin_closes(fulfil_app, people, setup_task):
    task_id, _ = setup_task
    with pytest.raises(Forbidden, match="assign task"):
        act(fulfil_app, "ops1", tasks.close, task_id=task_id)
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    with pytest.raises(Forbidden, match="only ops1"):
        act(fulfil_app, "ops2", tasks.close, task_id=task_id)
    act(fulfil_app, "boss", tasks.close, task_id=task_id)


def test_closing_setup_task_activates_service_with_main_settings(manual, fulfil_app, people, setup_task):
    task_id, sid = setup_task
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    act(fulfil_app, "ops1", tasks.update_task, task_id=task_id,
        main_settings={"ip_address": "192.0.2.7", "password": "Sup3r-secret"})
    act(fulfil_app, "ops1", tasks.add_comment, task_id=task_id, text="created the account by hand")
    task = act(fulfil_app, "ops1", tasks.close, task_id=task_id)
    assert task.status == "closed"
    svc = manual.service(sid)
    assert svc["status"] == "active"
    assert svc["params"] == {"domain": "example.com", "ip_address": "192.0.2.7", "password": "Sup3r-secret"}
    # closing twice does nothing the second time
    events_before = len(manual.history(sid))
    act(fulfil_app, "ops1", tasks.close, task_id=task_id)
    assert len(manual.history(sid)) == events_before
    history = manual.history(sid)
    assert any(h["event"] == "comment" and h["message"] == "created the account by hand" for h in history)
    assert [h["event"] for h in history][-1] == "service.status"
    # the secret reached the service, and nowhere in the history
    assert not any("Sup3r-secret" in (h["message"] + (h["detail"] or "")) for h in history)


def test_secrets_are_masked_in_the_form_until_revealed_and_reveal_is_recorded(manual, fulfil_app, people, setup_task):
    task_id, sid = setup_task
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=task_id)
    act(fulfil_app, "ops1", tasks.update_task, task_id=task_id, main_settings={"password": "Sup3r-secret"})
    assert act(fulfil_app, "ops1", tasks.task_form, task_id=task_id).main_settings["password"] == "********"
    # a form sends the mask back unchanged: the secret stays
    act(fulfil_app, "ops1", tasks.update_task, task_id=task_id, main_settings={"password": "********", "hostname": "web1"})
    revealed = act(fulfil_app, "ops1", tasks.task_form, task_id=task_id, reveal_secrets=True)
    assert revealed.main_settings["password"] == "Sup3r-secret"
    assert any(h["event"] == "task.secrets_shown" and "ops1" in h["message"] for h in manual.history(sid))


def test_change_task_applies_staged_add_ons_and_params_on_close(module_harness, fulfil_app, people):
    h = module_harness("manual", addons={"disk_gb": {"unit": "GB", "min": 10, "max": 500, "default": 10}})
    sid = h.order(params={"domain": "example.org"})
    h.run()
    h.close_task(h.tasks(sid)[0]["id"])
    h.edit(sid, addons={"disk_gb": 50}, params={"hostname": "web2"})
    h.run()
    change = [t for t in h.tasks(sid) if t["type"] == "change"][0]
    assert "add-on disk_gb: 10 → 50" in change["description"]
    assert change["addons"] == {"disk_gb": 50}
    act(fulfil_app, "boss", tasks.update_task, task_id=change["id"], addons={"disk_gb": 60})
    with pytest.raises(InvalidInput) as err:
        act(fulfil_app, "boss", tasks.update_task, task_id=change["id"], addons={"disk_gb": 9999})
    assert err.value.errors == [("addons.disk_gb", "must be between 10 and 500")]
    assert h.service(sid)["addons"] == {"disk_gb": 10}
    act(fulfil_app, "boss", tasks.close, task_id=change["id"])
    svc = h.service(sid)
    assert svc["addons"] == {"disk_gb": 60}
    assert svc["params"]["hostname"] == "web2"
    assert svc["status"] == "active"


def test_retry_is_offered_only_for_module_failures(fulfil_app, people, setup_task):
    task_id, _ = setup_task
    with pytest.raises(Conflict, match="nothing to retry"):
        act(fulfil_app, "ops1", tasks.retry, task_id=task_id)


def test_task_list_filters_and_pages_with_a_cursor(manual, fulfil_app, people):
    for i in range(7):
        manual.order(params={"domain": f"d{i}.example"})
    manual.run()
    page1, cursor = act(fulfil_app, "ops1", tasks.list_tasks, limit=3)
    page2, cursor2 = act(fulfil_app, "ops1", tasks.list_tasks, limit=3, cursor=cursor)
    page3, cursor3 = act(fulfil_app, "ops1", tasks.list_tasks, limit=3, cursor=cursor2)
    ids = [t.id for t in page1 + page2 + page3]
    assert ids == sorted(ids, reverse=True) and len(ids) == 7 and cursor3 is None
    act(fulfil_app, "ops1", tasks.assign_to_me, task_id=ids[0])
    mine, _ = act(fulfil_app, "ops1", tasks.list_tasks, assignee="me")
    assert [t.id for t in mine] == [ids[0]]
    unassigned, _ = act(fulfil_app, "ops1", tasks.list_tasks, assignee="none", status="new")
    assert len(unassigned) == 6
    with pytest.raises(InvalidInput) as err:
        act(fulfil_app, "ops1", tasks.list_tasks, cursor="garbage!")
    assert err.value.errors[0][0] == "cursor"
    with pytest.raises(InvalidInput):
        act(fulfil_app, "ops1", tasks.list_tasks, status="sleeping")
