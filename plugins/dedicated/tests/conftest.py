"""The Redfish emulator (sushy-tools, fake driver) as the tests' fleet of servers.

One emulator per session serves most tests, with power changes shortened to under
a second; tests take fresh systems from it so they never share a server. A second
emulator, started only when a test asks for it, keeps the fake driver's real
seconds-long delays. Tests that stop and restart the BMC get one of their own.

Without the emulator the tests skip locally and fail in CI (``CI=true``).
``FULFIL_TEST_SUSHY_EMULATOR`` names another ``sushy-emulator`` executable.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
import requests

from fulfil.testing import create_postgres_database, drop_postgres_database
from fulfil_dedicated import plugin

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")

BMC_USER = "admin"
BMC_PASSWORD = "bmc-Secret-31337"

#: Python run by the emulator when it reads its config file: test-only hardware quirks
QUIRKS = '''
# -- hardware quirks of this test fleet (the config file is Python the emulator runs) --
import logging as _logging

from sushy_tools.emulator.resources.systems import fakedriver as _fakedriver

# log each power request ("System ... power state set to ..."): the tests read them
_logging.getLogger("sushy_tools.emulator.main").setLevel(_logging.INFO)

_set_power_state = _fakedriver.FakeDriver.set_power_state


def _set_power_state_with_quirks(self, identity, state):
    # a system flagged so runs an OS that ignores the ACPI power button
    if state == "GracefulShutdown" and self._get(identity).get("ignores_graceful_shutdown"):
        return
    return _set_power_state(self, identity, state)


_fakedriver.FakeDriver.set_power_state = _set_power_state_with_quirks
'''

#: the fake driver applies a power change ``randint(1, 11)`` seconds after it is asked
#: (``apply_time = int(time.time()) + random.randint(1, 11)``); this pins the draw
FIXED_DELAY = '''
import random as _random


class _FixedDelay(_random.Random):
    def randint(self, a, b):
        return {seconds}


_fakedriver.random = _FixedDelay()
'''


def missing_peer(reason: str) -> None:
    """Locally a missing emulator skips the test; in CI it fails it."""
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing Redfish emulator is a failure)")
    pytest.skip(reason)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def emulator_command() -> str | None:
    chosen = os.environ.get("FULFIL_TEST_SUSHY_EMULATOR")
    if chosen:
        return shutil.which(chosen)
    beside_python = Path(sys.executable).with_name("sushy-emulator")
    if beside_python.exists():
        return str(beside_python)
    return shutil.which("sushy-emulator")


class RedfishEmulator:
    """A ``sushy-emulator`` process with the fake driver, its config, state directory,
    htpasswd file and log in ``root``. ``power_delay`` None keeps the driver's real
    delays; a number of seconds pins them."""

    def __init__(self, root: Path, *, systems: int, power_delay: int | None, quirky: tuple[int, ...] = ()) -> None:
        self.root = root
        self.power_delay = power_delay
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.systems = [
            {
                "uuid": str(uuid.uuid4()),
                "name": f"node-{i}",
                "power_state": "Off",
                "ignores_graceful_shutdown": i in quirky,
                "nics": [{"mac": f"52:54:00:00:{self.port % 256:02x}:{i:02x}", "ip": f"198.51.100.{i + 1}"}],
            }
            for i in range(systems)
        ]
        self._used: set[str] = set()
        self._process: subprocess.Popen | None = None
        self.log = root / "emulator.log"
        self.state_dir = root / "state"

    # -- the process ---------------------------------------------------------------------

    def _write_config(self) -> Path:
        import bcrypt

        htpasswd = self.root / "htpasswd"
        # cost 4: the emulator checks the password on every request
        digest = bcrypt.hashpw(BMC_PASSWORD.encode(), bcrypt.gensalt(rounds=4)).decode()
        htpasswd.write_text(f"{BMC_USER}:{digest}\n")
        config = self.root / "emulator.conf"
        text = "\n".join(
            [
                "SUSHY_EMULATOR_FAKE_DRIVER = True",
                f"SUSHY_EMULATOR_FAKE_SYSTEMS = {self.systems!r}",
                f"SUSHY_EMULATOR_STATE_DIR = {str(self.state_dir)!r}",
                f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}",
                "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
                f"SUSHY_EMULATOR_LISTEN_PORT = {self.port}",
                QUIRKS,
            ]
        )
        if self.power_delay is not None:
            text += FIXED_DELAY.format(seconds=int(self.power_delay))
        config.write_text(text)
        return config

    def start(self) -> None:
        command = emulator_command()
        if command is None:
            missing_peer("sushy-emulator is not installed (pip install sushy-tools)")
        self.state_dir.mkdir(exist_ok=True)
        config = self._write_config()
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [command, "--config", str(config)], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                break
            try:
                with urllib.request.urlopen(f"{self.url}/redfish/v1/", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (urllib.error.URLError, OSError):
                time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:]
        self.stop()
        missing_peer(f"sushy-emulator did not start on {self.url}:\n{tail}")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(10)
            self._process = None

    # -- servers for the module's settings --------------------------------------------------

    password = BMC_PASSWORD

    @staticmethod
    def unreachable_url() -> str:
        """A loopback URL where no BMC listens (connections are refused)."""
        return f"http://127.0.0.1:{free_port()}"

    def take(self, count: int = 1, *, quirky: bool = False) -> list[dict[str, Any]]:
        """Settings entries for ``count`` systems no other test has used."""
        fitting = [s for s in self.systems if s["uuid"] not in self._used and s["ignores_graceful_shutdown"] == quirky]
        if len(fitting) >= count:
            self._used.update(s["uuid"] for s in fitting[:count])
            return [self.server_settings(s) for s in fitting[:count]]
        raise RuntimeError("the emulator has no unused systems left: give it more")

    def server_settings(self, system: dict[str, Any], **overrides: Any) -> dict[str, Any]:
        entry = {
            "label": f"{system['name']} E-2388G/64GB/2x1TB",
            "redfish_url": self.url,
            "system_id": system["uuid"],
            "username": BMC_USER,
            "password": BMC_PASSWORD,
            "ip_address": system["nics"][0]["ip"],
        }
        entry.update(overrides)
        return entry

    # -- what the BMC says, read over Redfish ------------------------------------------------

    def system(self, system_id: str) -> dict[str, Any]:
        answer = requests.get(
            f"{self.url}/redfish/v1/Systems/{system_id}", auth=(BMC_USER, BMC_PASSWORD), timeout=10
        )
        answer.raise_for_status()
        return answer.json()

    def power_state(self, system_id: str) -> str:
        return self.system(system_id)["PowerState"]

    def boot_target(self, system_id: str) -> str:
        return self.system(system_id)["Boot"]["BootSourceOverrideTarget"]

    def reset(self, system_id: str, reset_type: str) -> None:
        answer = requests.post(
            f"{self.url}/redfish/v1/Systems/{system_id}/Actions/ComputerSystem.Reset",
            json={"ResetType": reset_type}, auth=(BMC_USER, BMC_PASSWORD), timeout=10,
        )
        answer.raise_for_status()

    def wait_for_power(self, system_id: str, state: str, timeout: float = 20) -> None:
        deadline = time.monotonic() + timeout
        while self.power_state(system_id) != state:
            assert time.monotonic() < deadline, f"system {system_id} did not reach {state}"
            time.sleep(0.1)

    def requested_resets(self, system_id: str) -> list[str]:
        """Reset types the BMC was asked for, from the emulator's own log."""
        marker = f'System "{system_id}" power state set to "'
        return [
            line.split(marker, 1)[1].split('"', 1)[0]
            for line in self.log.read_text(errors="replace").splitlines()
            if marker in line
        ]


@pytest.fixture(scope="session")
def redfish(tmp_path_factory):
    """The session's emulator, power changes taking under a second."""
    emulator = RedfishEmulator(tmp_path_factory.mktemp("redfish"), systems=24, power_delay=1, quirky=(20, 21))
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def redfish_real_delays(tmp_path_factory):
    """An emulator keeping the fake driver's real delays (1 to 11 seconds)."""
    emulator = RedfishEmulator(tmp_path_factory.mktemp("redfish-real"), systems=2, power_delay=None)
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture
def own_redfish(tmp_path):
    """An emulator for one test, which may stop and restart it; power changes take
    three seconds, long enough to stop the BMC while the module waits."""
    emulator = RedfishEmulator(tmp_path / "redfish", systems=1, power_delay=3)
    emulator.root.mkdir()
    emulator.start()
    try:
        yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def postgres_url():
    """A PostgreSQL database of its own for this run (fulfil.testing), for the tests
    where the database's decisions matter most."""
    try:
        url = create_postgres_database()
    except Exception as exc:  # noqa: BLE001
        missing_peer(f"PostgreSQL is not reachable: {exc}")
    yield url
    drop_postgres_database(url)


@pytest.fixture
def wait_until():
    """``wait_until(condition, timeout=60, what=...)``: poll until ``condition()`` is truthy."""

    def wait(condition, timeout: float = 60.0, what: str = "condition"):
        deadline = time.monotonic() + timeout
        while not (value := condition()):
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.05)
        return value

    return wait


def module_settings(servers: list[dict[str, Any]], **overrides: Any) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "servers": servers,
        "power_deadline": 20,
        "request_timeout": 5,
        "hostname_domain": "dedicated.example.net",
    }
    settings.update(overrides)
    return settings


ADDONS = {
    "extra_ips": {"min": 0, "max": 8, "default": 0},
    "ram_gb": {"min": 16, "max": 512, "default": 32},
    "disk_gb": {"min": 500, "max": 16000, "default": 1000},
}


@pytest.fixture
def dedicated(module_harness):
    """``dedicated(servers, **settings)`` → a harness for the dedicated module with a
    dedicated-server tariff plan (add-ons extra_ips, ram_gb, disk_gb)."""

    def make(servers: list[dict[str, Any]], **overrides: Any):
        return module_harness(
            "dedicated",
            plugin,
            settings=module_settings(servers, **overrides),
            addons=ADDONS,
            default_params={"os": "Debian 12"},
        )

    return make
