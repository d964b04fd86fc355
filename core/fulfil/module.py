"""What a processing module sees and returns: the public contract for module authors.

Everything here is re-exported from :mod:`fulfil`; module plugins import it from
there and never from fulfil's internals.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict

#: Lifecycle operations a module may support, in the words of DESIGN.md.
OPERATIONS = ("open", "edit", "close", "suspend", "resume")


class ModuleError(Exception):
    """A permanent failure: retrying will not help.

    The engine turns it into a task for the module's responsible department at once.
    ``message`` is what staff read in the task; ``details`` (optional) goes only to
    the internal service history. Never put a secret in either.
    """

    def __init__(self, message: str, *, details: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class TransientModuleError(ModuleError):
    """A failure worth retrying (connection refused, a timeout, a 5xx from the panel).

    The engine retries with exponential back-off and jitter, up to the module's
    :class:`RetryPolicy`, then creates a task.
    """


class EmptySettings(BaseModel):
    """Settings model of a module that needs no connection settings."""

    model_config = ConfigDict(extra="forbid")


class EmptyParams(BaseModel):
    """Params model of a module whose services have no main settings."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently the engine retries transient failures."""

    max_attempts: int = 5
    base_delay: float = 2.0
    max_delay: float = 300.0

    def delay(self, attempt: int, jitter: float) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based).

        ``jitter`` is a number in [0, 1); full jitter keeps many services that failed
        together from retrying together.
        """
        ceiling = min(self.max_delay, self.base_delay * (2 ** (attempt - 1)))
        return ceiling / 2 + (ceiling / 2) * jitter


@dataclass(frozen=True)
class AddonSpec:
    """An add-on (resource amount) a module understands, e.g. ``records`` or ``ram_gb``."""

    name: str
    title: str = ""
    unit: str = ""


@dataclass(frozen=True)
class ModuleInfo:
    """What a module says about itself at load time (``fulfil_module_info``)."""

    title: str
    operations: frozenset[str] = frozenset(OPERATIONS)
    settings_model: type[BaseModel] = EmptySettings
    params_model: type[BaseModel] = EmptyParams
    addons: tuple[AddonSpec, ...] = ()
    retry: RetryPolicy = RetryPolicy()
    #: seconds one hook call may take before the engine gives up on it
    timeout: float = 120.0
    description: str = ""

    def __post_init__(self) -> None:
        unknown = set(self.operations) - set(OPERATIONS)
        if unknown:
            raise ValueError(f"unknown operations {sorted(unknown)}; known: {OPERATIONS}")
        object.__setattr__(self, "operations", frozenset(self.operations))


@dataclass(frozen=True)
class ClientInfo:
    id: int
    name: str
    email: str


@dataclass(frozen=True)
class TariffInfo:
    id: int
    name: str
    service_type: str
    addon_limits: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceInfo:
    """The service an operation is about, as the module sees it."""

    id: int
    status: str
    client: ClientInfo
    tariff: TariffInfo
    params: Mapping[str, Any]
    addons: Mapping[str, Any]
    remote_id: str | None
    expires_at: datetime | None = None


@dataclass(frozen=True)
class Changes:
    """What an edit asks for. Only the parts that change are set."""

    params: Mapping[str, Any] | None = None
    addons: Mapping[str, Any] | None = None
    tariff: TariffInfo | None = None
    expires_at: datetime | None = None
    #: values before the change, for the parts that change
    old_params: Mapping[str, Any] | None = None
    old_addons: Mapping[str, Any] | None = None
    old_tariff: TariffInfo | None = None

    def is_empty(self) -> bool:
        return all(
            v is None for v in (self.params, self.addons, self.tariff, self.expires_at)
        )


class ResourceTaken(ModuleError):
    """Raised by :meth:`OperationContext.claim_resource` when nothing in the pool is
    free. A permanent error: unhandled, it becomes a task saying so."""


@dataclass
class OperationContext:
    """Passed to every lifecycle hook.

    ``operation_id`` is the idempotency key: a hook may be called again with the same
    key (after a crash or a timeout) and must treat work already done as success.
    """

    operation_id: str
    kind: str
    attempt: int
    module_name: str
    service: ServiceInfo
    settings: BaseModel
    _save_progress: Callable[..., None] = field(repr=False, default=lambda **kw: None)
    _claim_resource: Callable[..., str] = field(repr=False, default=None)  # type: ignore[assignment]
    _release_resource: Callable[..., None] = field(repr=False, default=None)  # type: ignore[assignment]
    _held_resource: Callable[..., str | None] = field(repr=False, default=None)  # type: ignore[assignment]
    #: the configured processing module (a module plugin may be configured several
    #: times, e.g. one per data centre); ``module_name`` is the plugin's name
    processing_module_id: int | None = None
    processing_module_name: str | None = None

    def save_progress(
        self, *, remote_id: str | None = None, params: Mapping[str, Any] | None = None
    ) -> None:
        """Commit progress now, before the hook returns (e.g. the panel's id of the
        new account), so a retry after a crash can find it in ``service.remote_id``."""
        self._save_progress(remote_id=remote_id, params=params)
        if remote_id is not None or params is not None:
            new_params = dict(self.service.params)
            new_params.update(params or {})
            self.service = dataclasses.replace(
                self.service,
                remote_id=remote_id if remote_id is not None else self.service.remote_id,
                params=new_params,
            )

    def claim_resource(self, pool: str, candidates: list[str]) -> str:
        """Claim one free named resource of ``pool`` for this service.

        The database decides: two services racing never get the same resource. A
        resource this service already holds is returned again (idempotent). Raises
        :class:`ResourceTaken` when every candidate is taken.
        """
        return self._claim_resource(pool=pool, candidates=candidates)

    def held_resource(self, pool: str) -> str | None:
        """The resource of ``pool`` this service holds, if any (claims nothing)."""
        return self._held_resource(pool=pool)

    def release_resource(self, pool: str, name: str, *, state: str = "free") -> None:
        """Give a resource back. ``state`` other than ``free`` (e.g. ``needs_wipe``)
        keeps it out of allocation until staff free it."""
        self._release_resource(pool=pool, name=name, state=state)


@dataclass(frozen=True)
class Done:
    """The operation is complete. ``params`` are main settings the module assigned
    (an IP address, a generated password); they are merged into the service's."""

    params: Mapping[str, Any] = field(default_factory=dict)
    remote_id: str | None = None
    message: str = ""


@dataclass(frozen=True)
class ManualWork:
    """The module asks staff to do (the rest of) the work: the engine creates a task.

    ``description`` is the task description; ``close_actions`` says what closing the
    task will do (the engine writes a default when empty); ``params`` are main
    settings the module already knows, pre-filled in the task.
    """

    description: str
    close_actions: str = ""
    params: Mapping[str, Any] = field(default_factory=dict)
    remote_id: str | None = None


@dataclass(frozen=True)
class Failed:
    """What the error-wrapping layer makes of an exception, a timeout or a missing
    module. Modules do not return it: they raise :class:`ModuleError` or
    :class:`TransientModuleError`."""

    message: str
    transient: bool = False
    details: str | None = None


HookResult = Done | ManualWork | Failed
