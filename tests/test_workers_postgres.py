"""Several worker processes against one PostgreSQL: nothing runs twice at once,
per-service order holds, and a killed worker's operation is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest
from sqlalchemy import select

from fulfil.app import Fulfil
from fulfil.models import Operation
from fulfil.plugins import ModuleRegistry
from fulfil.testing import ModuleHarness, empty_all_tables
from workerproc import RecordingModule

HERE = Path(__file__).parent


@pytest.fixture
def pg(postgres_url, tmp_path):
    empty_all_tables(postgres_url)
    registry = ModuleRegistry.empty()
    registry.register_module("recording", RecordingModule(str(tmp_path / "unused.log"), hang=False))
    app = Fulfil(postgres_url, registry=registry)
    yield app
    app.dispose()


def spawn(url, log, *extra):
    return subprocess.Popen(
        [sys.executable, str(HERE / "workerproc.py"), url, str(log), *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def read_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_two_worker_processes_race_over_200_operations(pg, postgres_url, tmp_path):
    h = ModuleHarness(pg, "recording")
    services = [h.order() for _ in range(20)]
    for n in range(9):
        for sid in services:
            h.edit(sid, params={"n": n})
    with pg.session(read_only=True) as s:
        ops = s.execute(select(Operation.key, Operation.service_id, Operation.id)).all()
    assert len(ops) == 200
    log = tmp_path / "calls.log"
    go = tmp_path / "go"
    procs = [spawn(postgres_url, log, "--go", str(go)) for _ in range(2)]
    # both processes start claiming at the same moment, however long each took to start
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    go.touch()
    for p in procs:
        out, err = p.communicate(timeout=240)
        assert p.returncode == 0, err
    rows = read_log(log)
    starts = [r for r in rows if r["event"] == "start"]
    # each operation ran exactly once
    assert sorted(r["key"] for r in starts) == sorted(o.key for o in ops)
    assert len({r["pid"] for r in starts}) == 2, "both processes took work"
    # per service: in request order, never overlapping
    order = {o.key: o.id for o in ops}
    by_service = defaultdict(list)
    ends = {r["key"]: r["t"] for r in rows if r["event"] == "end"}
    for r in starts:
        by_service[r["service"]].append((r["t"], order[r["key"]], ends[r["key"]]))
    for sid, calls in by_service.items():
        calls.sort()
        assert [c[1] for c in calls] == sorted(c[1] for c in calls), f"service {sid} out of order"
        for (_, _, end), (start, _, _) in zip(calls, calls[1:]):
            assert end <= start, f"service {sid}: two operations overlapped"
    with pg.session(read_only=True) as s:
        assert set(s.scalars(select(Operation.state))) == {"done"}


def test_killed_worker_loses_its_lease_and_another_completes_the_operation_once(pg, postgres_url, tmp_path):
    h = ModuleHarness(pg, "recording")
    sid = h.order()
    log = tmp_path / "calls.log"
    doomed = spawn(postgres_url, log, "--lease", "2", "--hang")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not (log.exists() and read_log(log)):
        time.sleep(0.05)
    assert read_log(log)[0]["event"] == "start"
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    killed_at = time.time()
    rescuer = spawn(postgres_url, log, "--lease", "2")
    out, err = rescuer.communicate(timeout=60)
    assert rescuer.returncode == 0, err
    rows = read_log(log)
    starts = [r for r in rows if r["event"] == "start"]
    ends = [r for r in rows if r["event"] == "end"]
    assert [r["attempt"] for r in starts] == [1, 2]
    assert len({r["key"] for r in starts}) == 1, "the same idempotency key both times"
    assert len(ends) == 1 and ends[0]["pid"] == rescuer.pid
    assert starts[1]["t"] >= killed_at
    assert h.service(sid)["status"] == "active"
