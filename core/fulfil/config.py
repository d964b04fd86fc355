"""Configuration from the environment (DESIGN.md: FULFIL_DATABASE_URL, FULFIL_SECRET_KEY, SMTP)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_SQLITE_FILE = "fulfil.db"


def default_database_url() -> str:
    return os.environ.get("FULFIL_DATABASE_URL") or f"sqlite:///{Path.cwd() / DEFAULT_SQLITE_FILE}"


@dataclass(frozen=True)
class Settings:
    database_url: str
    secret_key: str | None

    @classmethod
    def from_env(cls) -> "Settings":
        return cls(
            database_url=default_database_url(),
            secret_key=os.environ.get("FULFIL_SECRET_KEY"),
        )
