"""Every hook of fulfil, in one place.

Two kinds of hooks:

* **Processing-module hooks** (``fulfil_module_info``, ``fulfil_check_connection``
  and the five lifecycle hooks). The core routes each call to exactly one module:
  the processing module of the service's tariff plan. They are ``firstresult``.
* **Observer hooks** (``fulfil_service_status_changed``, ``fulfil_task_created``,
  …). Called on every registered plugin, inside the transaction that made the
  change, so an observer may write rows of its own (e.g. an outbox) that commit or
  roll back together with the event. Their return values are ignored.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session

    from fulfil.module import Changes, HookResult, ModuleInfo, OperationContext

PROJECT = "fulfil"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

#: the lifecycle hook of each operation kind
LIFECYCLE_HOOKS = {
    "open": "fulfil_open",
    "edit": "fulfil_edit",
    "close": "fulfil_close",
    "suspend": "fulfil_suspend",
    "resume": "fulfil_resume",
}


# -- processing modules ----------------------------------------------------------


@hookspec(firstresult=True)
def fulfil_module_info() -> ModuleInfo:
    """Describe the module. Called once when the module is loaded.

    :return: a :class:`fulfil.ModuleInfo`: title, supported operations, the pydantic
        settings model (connection settings; ``SecretStr`` fields are masked
        everywhere), the params model (main settings of a service), the add-ons it
        understands, its retry policy and per-call timeout.
    :raises: anything raised makes the module fail to load; it is reported by name
        with the reason and services bound to it get tasks.
    """


@hookspec(firstresult=True)
def fulfil_check_connection(settings: Any) -> str:
    """Staff pressed "check connection" on a processing module.

    :param settings: the module's validated settings model instance.
    :return: a sentence for staff saying that the panel is reachable (and, if known,
        its version).
    :raises ModuleError: with the reason it is not reachable.
    """


@hookspec(firstresult=True)
def fulfil_open(ctx: OperationContext) -> HookResult:
    """A service was ordered: create it on the panel.

    :param ctx: the service, the module settings, and the idempotency key
        ``ctx.operation_id``. A repeated call with the same key (after a crash or a
        timeout) must succeed without creating a duplicate.
    :return: :class:`fulfil.Done` (with main settings the module assigned, e.g. an
        IP address or password, and the panel's ``remote_id``) or
        :class:`fulfil.ManualWork` to ask staff to finish (a *setup* task).
    :raises TransientModuleError: retry later. :raises ModuleError: give up, task.
    """


@hookspec(firstresult=True)
def fulfil_edit(ctx: OperationContext, changes: Changes) -> HookResult:
    """The service's params, add-ons, tariff plan or expiry change.

    :param ctx: the service *before* the change.
    :param changes: a :class:`fulfil.Changes` with only the parts that change.
    :return: ``Done`` (the changes are then applied to the service) or ``ManualWork``
        (a *change* task; staff apply it and closing the task applies the changes).
    :raises TransientModuleError: retry later. :raises ModuleError: give up, task.
    """


@hookspec(firstresult=True)
def fulfil_close(ctx: OperationContext) -> HookResult:
    """The service is deleted: remove it from the panel. Already gone is success.

    :return: ``Done`` (service → deleted) or ``ManualWork`` (a *delete* task).
    :raises TransientModuleError: retry later. :raises ModuleError: give up, task.
    """


@hookspec(firstresult=True)
def fulfil_suspend(ctx: OperationContext) -> HookResult:
    """The service is suspended (e.g. unpaid): stop it, keep its data.

    :return: ``Done`` (service → suspended) or ``ManualWork`` (a *suspend* task).
    :raises TransientModuleError: retry later. :raises ModuleError: give up, task.
    """


@hookspec(firstresult=True)
def fulfil_resume(ctx: OperationContext) -> HookResult:
    """A suspended service is resumed: restore exactly what was there.

    :return: ``Done`` (service → active) or ``ManualWork`` (a *resume* task).
    :raises TransientModuleError: retry later. :raises ModuleError: give up, task.
    """


# -- observers --------------------------------------------------------------------


@hookspec
def fulfil_service_status_changed(
    session: Session, service_id: int, old_status: str, new_status: str
) -> None:
    """A service's status changed (e.g. ``processing`` → ``active``).

    Called on every plugin inside the transaction that changed it.
    """


@hookspec
def fulfil_task_created(session: Session, task_id: int) -> None:
    """A task was created for a department. Called on every plugin, in the
    transaction that created it."""


@hookspec
def fulfil_task_transferred(
    session: Session, task_id: int, from_department_id: int, to_department_id: int
) -> None:
    """A task was passed to another department. Called on every plugin, in the
    transaction that moved it."""


@hookspec
def fulfil_task_closed(session: Session, task_id: int) -> None:
    """A task was closed (by staff, or by itself after a successful retry).
    Called on every plugin, in the transaction that closed it."""


@hookspec
def fulfil_service_opened(session: Session, service_id: int, params: dict) -> None:
    """A service became active for the first time, with its full main settings
    (secrets included: this is how the client learns them, e.g. by email).
    Called on every plugin, in the transaction that activated it."""


@hookspec
def fulfil_service_changed(session: Session, service_id: int, params: dict) -> None:
    """An edit of a service was applied, with its new main settings.
    Called on every plugin, in the transaction that applied it."""
