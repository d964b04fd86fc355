"""Web UI fixtures: the catalogue every test starts from, an in-process app for
quick checks (Starlette's TestClient over https, so the Secure cookies travel),
and a real server process with headless Chromium for the end-to-end tests."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fulfil.app import Fulfil
from fulfil.plugins import ModuleRegistry
from fulfil.services import catalog, lifecycle
from fulfil.testing import migrated_sqlite_copy, missing_peer

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = os.environ.get("FULFIL_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]


# -- the catalogue every web test starts from -----------------------------------------------

PASSWORD = "correct horse battery"


@dataclass
class World:
    support_id: int
    network_id: int
    tariff_id: int
    client_id: int
    module_id: int


def seed(app: Fulfil) -> World:
    with app.session() as s:
        support = catalog.create_department(session=s, name="Support", email="support@example.test")
        network = catalog.create_department(session=s, name="Network")
        alice, _ = catalog.create_staff(
            session=s, login="alice", name="Alice Ahlberg", department_ids=[support.id], password=PASSWORD
        )
        # one argon2 hash for everyone: hashing is deliberately slow
        for login, name, depts, admin in (
            ("carol", "Carol Chen", [support.id], False),
            ("bob", "Bob Brown", [network.id], False),
            ("root", "Root Admin", [], True),
        ):
            member, _ = catalog.create_staff(session=s, login=login, name=name, department_ids=depts, is_admin=admin)
            member.password_hash = alice.password_hash
        module = catalog.create_processing_module(session=s, name="Manual hosting", plugin="manual", department_id=support.id)
        tariff = catalog.create_tariff(
            session=s, name="Shared hosting S", service_type="hosting", processing_module_id=module.id,
            addons={"disk_gb": {"title": "Disk", "unit": "GB", "min": 1, "max": 100, "default": 10}},
        )
        client = catalog.create_client(session=s, name="Acme Ltd", email="ops@acme.example")
        return World(support.id, network.id, tariff.id, client.id, module.id)


def order(app: Fulfil, world: World, **params) -> int:
    with app.session() as s:
        return lifecycle.order_service(
            session=s, client_id=world.client_id, tariff_id=world.tariff_id, params=params or None
        ).id


def run_worker(app: Fulfil) -> None:
    """Run what the engine has due, here and now (the in-process tests have no
    background workers)."""
    app.worker(concurrency=1, poll_interval=0.05).run_pending()


@pytest.fixture
def password() -> str:
    """Every seeded staff member's password."""
    return PASSWORD


# -- in-process: the service layer and the web UI in the test's own process -----------------


@pytest.fixture
def web_app(fulfil_app):
    """A FastAPI app with only the web UI mounted, on the test database, with the
    Manual Setup module registered and the catalogue of seed.py."""
    from fastapi import FastAPI

    import fulfil.web
    from fulfil_manual import ManualSetup

    if "manual" not in fulfil_app.registry.modules:
        fulfil_app.registry.register_module("manual", ManualSetup())
    world = seed(fulfil_app)
    app = FastAPI()
    fulfil.web.mount(app, fulfil_app, secret_key="test-secret")
    app.state.world = world
    app.state.order = lambda **params: order(fulfil_app, world, **params)
    app.state.run_worker = lambda: run_worker(fulfil_app)
    return app


class Browserless:
    """A signed-in staff member's HTTP client; ``csrf()`` reads the token the way a
    form carries it."""

    def __init__(self, client) -> None:
        self.client = client

    def csrf(self, path: str = "/tasks") -> str:
        page = self.client.get(path)
        match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert match, f"no CSRF field on {path}"
        return match.group(1)

    def post(self, path: str, data: dict | None = None, *, csrf_from: str = "/tasks", **kw):
        return self.client.post(path, data={"csrf_token": self.csrf(csrf_from), **(data or {})}, follow_redirects=False, **kw)


@pytest.fixture
def sign_in(web_app):
    from fastapi.testclient import TestClient

    clients = []

    def make(login: str, password: str = PASSWORD) -> Browserless:
        client = TestClient(web_app, base_url="https://testserver")
        clients.append(client)
        token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
        resp = client.post("/login", data={"login": login, "password": password, "csrf_token": token}, follow_redirects=False)
        assert resp.status_code == 303, resp.text
        return Browserless(client)

    yield make
    for c in clients:
        c.close()


# -- a real server process ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _has_fulfil_serve() -> bool:
    exe = Path(sys.executable).with_name("fulfil")
    if not exe.exists():
        return False
    try:
        out = subprocess.run([str(exe), "serve", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "--port" in out.stdout


def _use_fulfil_serve() -> bool:
    choice = os.environ.get("FULFIL_WEB_TEST_SERVER", "auto")
    return choice == "serve" or (choice == "auto" and _has_fulfil_serve())


def pytest_report_header(config):
    if any("web" in str(a) for a in config.args) or not config.args:
        return f"web UI end-to-end server: {'fulfil serve' if _use_fulfil_serve() else 'uvicorn serve_factory (no fulfil serve)'}"
    return None


@pytest.fixture(scope="session")
def server_command():
    """``fulfil serve`` when the CLI has it (FULFIL_WEB_TEST_SERVER=serve forces it,
    =factory forces the small factory in serve_factory.py)."""
    if _use_fulfil_serve():
        exe = str(Path(sys.executable).with_name("fulfil"))
        return "fulfil serve", lambda port: [exe, "serve", "--host", "127.0.0.1", "--port", str(port)]
    return "uvicorn serve_factory", lambda port: [
        sys.executable, "-m", "uvicorn", "--factory", "serve_factory:create_app",
        "--app-dir", str(HERE), "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
    ]


class Server:
    password = PASSWORD

    def __init__(self, url: str, database_url: str, app: Fulfil, world, log_path: Path) -> None:
        self.url = url
        self.database_url = database_url
        self.app = app
        self.world = world
        self.log_path = log_path

    def order(self, **params) -> int:
        """Order a service through the service layer; the server's workers pick it up."""
        return order(self.app, self.world, **params)


@pytest.fixture
def live_server(tmp_path, server_command):
    """The web UI served by a real server process (with its workers) on a fresh
    migrated SQLite file; the test writes the catalogue through the service layer."""
    name, command = server_command
    database_url = migrated_sqlite_copy(tmp_path / "fulfil.db")
    app = Fulfil(database_url, registry=ModuleRegistry.discover(observers=False))
    world = seed(app)
    port = _free_port()
    env = {
        **os.environ,
        "FULFIL_DATABASE_URL": database_url,
        "FULFIL_SECRET_KEY": "e2e-test-secret-key",
        "PYTHONUNBUFFERED": "1",
    }
    log_path = tmp_path / "server.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(command(port), cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{name} exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                resp = httpx.get(url + "/login", timeout=2)
                if resp.status_code == 200:
                    break
                pytest.fail(f"{name} answers /login with {resp.status_code}: does it mount fulfil.web?")
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{name} did not start in 30 s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.1)
        yield Server(url, database_url, app, world, log_path)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        app.dispose()


@pytest.fixture(scope="session")
def chromium():
    if not Path(CHROMIUM).exists() or not shutil.which(CHROMIUM):
        missing_peer(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium chromium-driver)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        missing_peer("Playwright for Python is not installed (pip install playwright; never `playwright install`)")
    pw = sync_playwright().start()
    try:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    except Exception as exc:  # noqa: BLE001
        pw.stop()
        missing_peer(f"Chromium at {CHROMIUM} did not start: {exc}")
    yield browser
    browser.close()
    pw.stop()


@pytest.fixture
def browser_context(chromium):
    contexts = []

    def make(**kwargs):
        ctx = chromium.new_context(viewport=kwargs.pop("viewport", {"width": 1366, "height": 900}), **kwargs)
        ctx.set_default_timeout(15_000)
        contexts.append(ctx)
        return ctx

    yield make
    for ctx in contexts:
        ctx.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS
