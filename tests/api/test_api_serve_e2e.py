"""The real `fulfil serve` process, driven over HTTP through a whole service life:
order → setup task → assign → main settings → close → active; then suspend, resume
and delete, each a Manual Setup task to close."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

FULFIL = str(Path(sys.executable).with_name("fulfil"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run([FULFIL, *args], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _until(what: str, probe, timeout: float = 30.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture
def served(tmp_path):
    """`fulfil serve` on a free port and a temporary SQLite file; yields (client, stderr path)."""
    env = os.environ | {"FULFIL_DATABASE_URL": f"sqlite:///{tmp_path / 'fulfil.db'}"}
    _run(["db", "upgrade"], env)
    _run(["demo", "--once"], env)  # as `make run` does: the banner then names the demo token
    boss = json.loads(_run(["staff", "add", "boss", "--admin", "--json"], env))
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as sink:
        proc = subprocess.Popen(
            [FULFIL, "serve", "--host", "127.0.0.1", "--port", str(port), "--concurrency", "2"],
            env=env, stdout=sink, stderr=subprocess.STDOUT, cwd=tmp_path,
        )
    client = httpx.Client(
        base_url=f"http://127.0.0.1:{port}/api/v1", headers={"Authorization": f"Bearer {boss['token']}"}, timeout=10
    )

    def up():
        try:
            return httpx.get(f"http://127.0.0.1:{port}/openapi.json", timeout=1).status_code == 200
        except httpx.TransportError:
            assert proc.poll() is None, log.read_text()
            return False

    try:
        _until("fulfil serve to answer", up)
        yield client, log
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        try:
            code = proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError("fulfil serve did not stop on SIGTERM") from None
        # uvicorn shuts down cleanly (the lifespan stops the worker), then re-raises
        # the signal so the exit status says SIGTERM
        assert code in (0, -signal.SIGTERM), log.read_text()
        assert "Application shutdown complete" in log.read_text()


def _ok(response: httpx.Response, code: int) -> dict:
    assert response.status_code == code, f"{response.request.method} {response.request.url}: {response.text}"
    return response.json()


def _work_next_task(client: httpx.Client, service_id: int, kind: str, main_settings: dict | None = None) -> None:
    """Wait for the worker's task, then assign it, fill it in and close it."""
    task = _until(
        f"the {kind} task of service {service_id}",
        lambda: next(iter(_ok(client.get("/tasks", params={"service_id": service_id, "status": "new"}), 200)["items"]), None),
    )
    assert task["type"] == kind
    _ok(client.post(f"/tasks/{task['id']}/assign"), 200)
    if main_settings:
        form = _ok(client.patch(f"/tasks/{task['id']}", json={"main_settings": main_settings}), 200)
        assert form["main_settings"]["password"] == "********"
    assert _ok(client.post(f"/tasks/{task['id']}/close"), 200)["status"] == "closed"


def _status(client: httpx.Client, service_id: int) -> str:
    return _ok(client.get(f"/services/{service_id}"), 200)["status"]


def test_a_service_lives_its_whole_life_through_the_real_server(served):
    client, log = served
    dept = _ok(client.post("/departments", json={"name": "Hosting desk"}), 201)
    module = _ok(client.post("/processing-modules", json={"name": "Manual desk", "module": "manual", "department_id": dept["id"]}), 201)
    tariff = _ok(client.post("/tariffs", json={"name": "Hosting e2e", "service_type": "hosting",
                                               "processing_module_id": module["id"]}), 201)
    acme = _ok(client.post("/clients", json={"name": "Acme Ltd", "email": "it@acme.example"}), 201)

    service = _ok(client.post("/services", json={"client_id": acme["id"], "tariff_id": tariff["id"],
                                                 "params": {"domain": "acme.example"}}), 202)
    sid = service["id"]
    assert service["status"] in ("ordered", "processing")
    _work_next_task(client, sid, "setup", {"ip_address": "192.0.2.10", "username": "acme", "password": "Sup3r-secret"})
    active = _ok(client.get(f"/services/{sid}"), 200)
    assert active["status"] == "active"
    assert active["params"] == {"domain": "acme.example", "ip_address": "192.0.2.10", "username": "acme",
                                "password": "********"}

    for request, kind, after in (
        (lambda: client.post(f"/services/{sid}/suspend"), "suspend", "suspended"),
        (lambda: client.post(f"/services/{sid}/resume"), "resume", "active"),
        (lambda: client.delete(f"/services/{sid}"), "delete", "deleted"),
    ):
        _ok(request(), 202)
        _work_next_task(client, sid, kind)
        assert _status(client, sid) == after

    events = [h["event"] for h in _ok(client.get(f"/services/{sid}"), 200)["history"]]
    assert events.count("task.closed") == 4
    printed = log.read_text()
    assert "REST API: http://127.0.0.1:" in printed and "demo token (admin): demo-admin-token" in printed
    assert "Sup3r-secret" not in printed


def test_fulfil_worker_runs_operations_until_sigterm_and_stops_cleanly(tmp_path):
    from fulfil.app import Fulfil
    from fulfil.services import catalog, lifecycle

    url = f"sqlite:///{tmp_path / 'fulfil.db'}"
    env = os.environ | {"FULFIL_DATABASE_URL": url}
    _run(["db", "upgrade"], env)
    fulfil = Fulfil(url)
    try:
        with fulfil.session() as s:
            dept = catalog.create_department(session=s, name="Support")
            pm = catalog.create_processing_module(session=s, name="Manual", plugin="manual", department_id=dept.id)
            tariff = catalog.create_tariff(session=s, name="Hosting", service_type="hosting", processing_module_id=pm.id)
            client = catalog.create_client(session=s, name="Acme", email="it@acme.example")
            sid = lifecycle.order_service(session=s, client_id=client.id, tariff_id=tariff.id).id
        log = tmp_path / "worker.log"
        with log.open("w") as sink:
            proc = subprocess.Popen([FULFIL, "worker", "--concurrency", "2"], env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            def has_task():
                with fulfil.session(read_only=True) as s:
                    return lifecycle.pending_operation(s, sid).state == "waiting_task"

            _until("the worker to turn the order into a task", has_task)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=20)
        assert code == 0, log.read_text()
        assert "SIGTERM" in log.read_text() and "worker stopped" in log.read_text()
    finally:
        fulfil.dispose()
