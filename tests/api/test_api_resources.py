"""Pool resources: staff see what is taken and return wiped servers to the pool."""

from __future__ import annotations

from fulfil.db import utcnow
from fulfil.models import ResourceClaim


def test_admin_lists_taken_resources_and_frees_a_wiped_one(world):
    sid = world.active_service()
    with world.fulfil.session() as s:
        s.add(ResourceClaim(pool="dedicated", name="srv-1", state="needs_wipe", service_id=None, claimed_at=utcnow()))
        s.add(ResourceClaim(pool="dedicated", name="srv-2", state="in_use", service_id=sid, claimed_at=utcnow()))
    listed = world.call("admin", "GET", "/resources", params={"pool": "dedicated"})
    assert listed.status_code == 200
    assert [(r["name"], r["state"], r["service_id"]) for r in listed.json()["items"]] == [
        ("srv-1", "needs_wipe", None), ("srv-2", "in_use", sid)
    ]
    assert world.call("admin", "POST", "/resources/free", json={"pool": "dedicated", "name": "srv-1"}).status_code == 204
    busy = world.call("admin", "POST", "/resources/free", json={"pool": "dedicated", "name": "srv-2"})
    assert busy.status_code == 409 and f"in use by service #{sid}" in busy.json()["detail"]
    assert world.call("admin", "POST", "/resources/free", json={"pool": "dedicated", "name": "nope"}).status_code == 404
    assert [r["name"] for r in world.call("admin", "GET", "/resources").json()["items"]] == ["srv-2"]
    assert world.call("owner", "GET", "/resources").status_code == 403
    assert world.call("none", "POST", "/resources/free", json={"pool": "dedicated", "name": "srv-2"}).status_code == 401
