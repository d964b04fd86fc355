"""The operations engine with a fake module: outcomes, retries, tasks, order, leases."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update

from fulfil.db import utcnow
from fulfil.models import Operation


def test_automatic_open_makes_service_active_with_assigned_settings(fake):
    fake.fake.done_params = {"ip": "192.0.2.10"}
    sid = fake.order(params={"note": "x"})
    assert fake.service(sid)["status"] == "ordered"
    fake.run()
    svc = fake.service(sid)
    assert svc["status"] == "active"
    assert svc["params"] == {"note": "x", "ip": "192.0.2.10"}
    assert svc["remote_id"] == f"fake-{sid}"
    assert fake.tasks(sid) == []
    events = [h["event"] for h in fake.history(sid)]
    assert events[:2] == ["service.ordered", "operation.requested"]
    assert "operation.done" in events


def test_transient_errors_are_retried_then_succeed(fake):
    fake.fake.plan("open", "transient", "transient")
    sid = fake.order()
    fake.run()
    assert fake.service(sid)["status"] == "active"
    [op] = fake.operations(sid)
    assert op["attempts"] == 3 and op["state"] == "done"
    retries = [h for h in fake.history(sid) if h["event"] == "operation.retry"]
    assert len(retries) == 2
    assert "attempt 1 of 3" in retries[0]["message"]
    # one idempotency key for every attempt
    assert len({call[2] for call in fake.fake.calls}) == 1


def test_exhausted_retries_become_a_retryable_setup_task(fake):
    fake.fake.plan("open", "transient", "transient", "transient")
    sid = fake.order()
    fake.run()
    [task] = fake.tasks(sid)
    assert task["type"] == "setup" and task["status"] == "new"
    assert task["retryable"] is True
    assert "fake panel unavailable during open" in task["error"]
    assert "gave up after 3 attempts" in task["error"]
    assert task["department_id"] == fake.department_id
    assert fake.service(sid)["status"] == "processing"
    assert fake.operations(sid)[0]["state"] == "waiting_task"


def test_permanent_error_becomes_a_task_at_once(fake):
    fake.fake.plan("open", "fail")
    sid = fake.order()
    fake.run()
    assert len(fake.fake.calls) == 1
    [task] = fake.tasks(sid)
    assert task["error"] == "fake panel refused the open"
    assert "could not open this service automatically" in task["description"]


def test_crash_is_wrapped_with_traceback_only_in_history(fake):
    fake.fake.plan("open", "crash")
    sid = fake.order()
    fake.run()
    [task] = fake.tasks(sid)
    assert "RuntimeError: fake module bug in open" in task["error"]
    assert "Traceback" not in task["description"]
    failed = [h for h in fake.history(sid) if h["event"] == "operation.failed"]
    assert "Traceback (most recent call last)" in failed[0]["detail"]


def test_a_hook_returning_nothing_becomes_a_task(fake):
    fake.fake.plan("open", "none")
    sid = fake.order()
    fake.run()
    [task] = fake.tasks(sid)
    assert "returned NoneType" in task["error"] or "returned nothing" in task["error"]


def test_hanging_module_times_out_into_a_task(module_harness):
    from fulfil.testing import FakeModule

    hanging = FakeModule(timeout=0.5).plan("open", "hang")
    h = module_harness("hanging", hanging)
    sid = h.order()
    h.run()
    hanging.release()
    [task] = h.tasks(sid)
    assert "did not finish the open within 0.5 seconds (timeout)" in task["error"]
    assert h.service(sid)["status"] == "processing"


def test_manual_work_request_creates_a_task_without_retry(fake):
    fake.fake.plan("suspend", "manual")
    sid = fake.order()
    fake.run()
    fake.suspend(sid)
    fake.run()
    [task] = fake.tasks(sid)
    assert task["type"] == "suspend" and task["retryable"] is False
    assert task["description"] == "fake module asks for manual suspend"
    fake.close_task(task["id"])
    assert fake.service(sid)["status"] == "suspended"


def test_retry_from_task_succeeds_and_task_closes_itself(fake):
    fake.fake.plan("open", "fail")
    sid = fake.order()
    fake.run()
    [task] = fake.tasks(sid)
    fake.retry_task(task["id"])
    fake.run()
    [task] = fake.tasks(sid)
    assert task["status"] == "closed"
    assert fake.service(sid)["status"] == "active"
    assert any("closed automatically" in h["message"] for h in fake.history(sid))


def test_retry_from_task_that_fails_again_keeps_the_task_open(fake):
    fake.fake.plan("open", "fail", "transient")
    sid = fake.order()
    fake.run()
    [task] = fake.tasks(sid)
    fake.retry_task(task["id"])
    fake.run()
    [task] = fake.tasks(sid)
    assert task["status"] == "new"
    assert task["error"] == "fake panel unavailable during open"
    assert len(fake.fake.calls) == 2  # a retry from a task is one attempt, not a new back-off series


def test_operations_on_one_service_run_in_request_order(fake):
    sid = fake.order()
    fake.run()
    fake.suspend(sid)
    fake.resume(sid)
    fake.edit(sid, addons={"disk_gb": 20})
    fake.delete(sid)
    fake.run()
    kinds = [c[0] for c in fake.fake.calls]
    assert kinds == ["open", "suspend", "resume", "edit", "close"]
    assert fake.service(sid)["status"] == "deleted"


def test_a_task_blocks_later_operations_of_its_service_only(fake):
    fake.fake.plan("open", "fail")
    blocked = fake.order()
    free = fake.order()
    fake.run()
    fake.suspend(free)
    fake.delete(blocked)
    fake.run()
    assert fake.service(free)["status"] == "suspended"
    assert [o["state"] for o in fake.operations(blocked)] == ["waiting_task", "pending"]
    [task] = fake.tasks(blocked)
    fake.close_task(task["id"])
    fake.run()
    assert fake.service(blocked)["status"] == "deleted"


def test_missing_module_becomes_a_task_saying_so(module_harness, fulfil_app):
    from fulfil.testing import FakeModule

    h = module_harness("vanishing", FakeModule())
    fulfil_app.registry.unregister_module("vanishing")
    sid = h.order()
    h.run()
    [task] = h.tasks(sid)
    assert task["error"] == "module vanishing is not installed"
    assert task["retryable"] is True


def test_expired_lease_is_taken_over_and_the_stale_worker_changes_nothing(fake, fulfil_app):
    sid = fake.order()
    stale = fulfil_app.worker(name="stale", lease_seconds=30)
    [claimed] = stale.claim(1)
    # the stale worker stops renewing: its lease runs out
    with fulfil_app.session() as s:
        s.execute(update(Operation).values(lease_expires=utcnow() - timedelta(seconds=1)))
    fresh = fulfil_app.worker(name="fresh")
    [taken] = fresh.claim(1)
    assert taken.op_id == claimed.op_id and taken.key == claimed.key
    assert taken.attempt == 2
    assert fresh.finish(taken, fresh.execute(taken)) is True
    # the stale worker wakes up and reports a failure: discarded
    from fulfil.module import Failed

    assert stale.finish(claimed, Failed("late")) is False
    assert fake.service(sid)["status"] == "active"
    assert fake.tasks(sid) == []


def test_lease_is_renewed_while_the_module_runs(fake, fulfil_app):
    fake.order()
    worker = fulfil_app.worker(name="w", lease_seconds=30)
    [claimed] = worker.claim(1)
    with fulfil_app.session() as s:
        s.execute(update(Operation).values(lease_expires=utcnow() + timedelta(seconds=1)))
    assert worker.renew_leases() == 1
    with fulfil_app.session(read_only=True) as s:
        op = s.get(Operation, claimed.op_id)
        assert op.lease_expires > utcnow() + timedelta(seconds=20)


def test_threaded_worker_runs_operations_and_stops_cleanly(fake, fulfil_app):
    import time

    ids = [fake.order() for _ in range(10)]
    worker = fulfil_app.worker(concurrency=3, poll_interval=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if all(fake.service(i)["status"] == "active" for i in ids):
                break
            time.sleep(0.05)
    finally:
        worker.stop()
    assert all(fake.service(i)["status"] == "active" for i in ids)


def test_an_operation_that_keeps_losing_its_worker_becomes_a_task(fake, fulfil_app):
    sid = fake.order()
    for _ in range(5):  # max_attempts 3 + 2 take-overs
        [claimed] = fulfil_app.worker().claim(1)
        with fulfil_app.session() as s:
            s.execute(update(Operation).values(lease_expires=utcnow() - timedelta(seconds=1)))
    fake.run()
    [task] = fake.tasks(sid)
    assert "each time the worker running it stopped or lost its lease" in task["error"]
    assert fake.fake.calls == []


def test_threaded_worker_times_out_a_hanging_module_and_keeps_working(module_harness, fulfil_app):
    import time

    from fulfil.testing import FakeModule

    hanging = FakeModule(timeout=0.5).plan("open", "hang")
    h = module_harness("hanging", hanging)
    stuck, fine = h.order(), h.order()
    worker = fulfil_app.worker(concurrency=1, poll_interval=0.05)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (h.tasks(stuck) and h.service(fine)["status"] == "active"):
            time.sleep(0.05)
    finally:
        hanging.release()
        worker.stop()
    [task] = h.tasks(stuck)
    assert "within 0.5 seconds (timeout)" in task["error"]
    assert h.service(fine)["status"] == "active"


def test_a_disabled_processing_module_turns_operations_into_tasks(fake, fulfil_app):
    from fulfil.services import catalog

    with fulfil_app.session() as s:
        catalog.update_processing_module(session=s, processing_module_id=fake.processing_module_id, enabled=False)
    sid = fake.order()
    fake.run()
    [task] = fake.tasks(sid)
    assert task["error"].startswith("processing module fake #1 is disabled")
    assert fake.fake.calls == []
    with fulfil_app.session() as s:
        catalog.update_processing_module(session=s, processing_module_id=fake.processing_module_id, enabled=True)
    fake.retry_task(task["id"])
    fake.run()
    assert fake.service(sid)["status"] == "active"


def test_stopping_a_worker_hands_back_operations_it_claimed_but_never_started(module_harness, fulfil_app):
    import time

    from fulfil.testing import FakeModule

    slow = FakeModule(delay=0.3)
    h = module_harness("slow", slow)
    ids = [h.order() for _ in range(12)]
    worker = fulfil_app.worker(concurrency=1, poll_interval=0.05)
    worker.start()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not slow.calls:
        time.sleep(0.01)
    worker.stop()
    states = [h.operations(i)[0]["state"] for i in ids]
    assert "running" not in states, "nothing is left holding a lease"
    assert states.count("pending") >= 8
    h.run()
    assert all(h.service(i)["status"] == "active" for i in ids)
    assert len(slow.calls) == 12, "each ran exactly once"
