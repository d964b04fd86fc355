"""p50/p95 of GET /api/v1/tasks over a big task table (not part of the test run).

    python bench/tasks_list.py                      # SQLite (a temporary file)
    python bench/tasks_list.py postgresql://root@127.0.0.1:5432/postgres
                                                    # and PostgreSQL (a database made
                                                    # and dropped on that server)

Seeds 100,000 tasks in 8 departments (with their services and operations) and
1,000,000 history rows with SQLAlchemy Core bulk inserts, starts the real
`fulfil serve --no-worker` on it and times requests over HTTP (keep-alive), so
HTTP, auth, the query and JSON rendering are all in the figure: the first page,
a deep page reached by cursor, and filtered pages, as an admin and as a
department's staff member. Target: p95 ≤ 25 ms.
"""

from __future__ import annotations

import argparse
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy import func, insert, select

from fulfil.app import Fulfil
from fulfil.db import utcnow
from fulfil.models import HistoryEntry, Operation, Service, Task
from fulfil.plugins import ModuleRegistry
from fulfil.services import catalog
from fulfil.services.tasks import encode_cursor

TARGET_P95_MS = 25.0
DEPARTMENTS = 8
CHUNK = 10_000


def seed(fulfil: Fulfil, n_tasks: int, n_history: int) -> None:
    rnd = random.Random(42)
    now = utcnow()
    with fulfil.session() as s:
        depts = [catalog.create_department(session=s, name=f"Department {i + 1}") for i in range(DEPARTMENTS)]
        catalog.create_staff(session=s, login="admin", is_admin=True, token="bench-admin")
        staff = [
            catalog.create_staff(session=s, login=f"staff{i + 1}", department_ids=[d.id], token=f"bench-staff-{i + 1}")[0]
            for i, d in enumerate(depts)
        ]
        client = catalog.create_client(session=s, name="Bench Client", email="bench@example.test")
        tariffs = []
        for d in depts:
            pm = catalog.create_processing_module(session=s, name=f"Manual {d.name}", plugin="manual", department_id=d.id)
            tariffs.append(catalog.create_tariff(session=s, name=f"Hosting {d.name}", service_type="hosting",
                                                 processing_module_id=pm.id))
        dept_ids, staff_by_dept = [d.id for d in depts], {m.departments[0].id: m.id for m in staff}
        tariff_of_dept, client_id = {t.processing_module.department_id: t.id for t in tariffs}, client.id

    n_services = n_tasks // 2  # two tasks (setup, then a change) per service
    service_dept = [dept_ids[i % DEPARTMENTS] for i in range(n_services)]
    with fulfil.engine.begin() as conn:
        def bulk(table, rows):
            for i in range(0, len(rows), CHUNK):
                conn.execute(insert(table), rows[i:i + CHUNK])

        bulk(Service.__table__, [
            {"id": i + 1, "client_id": client_id, "tariff_id": tariff_of_dept[service_dept[i]], "status": "active",
             "target_status": "active", "params": {"domain": f"s{i + 1}.example"}, "addons": {}, "version": 1,
             "created_at": now, "updated_at": now}
            for i in range(n_services)
        ])
        ops, tasks = [], []
        for t in range(n_tasks):
            sid = t // 2 + 1
            kind = "open" if t % 2 == 0 else "edit"
            roll = rnd.random()
            status = "closed" if roll < 0.7 else ("new" if roll < 0.9 else "in_progress")
            created = now - timedelta(minutes=n_tasks - t)
            ops.append({"id": t + 1, "key": f"bench-{t + 1}", "service_id": sid, "kind": kind, "payload": {},
                        "state": "done" if status == "closed" else "waiting_task", "attempts": 1,
                        "run_after": created, "created_at": created})
            dept = service_dept[sid - 1]
            tasks.append({
                "id": t + 1, "type": "setup" if kind == "open" else "change", "status": status, "department_id": dept,
                "assignee_id": staff_by_dept[dept] if status != "new" else None, "operation_id": t + 1,
                "service_id": sid, "title": f"{'Setup' if kind == 'open' else 'Change'} hosting for Bench Client",
                "description": "Set up the service in the control panel.", "close_actions": "Closing activates it.",
                "retryable": False, "main_settings": {"domain": f"s{sid}.example"}, "addons": {},
                "created_at": created, "closed_at": created if status == "closed" else None, "version": 1,
            })
        bulk(Operation.__table__, ops)
        bulk(Task.__table__, tasks)
        per_service = max(1, n_history // n_services)
        rows = []
        for i in range(n_history):
            sid = i // per_service % n_services + 1
            rows.append({"service_id": sid, "created_at": now, "event": "operation.requested",
                         "message": "open requested", "actor": "system"})
            if len(rows) == CHUNK:
                bulk(HistoryEntry.__table__, rows)
                rows = []
        bulk(HistoryEntry.__table__, rows)
    if fulfil.engine.dialect.name == "postgresql":
        with fulfil.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.exec_driver_sql("ANALYZE")
    else:
        with fulfil.engine.begin() as conn:
            conn.exec_driver_sql("ANALYZE")


@contextmanager
def served(url: str) -> Iterator[httpx.Client]:
    """`fulfil serve --no-worker` on a free port; an HTTP client for it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [str(Path(sys.executable).with_name("fulfil")), "serve", "--no-worker", "--port", str(port)],
        env=os.environ | {"FULFIL_DATABASE_URL": url}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:
            deadline = time.monotonic() + 60
            while True:
                try:
                    client.get("/openapi.json")
                    break
                except httpx.TransportError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise RuntimeError("fulfil serve did not start") from None
                    time.sleep(0.2)
            yield client
    finally:
        proc.terminate()
        proc.wait(30)


def timed(client: httpx.Client, token: str, params: dict, n: int) -> tuple[float, float, int]:
    headers = {"Authorization": f"Bearer {token}"}
    for _ in range(10):
        response = client.get("/api/v1/tasks", params=params, headers=headers)
        assert response.status_code == 200, response.text
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        response = client.get("/api/v1/tasks", params=params, headers=headers)
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[int(len(samples) * 0.95) - 1], len(response.json()["items"])


def run(url: str, label: str, n_tasks: int, n_history: int, n: int) -> list[tuple]:
    fulfil = Fulfil(url, registry=ModuleRegistry.discover())
    fulfil.upgrade()
    start = time.perf_counter()
    seed(fulfil, n_tasks, n_history)
    with fulfil.session(read_only=True) as s:
        counts = (s.scalar(select(func.count()).select_from(Task)), s.scalar(select(func.count()).select_from(HistoryEntry)))
    print(f"[{label}] seeded {counts[0]:,} tasks and {counts[1]:,} history rows in {time.perf_counter() - start:.1f} s")
    deep = encode_cursor(n_tasks // 2)
    cases = [
        ("admin: first page", "bench-admin", {"limit": 50}),
        ("admin: deep page (cursor at the middle)", "bench-admin", {"limit": 50, "cursor": deep}),
        ("admin: filtered (department, type, status)", "bench-admin",
         {"limit": 50, "department_id": 3, "type": "change", "status": "in_progress"}),
        ("staff: first page", "bench-staff-1", {"limit": 50}),
        ("staff: deep page (cursor at the middle)", "bench-staff-1", {"limit": 50, "cursor": deep}),
        ("staff: queue (status=new, assignee=none)", "bench-staff-1", {"limit": 50, "status": "new", "assignee": "none"}),
        ("staff: my open tasks (status=open, assignee=me)", "bench-staff-1",
         {"limit": 50, "status": "open", "assignee": "me"}),
        ("staff: 200 per page", "bench-staff-1", {"limit": 200}),
    ]
    fulfil.dispose()
    results = []
    with served(url) as client:
        for name, token, params in cases:
            p50, p95, items = timed(client, token, params, n)
            results.append((label, name, p50, p95, items))
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("postgres_url", nargs="?", help="a PostgreSQL server URL to benchmark too")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=200, help="timed requests per case")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        results += run(f"sqlite:///{Path(tmp) / 'bench.db'}", "SQLite", args.tasks, args.history, args.requests)
    if args.postgres_url:
        from fulfil.testing import create_postgres_database, drop_postgres_database

        url = create_postgres_database(args.postgres_url, migrate=False)
        try:
            results += run(url, "PostgreSQL", args.tasks, args.history, args.requests)
        finally:
            drop_postgres_database(url, args.postgres_url)

    print(f"\nGET /api/v1/tasks, {args.requests} requests per case, target p95 ≤ {TARGET_P95_MS:.0f} ms")
    print(f"{'database':<11} {'case':<50} {'items':>5} {'p50 ms':>8} {'p95 ms':>8}  verdict")
    for label, name, p50, p95, items in results:
        verdict = "ok" if p95 <= TARGET_P95_MS else "OVER TARGET"
        print(f"{label:<11} {name:<50} {items:>5} {p50:>8.2f} {p95:>8.2f}  {verdict}")


if __name__ == "__main__":
    main()
