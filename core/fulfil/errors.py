"""Errors of the service layer, each meant for a person to read.

The REST API maps them to status codes: NotFound → 404, Forbidden → 403,
Conflict → 409, InvalidInput → 422.
"""

from __future__ import annotations

from collections.abc import Iterable


class FulfilError(Exception):
    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotFound(FulfilError):
    def __init__(self, what: str, ident: object) -> None:
        super().__init__(f"{what} {ident} not found")
        self.what = what
        self.ident = ident


class Forbidden(FulfilError):
    pass


class Conflict(FulfilError):
    """The request is understood but the current state does not allow it."""


class InvalidInput(FulfilError):
    """Bad input: ``errors`` lists each bad field with the reason."""

    def __init__(self, errors: Iterable[tuple[str, str]]) -> None:
        self.errors = [(field, reason) for field, reason in errors]
        super().__init__("; ".join(f"{f}: {r}" for f, r in self.errors))

    @classmethod
    def one(cls, field: str, reason: str) -> "InvalidInput":
        return cls([(field, reason)])

    @classmethod
    def from_pydantic(cls, exc, prefix: str = "") -> "InvalidInput":
        errors = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err.get("loc", ()) if p != "__root__")
            field = f"{prefix}.{loc}" if prefix and loc else (loc or prefix or "body")
            msg = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                msg = "unknown field"
            errors.append((field, msg))
        return cls(errors)
