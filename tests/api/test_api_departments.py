"""Departments: where and whether their task alerts go."""

from __future__ import annotations


def test_admin_changes_a_departments_alert_address_and_switch(world):
    dept = world.owner_dept
    changed = world.call("admin", "PATCH", f"/departments/{dept}", json={"email": "support@example.test", "notify": False})
    assert changed.status_code == 200
    assert (changed.json()["email"], changed.json()["notify"]) == ("support@example.test", False)
    cleared = world.call("admin", "PATCH", f"/departments/{dept}", json={"email": None})
    assert cleared.json()["email"] is None and cleared.json()["notify"] is False
    bad = world.call("admin", "PATCH", f"/departments/{dept}", json={"email": "nope"})
    assert bad.status_code == 422 and "email" in str(bad.json()["detail"])
    assert world.call("admin", "PATCH", f"/departments/{dept}", json={"colour": "red"}).status_code == 422
    assert world.call("admin", "PATCH", "/departments/9999", json={"notify": True}).status_code == 404
    assert world.call("owner", "PATCH", f"/departments/{dept}", json={"notify": True}).status_code == 403
    assert world.call("none", "PATCH", f"/departments/{dept}", json={"notify": True}).status_code == 401
