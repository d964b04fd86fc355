"""Signed cookies for the staff web UI: the session, CSRF tokens and flash messages.

The session lives entirely in one cookie, signed (HMAC-SHA256) with
``FULFIL_SECRET_KEY``: nothing to store server-side, and any API node with the same
key accepts it. It carries the staff id, a CSRF token and a fingerprint of the
staff member's password hash, so setting a new password ends every other session.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

log = logging.getLogger(__name__)

SESSION_COOKIE = "fulfil_session"
FLASH_COOKIE = "fulfil_flash"
CSRF_FIELD = "csrf_token"
#: a working day and a bit: staff sign in once a shift
DEFAULT_MAX_AGE = 12 * 3600


def secret_key_from_env() -> bytes:
    key = os.environ.get("FULFIL_SECRET_KEY")
    if key:
        return key.encode()
    log.warning(
        "FULFIL_SECRET_KEY is not set: web sessions are signed with a random key and end "
        "when this process restarts (and are not shared between API nodes); set it in production"
    )
    return secrets.token_bytes(32)


def cookie_secure_from_env() -> bool | None:
    """``FULFIL_COOKIE_SECURE``: true, false, or unset/auto (None)."""
    raw = (os.environ.get("FULFIL_COOKIE_SECURE") or "auto").strip().lower()
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    return None


def _is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Signer:
    """Sign and check small JSON payloads; a purpose string keeps a flash cookie
    from being replayed as a session."""

    def __init__(self, key: bytes) -> None:
        self._key = hashlib.sha256(b"fulfil.web:" + key).digest()

    def _mac(self, purpose: str, body: bytes) -> str:
        digest = hmac.new(self._key, purpose.encode() + b"\0" + body, hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def dumps(self, purpose: str, data: Any) -> str:
        body = base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode().rstrip("=")
        return f"{body}.{self._mac(purpose, body.encode())}"

    def loads(self, purpose: str, token: str | None) -> Any | None:
        if not token or "." not in token:
            return None
        body, mac = token.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(purpose, body.encode())):
            return None
        try:
            return json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        except (ValueError, UnicodeDecodeError):
            return None


def password_fingerprint(password_hash: str | None) -> str:
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


@dataclass
class WebSession:
    csrf: str
    staff_id: int | None = None
    fingerprint: str = ""
    issued: float = field(default_factory=time.time)
    #: set when the cookie must be (re)written on the response
    dirty: bool = False

    @classmethod
    def anonymous(cls) -> WebSession:
        return cls(csrf=secrets.token_urlsafe(32), dirty=True)

    def as_dict(self) -> dict[str, Any]:
        return {"c": self.csrf, "s": self.staff_id, "f": self.fingerprint, "t": int(self.issued)}


class Cookies:
    """Reads and writes the session and flash cookies of one web UI."""

    def __init__(self, signer: Signer, *, secure: bool | None, max_age: int = DEFAULT_MAX_AGE) -> None:
        self.signer = signer
        self.secure = secure
        self.max_age = max_age
        self._warned_insecure_host = False

    def is_secure(self, request: Request) -> bool:
        if self.secure is not None:
            return self.secure
        # auto: Secure everywhere except plain http on this machine (make run, tests)
        if request.url.scheme == "http" and _is_loopback(request.url.hostname or ""):
            return False
        if request.url.scheme == "http" and not self._warned_insecure_host:
            self._warned_insecure_host = True
            log.warning(
                "web UI reached over plain http at %s: browsers drop its Secure session cookie; "
                "serve it over https, or set FULFIL_COOKIE_SECURE=false on a trusted network",
                request.url.hostname,
            )
        return True

    # -- the session ---------------------------------------------------------------------

    def session(self, request: Request) -> WebSession:
        """The request's session (cached on it); a fresh anonymous one when the
        cookie is missing, forged or expired."""
        cached = getattr(request.state, "web_session", None)
        if cached is not None:
            return cached
        data = self.signer.loads("session", request.cookies.get(SESSION_COOKIE))
        sess = None
        if isinstance(data, dict) and isinstance(data.get("c"), str):
            issued = float(data.get("t") or 0)
            if time.time() - issued <= self.max_age:
                sess = WebSession(
                    csrf=data["c"], staff_id=data.get("s"), fingerprint=data.get("f") or "", issued=issued
                )
        if sess is None:
            sess = WebSession.anonymous()
        request.state.web_session = sess
        return sess

    def sign_in(self, request: Request, staff_id: int, password_hash: str | None) -> WebSession:
        # a new CSRF token on sign-in: a token planted before it is worthless after
        sess = WebSession(
            csrf=secrets.token_urlsafe(32), staff_id=staff_id, fingerprint=password_fingerprint(password_hash), dirty=True
        )
        request.state.web_session = sess
        return sess

    def sign_out(self, request: Request) -> WebSession:
        sess = WebSession.anonymous()
        request.state.web_session = sess
        return sess

    def check_csrf(self, request: Request, submitted: str | None) -> bool:
        sess = self.session(request)
        return bool(submitted) and not sess.dirty and hmac.compare_digest(sess.csrf, submitted or "")

    # -- flash messages ------------------------------------------------------------------

    def add_flash(self, request: Request, level: str, text: str) -> None:
        messages = getattr(request.state, "web_flash_out", None)
        if messages is None:
            messages = request.state.web_flash_out = []
        messages.append([level, text])

    def take_flash(self, request: Request) -> list[tuple[str, str]]:
        data = self.signer.loads("flash", request.cookies.get(FLASH_COOKIE))
        request.state.web_flash_taken = True
        if not isinstance(data, list):
            return []
        return [(str(m[0]), str(m[1])) for m in data if isinstance(m, list) and len(m) == 2]

    # -- writing ---------------------------------------------------------------------------

    def write(self, request: Request, response: Response) -> Response:
        secure = self.is_secure(request)
        sess = getattr(request.state, "web_session", None)
        if sess is not None and sess.dirty:
            response.set_cookie(
                SESSION_COOKIE, self.signer.dumps("session", sess.as_dict()), max_age=self.max_age,
                path="/", secure=secure, httponly=True, samesite="lax",
            )
        out = getattr(request.state, "web_flash_out", None)
        if out:
            response.set_cookie(
                FLASH_COOKIE, self.signer.dumps("flash", out[-5:]), max_age=300,
                path="/", secure=secure, httponly=True, samesite="lax",
            )
        elif getattr(request.state, "web_flash_taken", False) and FLASH_COOKIE in request.cookies:
            response.delete_cookie(FLASH_COOKIE, path="/", secure=secure, httponly=True, samesite="lax")
        return response
