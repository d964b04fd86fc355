"""Operations through the real engine vs the bare-database floor, in one run.

    python bench/engine.py [-n 3000] [--concurrency 4] [--postgres [URL]]

Engine: N edit operations on N active services are requested through the service
layer's ``request_operation`` (one transaction each), then a real threaded
``Worker`` claims, runs (a module that does nothing) and finishes them.

Floor: the same work with plain SQLAlchemy Core and nothing else, three
transactions per operation — enqueue (insert the operation); claim (mark it
running); finish (operation done + service status + one history row).

Prints ops/s for both and the ratio engine/floor (target ≥ 0.8).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import insert, select, update

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "core"))

from fulfil.app import Fulfil  # noqa: E402
from fulfil.db import make_engine, utcnow  # noqa: E402
from fulfil.hookspecs import hookimpl  # noqa: E402
from fulfil.migrate import upgrade  # noqa: E402
from fulfil.models import Client, Department, HistoryEntry, Operation, ProcessingModule, Service, TariffPlan  # noqa: E402
from fulfil.module import Done, ModuleInfo  # noqa: E402
from fulfil.operations import request_operation  # noqa: E402
from fulfil.plugins import ModuleRegistry  # noqa: E402


class NullModule:
    @hookimpl
    def fulfil_module_info(self):
        from pydantic import BaseModel, ConfigDict

        class Params(BaseModel):
            model_config = ConfigDict(extra="allow")

        return ModuleInfo(title="does nothing", params_model=Params, timeout=60)

    @hookimpl
    def fulfil_edit(self, ctx, changes):
        return Done()


def seed(url: str, n: int) -> None:
    """N active services on one tariff (not timed)."""
    engine = make_engine(url)
    now = utcnow()
    with engine.begin() as c:
        dept = c.execute(insert(Department).values(name="Bench", notify=False, created_at=now).returning(Department.id)).scalar()
        mod = c.execute(insert(ProcessingModule).values(name="null", plugin="null", settings={}, department_id=dept, enabled=True, created_at=now).returning(ProcessingModule.id)).scalar()
        tariff = c.execute(insert(TariffPlan).values(name="bench", service_type="bench", processing_module_id=mod, default_params={}, addons={}, created_at=now).returning(TariffPlan.id)).scalar()
        client = c.execute(insert(Client).values(name="Bench", email="b@example.test", language="en", created_at=now).returning(Client.id)).scalar()
        c.execute(
            insert(Service),
            [
                {"client_id": client, "tariff_id": tariff, "status": "active", "target_status": "active",
                 "params": {"n": 0}, "addons": {}, "version": 1, "created_at": now, "updated_at": now}
                for _ in range(n)
            ],
        )
    engine.dispose()


def run_engine(url: str, n: int, concurrency: int) -> float:
    registry = ModuleRegistry.empty()
    registry.register_module("null", NullModule())
    app = Fulfil(url, registry=registry)
    with app.session(read_only=True) as s:
        ids = list(s.scalars(select(Service.id).order_by(Service.id)))
    worker = app.worker(concurrency=concurrency, poll_interval=0.01)
    start = time.perf_counter()
    for sid in ids:
        with app.session() as s:
            request_operation(s, service_id=sid, kind="edit", payload={"params": {"n": 1}})
    worker.start()
    # the bench's own polling must not steal time from the worker: an indexed
    # look-up, a few times a second
    while True:
        with app.session(read_only=True) as s:
            left = s.scalar(select(Operation.id).where(Operation.state.in_(("pending", "running"))).limit(1))
        if left is None:
            break
        time.sleep(0.05)
    elapsed = time.perf_counter() - start
    worker.stop()
    app.dispose()
    return elapsed


def run_floor(url: str, n: int) -> float:
    engine = make_engine(url)
    with engine.connect() as c:
        ids = list(c.execute(select(Service.id).order_by(Service.id)).scalars())
    start = time.perf_counter()
    op_ids = []
    for i, sid in enumerate(ids):
        with engine.begin() as c:
            op_ids.append(
                c.execute(
                    insert(Operation)
                    .values(key=f"floor-{i}", service_id=sid, kind="edit", payload={"params": {"n": 1}},
                            state="pending", attempts=0, run_after=utcnow(), created_at=utcnow())
                    .returning(Operation.id)
                ).scalar()
            )
    for op_id, sid in zip(op_ids, ids):
        with engine.begin() as c:
            c.execute(update(Operation).where(Operation.id == op_id, Operation.state == "pending")
                      .values(state="running", lease_owner="floor", attempts=Operation.attempts + 1))
        with engine.begin() as c:
            now = utcnow()
            c.execute(update(Operation).where(Operation.id == op_id).values(state="done", finished_at=now, lease_owner=None))
            c.execute(update(Service).where(Service.id == sid).values(status="active", params={"n": 1}, updated_at=now))
            c.execute(insert(HistoryEntry).values(service_id=sid, event="operation.done", message="edit done",
                                                  actor="floor", created_at=now))
    elapsed = time.perf_counter() - start
    engine.dispose()
    return elapsed


def fresh_database(kind: str, pg_url: str | None, workdir: Path, name: str) -> tuple[str, callable]:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / (name + '.db')}"
        engine = make_engine(url)
        upgrade(engine)
        engine.dispose()
        return url, lambda: None
    from fulfil.testing import create_postgres_database, drop_postgres_database

    url = create_postgres_database(pg_url)
    return url, lambda: drop_postgres_database(url, pg_url)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--postgres", nargs="?", const="postgresql+psycopg://root@127.0.0.1:5432/postgres",
                        help="also run on PostgreSQL (admin URL; a database is created and dropped)")
    args = parser.parse_args()
    backends = ["sqlite"] + (["postgresql"] if args.postgres else [])
    workdir = Path(tempfile.mkdtemp(prefix="fulfil-bench-"))
    print(f"{args.n} operations, worker concurrency {args.concurrency}")
    print(f"{'database':<11} {'floor ops/s':>12} {'engine ops/s':>13} {'engine/floor':>13}")
    worst = None
    for kind in backends:
        floor_url, drop_floor = fresh_database(kind, args.postgres, workdir, "floor")
        engine_url, drop_engine = fresh_database(kind, args.postgres, workdir, "engine")
        try:
            seed(floor_url, args.n)
            seed(engine_url, args.n)
            floor = args.n / run_floor(floor_url, args.n)
            engine = args.n / run_engine(engine_url, args.n, args.concurrency)
        finally:
            drop_floor()
            drop_engine()
        ratio = engine / floor
        worst = ratio if worst is None else min(worst, ratio)
        print(f"{kind:<11} {floor:>12.0f} {engine:>13.0f} {ratio:>13.2f}")
    print(f"target: engine/floor >= 0.80 on every database -> {'met' if worst >= 0.8 else 'NOT met'}")


if __name__ == "__main__":
    main()
