"""Ordering, editing, suspending, resuming and deleting services."""

from __future__ import annotations

import threading

import pytest
from sqlalchemy import func, select

from fulfil.errors import Conflict, InvalidInput
from fulfil.models import HistoryEntry, Operation
from fulfil.services import lifecycle


def count_ops(app) -> int:
    with app.session(read_only=True) as s:
        return s.scalar(select(func.count()).select_from(Operation))


def test_suspend_twice_is_refused_and_changes_nothing(fake, fulfil_app):
    sid = fake.order()
    fake.run()
    fake.suspend(sid)
    before = count_ops(fulfil_app)
    with pytest.raises(Conflict, match="will be .* suspended: it cannot be suspended"):
        fake.suspend(sid)
    fake.run()
    with pytest.raises(Conflict, match=f"service #{sid} is suspended: it cannot be suspended"):
        fake.suspend(sid)
    assert count_ops(fulfil_app) == before


def test_resume_of_deleted_service_is_refused(fake):
    sid = fake.order()
    fake.run()
    fake.delete(sid)
    fake.run()
    assert fake.service(sid)["status"] == "deleted"
    for action in (fake.resume, fake.suspend, fake.delete):
        with pytest.raises(Conflict, match="is deleted"):
            action(sid)
    with pytest.raises(Conflict):
        fake.edit(sid, addons={"disk_gb": 20})


def test_resume_of_active_service_is_refused(fake):
    sid = fake.order()
    with pytest.raises(Conflict, match="cannot be resumed"):
        fake.resume(sid)


def test_two_concurrent_suspends_only_one_is_queued(fake, fulfil_app):
    sid = fake.order()
    fake.run()
    barrier = threading.Barrier(8)
    results = []

    def press():
        barrier.wait()
        try:
            fake.suspend(sid)
            results.append("ok")
        except Conflict:
            results.append("conflict")

    threads = [threading.Thread(target=press) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["conflict"] * 7 + ["ok"]
    assert [o["kind"] for o in fake.operations(sid)] == ["open", "suspend"]


def test_order_validates_params_with_the_module_model(manual, fulfil_app):
    with pytest.raises(InvalidInput) as err:
        manual.order(params={"ip_address": "999.1.1.1", "colour": "red"})
    fields = dict(err.value.errors)
    assert set(fields) == {"params.ip_address", "params.colour"}
    assert count_ops(fulfil_app) == 0


def test_order_validates_add_ons_against_the_tariff(fake, fulfil_app):
    with pytest.raises(InvalidInput) as err:
        fake.order(addons={"disk_gb": 5000, "gpus": 1})
    assert dict(err.value.errors) == {
        "addons.disk_gb": "must be between 10 and 100",
        "addons.gpus": "not an add-on of tariff plan fake tariff #1",
    }
    sid = fake.order()
    assert fake.service(sid)["addons"] == {"disk_gb": 10}


def test_order_with_unknown_client_or_tariff_names_the_field(fake, fulfil_app):
    with fulfil_app.session() as s:
        with pytest.raises(InvalidInput) as err:
            lifecycle.order_service(session=s, client_id=999, tariff_id=fake.tariff_id)
        assert err.value.errors[0][0] == "client_id"
        with pytest.raises(InvalidInput) as err:
            lifecycle.order_service(session=s, client_id=fake.client_id, tariff_id=999)
        assert err.value.errors[0][0] == "tariff_id"


def test_repeated_order_with_the_same_idempotency_key_starts_nothing_new(fake, fulfil_app):
    def order():
        with fulfil_app.session() as s:
            return lifecycle.order_service(
                session=s, client_id=fake.client_id, tariff_id=fake.tariff_id, idempotency_key="order-42"
            ).id

    first, second = order(), order()
    assert first == second
    assert count_ops(fulfil_app) == 1


def test_edit_with_nothing_changed_is_refused(fake):
    sid = fake.order()
    fake.run()
    with pytest.raises(InvalidInput, match="nothing to change"):
        fake.edit(sid, addons={"disk_gb": 10})


def test_automatic_edit_applies_changes_and_keeps_status(fake):
    sid = fake.order(params={"plan": "small"})
    fake.run()
    fake.suspend(sid)
    fake.run()
    fake.edit(sid, params={"plan": "large"}, addons={"disk_gb": 40})
    fake.run()
    svc = fake.service(sid)
    assert svc["params"]["plan"] == "large" and svc["addons"] == {"disk_gb": 40}
    assert svc["status"] == "suspended"


def test_secret_params_never_reach_the_history(fake, fulfil_app):
    sid = fake.order(params={"password": "hunter2-secret"})
    fake.run()
    fake.edit(sid, params={"password": "n3w-secret"})
    fake.run()
    assert fake.service(sid)["params"]["password"] == "n3w-secret"
    with fulfil_app.session(read_only=True) as s:
        texts = [f"{h.message} {h.detail or ''}" for h in s.scalars(select(HistoryEntry))]
    assert not any("secret" in t for t in texts)
    with fulfil_app.session(read_only=True) as s:
        svc = lifecycle.get_service(session=s, service_id=sid)
        assert lifecycle.masked_params(s, svc)["password"] == "********"
