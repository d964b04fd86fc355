"""Configuration from the environment (DESIGN.md: FULFIL_DATABASE_URL, FULFIL_SECRET_KEY, SMTP)."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_SQLITE_FILE = "fulfil.db"


def default_database_url() -> str:
    return os.environ.get("FULFIL_DATABASE_URL") or f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"

