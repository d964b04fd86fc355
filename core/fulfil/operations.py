"""The operations engine: the operations table is the queue.

* A request writes an :class:`Operation` row in the transaction that records it.
* A worker *claims* due operations in one short transaction (``FOR UPDATE SKIP
  LOCKED`` on PostgreSQL; SQLite serialises writers itself), holding a lease it
  renews while the module runs. Per service only the oldest unfinished operation is
  ever due, so operations on one service run one at a time, in request order.
* The module runs outside any transaction, under a timeout.
* A second short transaction *finishes* it — but only while this worker still holds
  the lease: a worker that lost its lease (it stalled, another took over) changes
  nothing.
"""

from __future__ import annotations

import logging
import os
import queue
import random
import socket
import threading
import time
import uuid
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import and_, delete, event, exists, insert, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, aliased, sessionmaker

from fulfil import describe, history
from fulfil.db import is_sqlite, session_factory, utcnow
from fulfil.errors import InvalidInput
from fulfil.models import (
    TASK_TYPE_OF_OPERATION,
    Client,
    HistoryEntry,
    UNFINISHED_OPERATION_STATES,
    Operation,
    ProcessingModule,
    ResourceClaim,
    Service,
    Staff,
    TariffPlan,
    Task,
)
from fulfil.module import (
    Changes,
    ClientInfo,
    Done,
    Failed,
    ManualWork,
    ModuleError,
    ModuleInfo,
    OperationContext,
    ResourceTaken,
    RetryPolicy,
    ServiceInfo,
    TariffInfo,
)
from fulfil.plugins import ModuleRegistry, failure_from_exception

log = logging.getLogger(__name__)

#: the status a service has once an operation of this kind is done (edit keeps it)
STATUS_AFTER = {"open": "active", "close": "deleted", "suspend": "suspended", "resume": "active"}


# -- views handed to modules ----------------------------------------------------------


def tariff_info(tariff: TariffPlan) -> TariffInfo:
    return TariffInfo(
        id=tariff.id,
        name=tariff.name,
        service_type=tariff.service_type,
        addon_limits=dict(tariff.addons or {}),
    )


def service_info(service: Service) -> ServiceInfo:
    return ServiceInfo(
        id=service.id,
        status=service.status,
        client=ClientInfo(id=service.client.id, name=service.client.name, email=service.client.email),
        tariff=tariff_info(service.tariff),
        params=dict(service.params or {}),
        addons=dict(service.addons or {}),
        remote_id=service.remote_id,
        expires_at=service.expires_at,
    )


def changes_of(session: Session, service: ServiceInfo, payload: Mapping[str, Any]) -> Changes:
    """The :class:`Changes` an edit operation's payload asks for."""
    new_tariff = None
    if payload.get("tariff_id") is not None:
        tariff = session.get(TariffPlan, payload["tariff_id"])
        new_tariff = tariff_info(tariff) if tariff else None
    params = payload.get("params")
    addons = payload.get("addons")
    expires = payload.get("expires_at")
    return Changes(
        params={**service.params, **params} if params is not None else None,
        addons={**service.addons, **addons} if addons is not None else None,
        tariff=new_tariff,
        expires_at=datetime.fromisoformat(expires) if expires else None,
        old_params=dict(service.params) if params is not None else None,
        old_addons=dict(service.addons) if addons is not None else None,
        old_tariff=service.tariff if new_tariff else None,
    )


def lock_service(session: Session, service_id: int) -> Service:
    """The service row, locked until the transaction ends (PostgreSQL; SQLite's
    writers are serialised already)."""
    return session.scalars(
        select(Service).where(Service.id == service_id).with_for_update(of=Service)
    ).one()


# -- waking workers in this process ----------------------------------------------------

_wakers: weakref.WeakSet[threading.Event] = weakref.WeakSet()


@event.listens_for(Session, "after_commit")
def _wake_after_commit(session: Session) -> None:
    if session.info.pop("fulfil.wake", False):
        for waker in list(_wakers):
            waker.set()


# -- requests ----------------------------------------------------------------------------


@dataclass(frozen=True)
class RequestedOperation:
    """What a request queued (the operation row's identity)."""

    id: int
    key: str
    kind: str
    service_id: int
    state: str = "pending"


def request_operation(
    session: Session,
    *,
    service: Service | None = None,
    service_id: int | None = None,
    kind: str,
    payload: Mapping[str, Any] | None = None,
    staff: Staff | None = None,
    message: str | None = None,
) -> RequestedOperation:
    """Queue an operation in the caller's transaction (it commits with the request).

    Plain inserts, no ORM unit of work: this is the hot path of every request."""
    sid = service.id if service is not None else service_id
    if service is not None:
        session.flush()  # the service row must exist before its operation
    now = utcnow()
    key = str(uuid.uuid4())
    # the connection, not the ORM session: plain statements skip the ORM's
    # bulk-persistence machinery on this hot path
    conn = session.connection()
    op_id = conn.execute(
        insert(Operation)
        .values(
            key=key, service_id=sid, kind=kind, payload=dict(payload or {}), state="pending",
            attempts=0, run_after=now, requested_by_id=staff.id if staff else None, created_at=now,
        )
        .returning(Operation.id)
    ).scalar_one()
    conn.execute(
        insert(HistoryEntry).values(
            service_id=sid, created_at=now, event="operation.requested",
            message=message or f"{kind} requested", staff_id=staff.id if staff else None,
            actor=staff.login if staff else "system", operation_id=op_id,
        )
    )
    session.info["fulfil.wake"] = True
    return RequestedOperation(id=op_id, key=key, kind=kind, service_id=sid)


# -- outcomes, shared by the engine and by closing a task ----------------------------------


def complete_operation(
    session: Session,
    registry: ModuleRegistry,
    *,
    op_id: int,
    kind: str,
    payload: Mapping[str, Any],
    service_id: int,
    old_status: str,
    params: Mapping[str, Any] | None,
    addons: Mapping[str, Any] | None = None,
    remote_id: str | None = None,
    staff: Staff | None = None,
    actor: str | None = None,
    message: str,
) -> str:
    """Apply a done operation to its service — params/add-ons, staged edit changes,
    the new status, history, observers — in the caller's transaction. The caller has
    already marked the operation done (with the conditional UPDATE that proved it
    may). Plain statements: this runs once per operation. Returns the new status."""
    now = utcnow()
    values: dict[str, Any] = {"updated_at": now}
    if params is not None:
        values["params"] = dict(params)
    if addons is not None:
        values["addons"] = dict(addons)
    if remote_id is not None:
        values["remote_id"] = remote_id
    if kind == "edit":
        if payload.get("tariff_id") is not None:
            values["tariff_id"] = payload["tariff_id"]
        if payload.get("expires_at"):
            values["expires_at"] = datetime.fromisoformat(payload["expires_at"])
    new_status = STATUS_AFTER.get(kind, old_status)
    if kind == "edit" and old_status in ("ordered", "processing"):
        new_status = "active"
    values["status"] = new_status
    session.flush()  # history the caller recorded comes first
    conn = session.connection()
    conn.execute(update(Service).where(Service.id == service_id).values(**values))
    who = {"staff_id": staff.id if staff else None, "actor": actor or (staff.login if staff else "system")}
    rows = [dict(service_id=service_id, created_at=now, event="operation.done", message=message, operation_id=op_id, **who)]
    if new_status != old_status:
        rows.append(dict(service_id=service_id, created_at=now, event="service.status",
                         message=f"status {old_status} → {new_status}", operation_id=None, **who))
    conn.execute(insert(HistoryEntry), rows)
    if new_status != old_status:
        registry.notify("fulfil_service_status_changed", session=session, service_id=service_id,
                        old_status=old_status, new_status=new_status)
    if kind == "open" and old_status != "active":
        registry.notify("fulfil_service_opened", session=session, service_id=service_id, params=dict(params or {}))
    elif kind == "edit":
        registry.notify("fulfil_service_changed", session=session, service_id=service_id, params=dict(params or {}))
    return new_status


def open_task(
    session: Session,
    registry: ModuleRegistry,
    *,
    op: Operation,
    service: Service,
    module: ProcessingModule,
    description: str,
    close_actions: str = "",
    error: str | None = None,
    retryable: bool = False,
    main_settings: Mapping[str, Any] | None = None,
    actor: str = "system",
) -> Task:
    """Park ``op`` on a task for the module's responsible department (or update
    the task it already has)."""
    now = utcnow()
    op.state = "waiting_task"
    op.lease_owner = None
    op.lease_expires = None
    task = session.scalar(select(Task).where(Task.operation_id == op.id))
    if task is not None:
        # the task came back from a retry: it now says what the latest attempt found
        task.description = description
        task.close_actions = close_actions or describe.close_actions(op.kind)
        task.error = error
        task.retryable = task.retryable or retryable
        task.version += 1
        if main_settings:
            task.main_settings = {**task.main_settings, **main_settings}
        return task
    settings = {**service.params, **(main_settings or {})}
    addons = dict(service.addons)
    if op.kind == "edit":
        settings = {**service.params, **op.payload.get("params", {}), **(main_settings or {})}
        addons = {**service.addons, **op.payload.get("addons", {})}
    task = Task(
        type=TASK_TYPE_OF_OPERATION[op.kind],
        status="new",
        department_id=module.department_id,
        operation_id=op.id,
        service_id=service.id,
        title=f"{TASK_TYPE_OF_OPERATION[op.kind].capitalize()} {service.tariff.name} for {service.client.name}",
        description=description,
        close_actions=close_actions or describe.close_actions(op.kind),
        error=error,
        retryable=retryable,
        main_settings=settings,
        addons=addons,
        created_at=now,
    )
    session.add(task)
    session.flush()
    history.record(
        session,
        service_id=service.id,
        event="task.created",
        message=f"{task.type} task #{task.id} created for department {module.department.name}"
        + (f": {error}" if error else ""),
        actor=actor,
        task_id=task.id,
        operation_id=op.id,
    )
    registry.notify("fulfil_task_created", session=session, task_id=task.id)
    return task


def close_task_automatically(session: Session, registry: ModuleRegistry, task: Task, reason: str) -> None:
    task.status = "closed"
    task.closed_at = utcnow()
    task.version += 1
    history.record(
        session,
        service_id=task.service_id,
        event="task.closed",
        message=f"task #{task.id} closed automatically: {reason}",
        task_id=task.id,
        operation_id=task.operation_id,
    )
    session.flush()
    registry.notify("fulfil_task_closed", session=session, task_id=task.id)


# -- the worker ------------------------------------------------------------------------


@dataclass
class Claimed:
    """A claimed operation, with everything the module call needs (read in the
    claim transaction, so the call itself needs no database)."""

    op_id: int
    key: str
    kind: str
    attempt: int
    service_id: int
    plugin: str
    module_name: str
    processing_module_id: int
    settings: dict[str, Any]
    service: ServiceInfo
    changes: Changes | None
    has_task: bool
    payload: dict[str, Any] = field(default_factory=dict)
    info: ModuleInfo | None = None
    enabled: bool = True
    retry: RetryPolicy = field(default_factory=RetryPolicy)


class Worker:
    """Claims and runs operations. ``start()`` runs it in threads (``fulfil serve``,
    ``fulfil worker``); ``run_pending()`` runs what is due in the calling thread."""

    def __init__(
        self,
        *,
        engine,
        registry: ModuleRegistry,
        concurrency: int = 4,
        lease_seconds: float = 30.0,
        poll_interval: float = 0.5,
        name: str | None = None,
    ) -> None:
        self.registry = registry
        self.concurrency = max(1, concurrency)
        self.lease = timedelta(seconds=lease_seconds)
        self.poll_interval = poll_interval
        self.owner = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.sessions: sessionmaker[Session] = session_factory(engine, info={"fulfil.registry": registry})
        self.postgres = not is_sqlite(engine)
        self._wake = threading.Event()
        _wakers.add(self._wake)
        self._stop = threading.Event()
        # a claim takes up to eight times as many operations as there are runners:
        # one claim transaction serves many calls, and runners rarely wait for a
        # claim; the heartbeat keeps the leases of queued ones alive
        self.prefetch = max(16, self.concurrency * 8)
        self._inflight = threading.Semaphore(self.prefetch)
        self._random = random.Random()
        self._local = threading.local()
        self._running: dict[threading.Thread, tuple[Claimed, float]] = {}
        self._running_lock = threading.Lock()

    # -- claim ---------------------------------------------------------------------------

    def claim(self, limit: int) -> list[Claimed]:
        now = utcnow()
        op, earlier = Operation, aliased(Operation)
        due = or_(
            and_(op.state == "pending", op.run_after <= now),
            and_(op.state == "running", op.lease_expires < now),
        )
        blocked = (
            exists()
            .where(earlier.service_id == op.service_id)
            .where(earlier.id < op.id)
            .where(earlier.state.in_(UNFINISHED_OPERATION_STATES))
        )
        query = select(op.id).where(due, ~blocked).order_by(op.id).limit(limit)
        if self.postgres:
            query = query.with_for_update(skip_locked=True, of=op)
        with self.sessions() as session, session.begin():
            ids = list(session.scalars(query))
            if not ids:
                return []
            claimed_ids = list(
                session.scalars(
                    update(op)
                    .where(op.id.in_(ids), due)
                    .values(
                        state="running",
                        lease_owner=self.owner,
                        lease_expires=now + self.lease,
                        attempts=op.attempts + 1,
                    )
                    .returning(op.id),
                    execution_options={"synchronize_session": False},
                )
            )
            if not claimed_ids:
                return []
            result = self._load_claimed(session, claimed_ids, now)
        for c in result:
            log.info("claimed operation %s (%s of service %s, attempt %s)", c.op_id, c.kind, c.service_id, c.attempt)
        return result

    def _load_claimed(self, session: Session, claimed_ids: list[int], now: datetime) -> list[Claimed]:
        """Everything the module calls need, in one query (plain rows, no ORM
        objects: this runs for every operation)."""
        has_task = exists().where(Task.operation_id == Operation.id).label("has_task")
        rows = session.connection().execute(
            select(
                Operation.id, Operation.key, Operation.kind, Operation.attempts, Operation.payload,
                Service.id.label("service_id"), Service.status, Service.params, Service.addons,
                Service.remote_id, Service.expires_at,
                Client.id.label("client_id"), Client.name.label("client_name"), Client.email,
                TariffPlan.id.label("tariff_id"), TariffPlan.name.label("tariff_name"),
                TariffPlan.service_type, TariffPlan.addons.label("addon_limits"),
                ProcessingModule.id.label("module_id"), ProcessingModule.name.label("module_name"),
                ProcessingModule.plugin, ProcessingModule.settings, ProcessingModule.enabled, has_task,
            )
            .join(Service, Service.id == Operation.service_id)
            .join(Client, Client.id == Service.client_id)
            .join(TariffPlan, TariffPlan.id == Service.tariff_id)
            .join(ProcessingModule, ProcessingModule.id == TariffPlan.processing_module_id)
            .where(Operation.id.in_(claimed_ids))
            .order_by(Operation.id)
        ).all()
        opening = [r.service_id for r in rows if r.kind == "open" and r.status == "ordered"]
        if opening:
            # the service shows that its open is under way
            session.connection().execute(
                update(Service).where(Service.id.in_(opening), Service.status == "ordered")
                .values(status="processing", updated_at=now)
            )
        history_rows = [
            dict(service_id=r.service_id, created_at=now, event="operation.started", actor="system",
                 message=f"{r.kind} started (attempt {r.attempts})", operation_id=r.id)
            for r in rows
        ] + [
            dict(service_id=sid, created_at=now, event="service.status", actor="system",
                 message="status ordered → processing", operation_id=None)
            for sid in opening
        ]
        session.connection().execute(insert(HistoryEntry), history_rows)
        for sid in opening:
            self.registry.notify("fulfil_service_status_changed", session=session, service_id=sid,
                                 old_status="ordered", new_status="processing")
        result = []
        for r in rows:
            info = self.registry.info(r.plugin)
            service = ServiceInfo(
                id=r.service_id,
                status="processing" if r.service_id in opening else r.status,
                client=ClientInfo(id=r.client_id, name=r.client_name, email=r.email),
                tariff=TariffInfo(id=r.tariff_id, name=r.tariff_name, service_type=r.service_type,
                                  addon_limits=dict(r.addon_limits or {})),
                params=dict(r.params or {}),
                addons=dict(r.addons or {}),
                remote_id=r.remote_id,
                expires_at=r.expires_at,
            )
            payload = dict(r.payload or {})
            result.append(
                Claimed(
                    op_id=r.id, key=r.key, kind=r.kind, attempt=r.attempts,
                    service_id=r.service_id, plugin=r.plugin, module_name=r.module_name,
                    processing_module_id=r.module_id, settings=dict(r.settings or {}),
                    service=service,
                    changes=changes_of(session, service, payload) if r.kind == "edit" else None,
                    has_task=bool(r.has_task), payload=payload, info=info, enabled=bool(r.enabled),
                    retry=info.retry if info else RetryPolicy(),
                )
            )
        return result

    # -- run -----------------------------------------------------------------------------

    def execute(self, c: Claimed, *, timed: bool = True):
        """Call the module. Never raises; returns Done, ManualWork or Failed.

        ``timed``: run the call in a helper thread and give up after the module's
        timeout. The threaded worker passes False: its watchdog enforces the
        timeout on the runner thread itself, saving two thread hand-offs a call."""
        if c.info is None:
            return Failed(self.registry.missing_reason(c.plugin))
        if not c.enabled:
            return Failed(f"processing module {c.module_name} is disabled: enable it and press Retry, or do the work by hand")
        if c.attempt > c.retry.max_attempts + 2:
            # only lease take-overs get here (failures stop at max_attempts): a
            # module that kills its worker every time must not loop for ever
            return Failed(
                f"gave up after {c.attempt - 1} attempts: each time the worker running "
                "it stopped or lost its lease before finishing"
            )
        try:
            settings = c.info.settings_model.model_validate(c.settings)
        except Exception as exc:  # noqa: BLE001
            reason = InvalidInput.from_pydantic(exc).message if hasattr(exc, "errors") else str(exc)
            return Failed(f"the settings of processing module {c.module_name} are invalid: {reason}")
        ctx = OperationContext(
            operation_id=c.key,
            kind=c.kind,
            attempt=c.attempt,
            module_name=c.plugin,
            service=c.service,
            settings=settings,
            _save_progress=lambda **kw: self._save_progress(c, **kw),
            _claim_resource=lambda **kw: self._claim_resource(c, **kw),
            _release_resource=lambda **kw: self._release_resource(c, **kw),
            _held_resource=lambda **kw: self._held_resource(c, **kw),
            processing_module_id=c.processing_module_id,
            processing_module_name=c.module_name,
        )
        call = lambda: self.registry.call_lifecycle(c.plugin, ctx, c.changes)  # noqa: E731
        if timed:
            result = self._call_with_timeout(c, call)
        else:
            try:
                result = call()
            except Exception as exc:  # noqa: BLE001 - the wrapper catches; this is the last net
                    result = failure_from_exception(exc, c.plugin)
        # progress the module saved (remote id, params) is part of what finish writes
        c.service = ctx.service
        return result

    def _call_with_timeout(self, c: Claimed, call: Callable[[], Any]):
        caller = getattr(self._local, "caller", None)
        if caller is None:
            caller = self._local.caller = _TimedCaller(f"fulfil-call-{threading.current_thread().name}")
        finished, result, error = caller.call(call, c.info.timeout)
        if not finished:
            log.warning("operation %s: module %s timed out after %ss", c.op_id, c.plugin, c.info.timeout)
            return Failed(
                f"module {c.plugin} did not finish the {c.kind} within {c.info.timeout:g} seconds (timeout)"
            )
        if error is not None:
            return failure_from_exception(error, c.plugin)
        return result

    def _holds_lease(self, session: Session, op_id: int) -> bool:
        query = select(Operation.state, Operation.lease_owner).where(Operation.id == op_id)
        if self.postgres:
            query = query.with_for_update()
        row = session.execute(query).one_or_none()
        return row is not None and row.state == "running" and row.lease_owner == self.owner

    def _save_progress(self, c: Claimed, *, remote_id=None, params=None) -> None:
        with self.sessions() as session, session.begin():
            if not self._holds_lease(session, c.op_id):
                raise ModuleError("this worker lost the operation's lease; progress not saved")
            service = lock_service(session, c.service_id)
            if remote_id is not None:
                service.remote_id = remote_id
            if params:
                service.params = {**service.params, **params}
            service.updated_at = utcnow()

    def _held_resource(self, c: Claimed, *, pool: str) -> str | None:
        with self.sessions() as session, session.begin():
            return session.scalar(
                select(ResourceClaim.name).where(
                    ResourceClaim.pool == pool,
                    ResourceClaim.service_id == c.service_id,
                    ResourceClaim.state == "in_use",
                )
            )

    def _claim_resource(self, c: Claimed, *, pool: str, candidates: list[str]) -> str:
        held = self._held_resource(c, pool=pool)
        if held is not None:
            return held
        for name in candidates:
            try:
                with self.sessions() as session, session.begin():
                    session.add(ResourceClaim(pool=pool, name=name, service_id=c.service_id, state="in_use", claimed_at=utcnow()))
                return name
            except IntegrityError:
                continue  # the unique (pool, name) says someone else has it
        raise ResourceTaken(f"no free resource in pool {pool}: all {len(candidates)} are taken")

    def _release_resource(self, c: Claimed, *, pool: str, name: str, state: str = "free") -> None:
        with self.sessions() as session, session.begin():
            where = (ResourceClaim.pool == pool, ResourceClaim.name == name)
            if state == "free":
                session.execute(delete(ResourceClaim).where(*where))
            else:
                session.execute(update(ResourceClaim).where(*where).values(state=state, service_id=None))

    # -- finish ----------------------------------------------------------------------------

    def finish(self, c: Claimed, result) -> bool:
        """Record the outcome, if this worker still holds the lease."""
        with self.sessions() as session, session.begin():
            return self._finish_in(session, c, result)

    def finish_many(self, outcomes: list[tuple[Claimed, Any]]) -> list[bool]:
        """Record several outcomes in one transaction (group commit): each is still
        checked against its own lease."""
        with self.sessions() as session, session.begin():
            return [self._finish_in(session, c, result) for c, result in outcomes]

    def _finish_in(self, session: Session, c: Claimed, result) -> bool:
        if isinstance(result, Done):
            return self._done(session, c, result)
        op = session.scalars(
            select(Operation).where(Operation.id == c.op_id).with_for_update(of=Operation)
        ).one_or_none()
        if op is None or op.state != "running" or op.lease_owner != self.owner:
            log.warning("operation %s: lease lost, outcome discarded", c.op_id)
            return False
        service = lock_service(session, c.service_id)
        module = service.tariff.processing_module
        actor = f"module:{c.plugin}"
        task = session.scalar(select(Task).where(Task.operation_id == op.id)) if c.has_task else None
        if isinstance(result, ManualWork):
            history.record(
                session,
                service_id=service.id,
                event="operation.manual",
                message=f"{op.kind}: module {c.plugin} asks for manual work",
                actor=actor,
                operation_id=op.id,
            )
            if result.remote_id:
                service.remote_id = result.remote_id
            open_task(
                session,
                self.registry,
                op=op,
                service=service,
                module=module,
                description=result.description,
                close_actions=result.close_actions,
                main_settings=result.params,
                actor=actor,
            )
        else:
            if not isinstance(result, Failed):
                result = Failed(f"module {c.plugin} returned nothing from its {op.kind} hook")
            self._failed(session, c, op, service, module, result, task)
        return True

    def _done(self, session: Session, c: Claimed, result: Done) -> bool:
        """The hot path: three statements, like the bare-database floor."""
        now = utcnow()
        taken = session.connection().execute(
            update(Operation)
            .where(Operation.id == c.op_id, Operation.state == "running", Operation.lease_owner == self.owner)
            .values(state="done", finished_at=now, lease_owner=None, lease_expires=None, last_error=None)
        )
        if taken.rowcount != 1:
            log.warning("operation %s: lease lost, outcome discarded", c.op_id)
            return False
        params = {**c.service.params, **(result.params or {})}
        addons = None
        if c.kind == "edit" and c.changes is not None:
            if c.changes.params is not None:
                params = {**c.service.params, **c.changes.params, **(result.params or {})}
            if c.changes.addons is not None:
                addons = dict(c.changes.addons)
        complete_operation(
            session,
            self.registry,
            op_id=c.op_id,
            kind=c.kind,
            payload=c.payload,
            service_id=c.service_id,
            old_status=c.service.status,
            params=params,
            addons=addons,
            remote_id=result.remote_id,
            actor=f"module:{c.plugin}",
            message=result.message or f"{c.kind} done by module {c.plugin}",
        )
        if c.has_task:
            task = session.scalar(select(Task).where(Task.operation_id == c.op_id))
            if task is not None and task.status != "closed":
                close_task_automatically(session, self.registry, task, f"module {c.plugin} succeeded on retry")
        return True

    def _failed(self, session: Session, c: Claimed, op: Operation, service: Service, module: ProcessingModule, result: Failed, task: Task | None) -> None:
        op.last_error = result.message
        actor = f"module:{c.plugin}"
        if result.transient and task is None and op.attempts < c.retry.max_attempts:
            delay = c.retry.delay(op.attempts, self._random.random())
            op.state = "pending"
            op.run_after = utcnow() + timedelta(seconds=delay)
            op.lease_owner = None
            op.lease_expires = None
            history.record(
                session,
                service_id=service.id,
                event="operation.retry",
                message=f"{op.kind} failed (attempt {op.attempts} of {c.retry.max_attempts}): "
                f"{result.message}; next attempt in {delay:.0f} s",
                actor=actor,
                operation_id=op.id,
            )
            return
        if result.transient and task is None:
            reason = f"{result.message} (gave up after {op.attempts} attempts)"
        else:
            reason = result.message
        history.record(
            session,
            service_id=service.id,
            event="operation.failed",
            message=f"{op.kind} failed: {reason}",
            detail=result.details,
            actor=actor,
            operation_id=op.id,
        )
        info = c.info
        description = (
            f"The processing module {c.module_name} ({c.plugin}) could not {op.kind} this "
            f"service automatically:\n  {reason}\n\nFix the cause and press Retry, or do the "
            f"work by hand and close the task.\n\n"
            + describe.task_description(
                op.kind, c.service, changes=c.changes, params_model=info.params_model if info else None
            )
        )
        open_task(
            session,
            self.registry,
            op=op,
            service=service,
            module=module,
            description=description,
            error=reason,
            retryable=True,
            actor=actor,
        )

    # -- loops -------------------------------------------------------------------------------

    def run_pending(self, *, max_rounds: int = 1000) -> int:
        """Run every operation that is due now, in this thread; return how many ran."""
        ran = 0
        for _ in range(max_rounds):
            batch = self.claim(self.concurrency)
            if not batch:
                break
            for c in batch:
                self.finish(c, self.execute(c))
                ran += 1
        return ran

    def release(self, claimed: list[Claimed]) -> int:
        """Give claimed operations that never ran back to the queue."""
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(Operation)
                .where(
                    Operation.id.in_([c.op_id for c in claimed]),
                    Operation.state == "running",
                    Operation.lease_owner == self.owner,
                )
                .values(state="pending", lease_owner=None, lease_expires=None, attempts=Operation.attempts - 1)
                .execution_options(synchronize_session=False)
            )
            return result.rowcount

    def renew_leases(self) -> int:
        with self.sessions() as session, session.begin():
            result = session.execute(
                update(Operation)
                .where(Operation.lease_owner == self.owner, Operation.state == "running")
                .values(lease_expires=utcnow() + self.lease)
            )
            return result.rowcount

    def start(self) -> None:
        """Run in background threads: one claims, ``concurrency`` run modules, one
        records outcomes (several per transaction when they come together), one
        renews leases."""
        self._stop.clear()
        self._queue: queue.Queue[Claimed | None] = queue.Queue()
        self._outcomes: queue.Queue[tuple[Claimed, Any] | None] = queue.Queue()
        self._runners = [threading.Thread(target=self._dispatch, name="fulfil-claim", daemon=True)]
        self._runners += [
            threading.Thread(target=self._run_claimed, name=f"fulfil-run-{i}", daemon=True)
            for i in range(self.concurrency)
        ]
        self._recorder = threading.Thread(target=self._record_outcomes, name="fulfil-finish", daemon=True)
        self._heart = threading.Thread(target=self._heartbeat, name="fulfil-lease", daemon=True)
        for t in (*self._runners, self._recorder, self._heart):
            t.start()
        log.info("worker %s started with %s threads", self.owner, self.concurrency)

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; let running calls finish (up to ``timeout``) and record
        their outcomes; what is left keeps its lease until it expires."""
        self._stop.set()
        self._wake.set()
        for t in self._runners[:1]:  # the dispatcher: no claims after this
            t.join(timeout)
        # claimed but not started: hand them back at once rather than let their
        # leases run out
        unstarted = []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                unstarted.append(item)
        if unstarted:
            try:
                self.release(unstarted)
            except Exception:  # noqa: BLE001 - their leases expire instead
                log.exception("handing back %s claimed operations failed", len(unstarted))
        for _ in range(self.concurrency):
            self._queue.put(None)
        for t in self._runners:
            t.join(timeout)
        self._outcomes.put(None)
        self._recorder.join(timeout)
        self._heart.join(timeout)
        self._runners = []

    def _dispatch(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()
            free = 0
            while self._inflight.acquire(blocking=False):
                free += 1
            try:
                batch = self.claim(free) if free else []
            except Exception:  # noqa: BLE001 - the database may be away; try again
                log.exception("claiming operations failed")
                batch = []
            for _ in range(free - len(batch)):
                self._inflight.release()
            for c in batch:
                self._queue.put(c)
            self._watchdog()
            if not batch or len(batch) < free:
                self._wake.wait(self.poll_interval)

    def _run_claimed(self) -> None:
        me = threading.current_thread()
        while True:
            c = self._queue.get()
            if c is None:
                return
            timeout = c.info.timeout if c.info else 0.0
            with self._running_lock:
                self._running[me] = (c, time.monotonic() + timeout)
            try:
                result = self.execute(c, timed=False)
            except Exception as exc:  # noqa: BLE001 - execute should not raise; never lose it
                    result = failure_from_exception(exc, c.plugin)
            with self._running_lock:
                mine = self._running.pop(me, None)
            if mine is None:
                # the watchdog gave up on this call and recorded a timeout; a
                # fresh runner took this thread's place
                log.warning("operation %s: late result after timeout dropped", c.op_id)
                return
            self._outcomes.put((c, result))

    def _watchdog(self) -> None:
        """Calls past their module's timeout: record a timeout, and replace the
        stuck runner thread (Python cannot kill it; it is left to end on its own)."""
        now = time.monotonic()
        expired = []
        with self._running_lock:
            for thread, (c, deadline) in list(self._running.items()):
                if now > deadline:
                    del self._running[thread]
                    expired.append(c)
        for c in expired:
            log.warning("operation %s: module %s timed out after %ss", c.op_id, c.plugin, c.info.timeout)
            self._outcomes.put((c, Failed(
                f"module {c.plugin} did not finish the {c.kind} within {c.info.timeout:g} seconds (timeout)"
            )))
            runner = threading.Thread(target=self._run_claimed, name="fulfil-run-replacement", daemon=True)
            self._runners.append(runner)
            runner.start()

    def _record_outcomes(self) -> None:
        stopping = False
        while not stopping:
            item = self._outcomes.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < 64:
                try:
                    more = self._outcomes.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stopping = True
                    break
                batch.append(more)
            try:
                self._record(batch)
            finally:
                for _ in batch:
                    self._inflight.release()
                self._wake.set()

    def _record(self, batch: list[tuple[Claimed, Any]]) -> None:
        try:
            self.finish_many(batch)
            return
        except Exception:  # noqa: BLE001 - fall back to one by one below
            log.exception("recording %s outcomes together failed; recording them one by one", len(batch))
        for c, result in batch:
            for attempt in range(5):
                try:
                    self.finish(c, result)
                    break
                except Exception:  # noqa: BLE001 - keep the lease and try again
                    log.exception("finishing operation %s failed (try %s)", c.op_id, attempt + 1)
                    if self._stop.wait(0.5 * (attempt + 1)):
                        break

    def _heartbeat(self) -> None:
        interval = self.lease.total_seconds() / 3
        while not self._stop.wait(interval):
            try:
                self.renew_leases()
            except Exception:  # noqa: BLE001
                log.exception("renewing leases failed")


class _TimedCaller:
    """Runs calls in a helper thread and waits at most ``timeout`` for each.

    The thread is reused from call to call (starting a thread per call is slow
    under load). A call that times out cannot be killed — Python threads can't be —
    so its thread is abandoned to finish (or hang) on its own, and the next call
    gets a fresh thread. Its late result is dropped.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self._inbox: queue.SimpleQueue | None = None

    def _start(self) -> queue.SimpleQueue:
        inbox: queue.SimpleQueue = queue.SimpleQueue()

        def serve() -> None:
            while True:
                item = inbox.get()
                if item is None:
                    return
                fn, box, done = item
                try:
                    box["result"] = fn()
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    box["error"] = exc
                done.set()

        threading.Thread(target=serve, name=self.name, daemon=True).start()
        return inbox

    def call(self, fn: Callable[[], Any], timeout: float) -> tuple[bool, Any, BaseException | None]:
        if self._inbox is None:
            self._inbox = self._start()
        box: dict[str, Any] = {}
        done = threading.Event()
        self._inbox.put((fn, box, done))
        if not done.wait(timeout):
            # abandon the stuck thread: it exits after its call, if ever
            self._inbox.put(None)
            self._inbox = None
            return False, None, None
        return True, box.get("result"), box.get("error")

    def close(self) -> None:
        if self._inbox is not None:
            self._inbox.put(None)
            self._inbox = None
