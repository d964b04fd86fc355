"""Services over the API: order (with Idempotency-Key), show, list, change, suspend,
resume, delete; each change answered 202 and carried out by the worker."""

from __future__ import annotations

from sqlalchemy import func, select

from fulfil.models import Operation
from fulfil.secrets import MASK


def _order(world, role="admin", headers=None, **body):
    payload = {"client_id": world.client_id, "tariff_id": world.manual_tariff} | body
    h = world.headers(role) | (headers or {})
    return world.client.post("/api/v1/services", json=payload, headers=h)


def _operations(world) -> int:
    with world.fulfil.session(read_only=True) as s:
        return s.scalar(select(func.count()).select_from(Operation))


def test_order_is_accepted_with_the_service_and_its_pending_open_operation(world):
    response = _order(world, params={"domain": "example.com", "password": "hunter2-hunter2"}, addons={"disk_gb": 20})
    assert response.status_code == 202, response.text
    service = response.json()
    assert service["status"] == "ordered" and service["target_status"] == "active"
    assert service["params"] == {"domain": "example.com", "password": MASK}
    assert service["addons"] == {"disk_gb": 20}
    assert service["pending_operation"]["kind"] == "open" and service["pending_operation"]["state"] == "pending"
    assert "hunter2" not in response.text


def test_a_repeated_order_with_the_same_idempotency_key_returns_the_same_service(world):
    first = _order(world, headers={"Idempotency-Key": "order-42"}, params={"domain": "a.example"})
    again = _order(world, headers={"Idempotency-Key": "order-42"}, params={"domain": "a.example"})
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert _operations(world) == 1
    other = _order(world, headers={"Idempotency-Key": "order-42"}, tariff_id=world.fake_tariff)
    assert other.status_code == 409 and "different order" in other.json()["detail"]
    assert _operations(world) == 1


def test_concurrent_orders_with_one_idempotency_key_make_one_service(world):
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(
            lambda _: _order(world, headers={"Idempotency-Key": "race-1"}, params={"domain": "r.example"}), range(6)
        ))
    assert {r.status_code for r in responses} == {202}
    assert len({r.json()["id"] for r in responses}) == 1
    assert _operations(world) == 1


def test_bad_order_input_is_422_naming_each_field_and_changes_nothing(world):
    response = _order(world, params={"domian": "typo.example"}, addons={"disk_gb": 1000, "ram": 2})
    assert response.status_code == 422
    fields = [e["field"] for e in response.json()["detail"]]
    assert fields == ["params.domian"]
    response = _order(world, addons={"disk_gb": 1000, "ram": 2})
    assert sorted(e["field"] for e in response.json()["detail"]) == ["addons.disk_gb", "addons.ram"]
    assert _order(world, client_id=999).json()["detail"][0]["field"] == "client_id"
    assert _order(world, tariff_id=0).json()["detail"][0]["field"] == "tariff_id"
    naive = _order(world, expires_at="2027-01-01T00:00:00")
    assert naive.status_code == 422 and naive.json()["detail"][0]["field"] == "expires_at"
    edge = _order(world, expires_at="9999-12-31T23:59:59-23:00")
    assert edge.status_code == 422 and edge.json()["detail"][0]["field"] == "expires_at"
    assert _operations(world) == 0


def test_service_detail_has_masked_params_pending_operation_and_history(world):
    sid, _ = world.manual_task()
    detail = world.call("admin", "GET", f"/services/{sid}").json()
    assert detail["params"]["password"] == MASK
    assert detail["pending_operation"]["kind"] == "open" and detail["pending_operation"]["state"] == "waiting_task"
    events = [h["event"] for h in detail["history"]]
    assert events[:2] == ["service.ordered", "operation.requested"] and "task.created" in events
    assert world.call("admin", "GET", "/services/999").status_code == 404


def test_services_are_listed_newest_first_with_filters_and_a_cursor(world):
    ids = [world.order(world.fake_tariff) for _ in range(3)]
    world.run()
    manual = world.order(world.manual_tariff)
    page = world.call("admin", "GET", "/services", params={"limit": 2}).json()
    assert [s["id"] for s in page["items"]] == [manual, ids[2]]
    rest = world.call("admin", "GET", "/services", params={"limit": 2, "cursor": page["next_cursor"]}).json()
    assert [s["id"] for s in rest["items"]] == [ids[1], ids[0]] and rest["next_cursor"] is None
    active = world.call("admin", "GET", "/services", params={"status": "active"}).json()["items"]
    assert sorted(s["id"] for s in active) == ids
    by_tariff = world.call("admin", "GET", "/services", params={"tariff_id": world.manual_tariff}).json()["items"]
    assert [s["id"] for s in by_tariff] == [manual]
    assert world.call("admin", "GET", "/services", params={"status": "gone"}).status_code == 422


def test_suspend_resume_edit_delete_are_202_and_the_worker_carries_them_out(world):
    sid = world.active_service()
    suspended = world.call("admin", "POST", f"/services/{sid}/suspend")
    assert suspended.status_code == 202 and suspended.json()["target_status"] == "suspended"
    assert world.call("admin", "POST", f"/services/{sid}/suspend").status_code == 409
    world.run()
    assert world.call("admin", "GET", f"/services/{sid}").json()["status"] == "suspended"
    assert world.call("admin", "POST", f"/services/{sid}/resume").status_code == 202
    edited = world.call("admin", "PATCH", f"/services/{sid}", json={"addons": {"disk_gb": 50}})
    assert edited.status_code == 202
    world.run()
    service = world.call("admin", "GET", f"/services/{sid}").json()
    assert service["status"] == "active" and service["addons"] == {"disk_gb": 50}
    deleted = world.call("admin", "DELETE", f"/services/{sid}")
    assert deleted.status_code == 202 and deleted.json()["target_status"] == "deleted"
    world.run()
    assert world.call("admin", "GET", f"/services/{sid}").json()["status"] == "deleted"
    refused = world.call("admin", "POST", f"/services/{sid}/resume")
    assert refused.status_code == 409 and "cannot be resumed" in refused.json()["detail"]


def test_operations_not_allowed_in_the_status_are_409_and_empty_edits_422(world):
    sid = world.order(world.manual_tariff)
    assert world.call("admin", "POST", f"/services/{sid}/resume").status_code == 409
    active = world.active_service()
    nothing = world.call("admin", "PATCH", f"/services/{active}", json={})
    assert nothing.status_code == 422 and nothing.json()["detail"][0]["field"] == "body"
    unknown = world.call("admin", "PATCH", f"/services/{active}", json={"status": "active"})
    assert unknown.status_code == 422 and unknown.json()["detail"][0] == {
        "loc": ["body", "status"], "field": "status", "msg": "unknown field", "type": "extra_forbidden"
    }
    other_module = world.call("admin", "PATCH", f"/services/{active}", json={"tariff_id": world.manual_tariff})
    assert other_module.status_code == 422 and other_module.json()["detail"][0]["field"] == "tariff_id"
