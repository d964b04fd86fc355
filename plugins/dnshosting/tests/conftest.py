"""A real PowerDNS Authoritative server for the tests, and DNS queries to it.

The session starts its own ``pdns_server`` (found on PATH, in /usr/sbin, or at
``$FULFIL_TEST_PDNS_SERVER``; gsqlite3 backend on a database of its
own, free loopback ports, its own API key and config dir) and stops it after. Where
``pdns_server`` is not installed the tests are skipped, except in CI (``CI=true``),
where that is a failure.
"""

from __future__ import annotations

import os
import shutil
import socket
import sqlite3
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dns.message
import dns.query
import dns.rcode
import dns.rdatatype
import httpx
import pytest

SCHEMA_CANDIDATES = (
    "/usr/share/doc/pdns-backend-sqlite3/schema.sqlite3.sql",
    "/usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql",
    "/usr/share/doc/pdns/schema.sqlite3.sql",
    "/usr/local/share/doc/pdns/schema.sqlite3.sql",
)
NAMESERVERS = ["ns1.fulfil-test.net", "ns2.fulfil-test.net"]


def _missing(reason: str):
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{reason} (CI=true: the DNS hosting tests must run; install pdns-server and pdns-backend-sqlite3)")
    pytest.skip(reason)


def _free_port() -> int:
    """A loopback port free for both UDP and TCP (DNS listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = tcp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("127.0.0.1", port))
                except OSError:
                    continue
            return port
    raise RuntimeError("no free loopback port")


@dataclass
class PdnsServer:
    """One pdns_server process; :meth:`stop` and :meth:`start` keep its ports and data."""

    binary: str
    workdir: Path
    dns_port: int
    api_port: int
    api_key: str = field(default_factory=lambda: "test-key-" + uuid.uuid4().hex)
    process: subprocess.Popen | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def log(self) -> Path:
        return self.workdir / "pdns.log"

    def write_config(self, schema: str) -> None:
        db = self.workdir / "pdns.sqlite3"
        with sqlite3.connect(db) as conn:
            conn.executescript(Path(schema).read_text())
        (self.workdir / "pdns.conf").write_text(
            "\n".join(
                [
                    "launch=gsqlite3",
                    f"gsqlite3-database={db}",
                    "local-address=127.0.0.1",
                    f"local-port={self.dns_port}",
                    "webserver=yes",
                    "webserver-address=127.0.0.1",
                    f"webserver-port={self.api_port}",
                    "webserver-allow-from=127.0.0.0/8",
                    "api=yes",
                    f"api-key={self.api_key}",
                    f"socket-dir={self.workdir}",
                    "loglevel=4",
                    "",
                ]
            )
        )

    def start(self, timeout: float = 20.0) -> None:
        log = self.log.open("a")
        self.process = subprocess.Popen(
            [self.binary, f"--config-dir={self.workdir}", "--guardian=no", "--daemon=no", "--disable-syslog", "--write-pid=no"],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pdns_server exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                r = httpx.get(f"{self.api_url}/api/v1/servers/localhost", headers={"X-API-Key": self.api_key}, timeout=1)
                if r.status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"pdns_server did not answer on its API within {timeout} s:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            self.process = None
            return
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
        self.process = None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    # -- looking at it as staff and as the world would --------------------------------------

    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        return httpx.request(
            method,
            f"{self.api_url}/api/v1/servers/localhost{path}",
            headers={"X-API-Key": self.api_key},
            timeout=5,
            **kwargs,
        )

    def zone(self, name: str) -> dict[str, Any] | None:
        r = self.api("GET", f"/zones/{name}.")
        return r.json() if r.status_code == 200 else None

    def zones_named(self, name: str) -> list[dict[str, Any]]:
        return self.api("GET", "/zones", params={"zone": f"{name}."}).json()

    def query(self, name: str, rtype: str = "A") -> tuple[str, list[str]]:
        """Ask the server over UDP: (rcode, sorted answer data)."""
        message = dns.message.make_query(name if name.endswith(".") else name + ".", rtype)
        response = dns.query.udp(message, "127.0.0.1", port=self.dns_port, timeout=3)
        wanted = dns.rdatatype.from_text(rtype)
        answers = sorted(rd.to_text() for rrset in response.answer if rrset.rdtype == wanted for rd in rrset)
        return dns.rcode.to_text(response.rcode()), answers


    def txt(self, name: str) -> list[str]:
        """The TXT records of ``name`` as their text (their strings joined)."""
        message = dns.message.make_query(name if name.endswith(".") else name + ".", "TXT")
        response = dns.query.tcp(message, "127.0.0.1", port=self.dns_port, timeout=3)
        return sorted(
            b"".join(rd.strings).decode() for rrset in response.answer if rrset.rdtype == dns.rdatatype.TXT for rd in rrset
        )


@pytest.fixture(scope="session")
def pdns(tmp_path_factory) -> PdnsServer:
    wanted = os.environ.get("FULFIL_TEST_PDNS_SERVER")  # a pdns_server elsewhere than on PATH
    if wanted:
        binary = wanted if os.access(wanted, os.X_OK) else None
    else:
        binary = shutil.which("pdns_server") or next(
            (p for p in ("/usr/sbin/pdns_server", "/usr/local/sbin/pdns_server") if os.access(p, os.X_OK)), None
        )
    if binary is None:
        _missing(
            f"pdns_server is not installed{f' at {wanted}' if wanted else ''} "
            "(Debian: apt-get install pdns-server pdns-backend-sqlite3)"
        )
    schema = next((p for p in SCHEMA_CANDIDATES if os.path.exists(p)), None)
    if schema is None:
        _missing("the gsqlite3 schema of PowerDNS is not installed (Debian: apt-get install pdns-backend-sqlite3)")
    server = PdnsServer(binary=binary, workdir=tmp_path_factory.mktemp("pdns"), dns_port=_free_port(), api_port=_free_port())
    server.write_config(schema)
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(str(exc))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def running_pdns(pdns) -> PdnsServer:
    """The session's server, started again if a test stopped it."""
    if pdns.process is None:
        pdns.start()
    return pdns


@pytest.fixture
def settings(running_pdns) -> dict[str, Any]:
    """Connection settings of the processing module, as staff would enter them."""
    return {
        "api_url": running_pdns.api_url,
        "api_key": running_pdns.api_key,
        "nameservers": NAMESERVERS,
        "default_ttl": 300,
        "request_timeout": 5,
    }


@pytest.fixture
def domain() -> str:
    """A domain no other test uses (they share one PowerDNS)."""
    return f"client-{uuid.uuid4().hex[:10]}.example"
