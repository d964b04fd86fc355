"""Ordering, editing, suspending, resuming and deleting services.

Each request is checked against the service's *target status* (what it will be once
every queued operation is done), and the check is a conditional UPDATE: two
concurrent "suspend" requests cannot both pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import or_, select, update
from sqlalchemy.orm import Session

from fulfil import history, secrets
from fulfil.app import registry_of
from fulfil.db import utcnow
from fulfil.errors import Conflict, InvalidInput, NotFound
from fulfil.models import (
    UNFINISHED_OPERATION_STATES,
    Client,
    HistoryEntry,
    Operation,
    ProcessingModule,
    Service,
    Staff,
    TariffPlan,
    Task,
)
from fulfil.operations import request_operation

#: which target statuses allow a request, and the target status it leads to
TRANSITIONS: dict[str, tuple[frozenset[str], str | None]] = {
    "edit": (frozenset({"active", "suspended"}), None),
    "suspend": (frozenset({"active"}), "suspended"),
    "resume": (frozenset({"suspended"}), "active"),
    "close": (frozenset({"active", "suspended"}), "deleted"),
}
VERB = {"edit": "changed", "suspend": "suspended", "resume": "resumed", "close": "deleted"}


def visible_service_clause(staff: Staff | None):
    """Staff see services of their departments' processing modules and services
    with a task in their departments; admins (and the system) see all."""
    if staff is None or staff.is_admin:
        return None
    dept_ids = list(staff.department_ids)
    return or_(
        Service.tariff_id.in_(
            select(TariffPlan.id)
            .join(ProcessingModule, TariffPlan.processing_module_id == ProcessingModule.id)
            .where(ProcessingModule.department_id.in_(dept_ids))
        ),
        Service.id.in_(select(Task.service_id).where(Task.department_id.in_(dept_ids))),
    )


def get_service(*, session: Session, service_id: int, staff: Staff | None = None, for_update: bool = False) -> Service:
    query = select(Service).where(Service.id == service_id)
    clause = visible_service_clause(staff)
    if clause is not None:
        query = query.where(clause)
    service = session.scalar(query)
    if service is None:
        raise NotFound("service", service_id)
    return service


def list_services(
    *,
    session: Session,
    staff: Staff | None = None,
    status: str | None = None,
    client_id: int | None = None,
    tariff_id: int | None = None,
    limit: int = 50,
    after_id: int | None = None,
) -> list[Service]:
    query = select(Service).order_by(Service.id.desc()).limit(limit)
    clause = visible_service_clause(staff)
    if clause is not None:
        query = query.where(clause)
    if status:
        query = query.where(Service.status == status)
    if client_id:
        query = query.where(Service.client_id == client_id)
    if tariff_id:
        query = query.where(Service.tariff_id == tariff_id)
    if after_id:
        query = query.where(Service.id < after_id)
    return list(session.scalars(query))


def pending_operation(session: Session, service_id: int) -> Operation | None:
    return session.scalar(
        select(Operation)
        .where(Operation.service_id == service_id, Operation.state.in_(UNFINISHED_OPERATION_STATES))
        .order_by(Operation.id)
        .limit(1)
    )


def service_history(session: Session, service_id: int, limit: int = 200) -> list[HistoryEntry]:
    rows = session.scalars(
        select(HistoryEntry)
        .where(HistoryEntry.service_id == service_id)
        .order_by(HistoryEntry.id.desc())
        .limit(limit)
    ).all()
    return list(reversed(rows))


def params_model_of(session: Session, tariff: TariffPlan):
    info = registry_of(session).info(tariff.processing_module.plugin)
    return info.params_model if info else None


def masked_params(session: Session, service: Service) -> dict[str, Any]:
    model = params_model_of(session, service.tariff)
    return secrets.mask(service.params, model)


def _validate_params(session: Session, tariff: TariffPlan, params: Mapping[str, Any]) -> dict[str, Any]:
    model = params_model_of(session, tariff)
    if model is None:
        # the module is missing: keep what was asked; the engine turns the
        # operation into a task that says the module is not installed
        return secrets.plain(dict(params))
    return secrets.validate(model, params, field_prefix="params")


def _validate_addons(tariff: TariffPlan, addons: Mapping[str, Any] | None, *, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
    definitions = tariff.addons or {}
    out = dict(base) if base is not None else {n: d.get("default", d.get("min", 0)) for n, d in definitions.items()}
    errors = []
    for name, value in (addons or {}).items():
        field = f"addons.{name}"
        spec = definitions.get(name)
        if spec is None:
            errors.append((field, f"not an add-on of tariff plan {tariff.name}"))
            continue
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append((field, "must be a whole number"))
            continue
        lo, hi = spec.get("min", 0), spec.get("max")
        if value < lo or (hi is not None and value > hi):
            errors.append((field, f"must be between {lo} and {hi if hi is not None else '∞'}"))
            continue
        out[name] = value
    if errors:
        raise InvalidInput(errors)
    return out


def order_service(
    *,
    session: Session,
    client_id: int,
    tariff_id: int,
    params: Mapping[str, Any] | None = None,
    addons: Mapping[str, Any] | None = None,
    expires_at: datetime | None = None,
    idempotency_key: str | None = None,
    staff: Staff | None = None,
) -> Service:
    """Order a service: the service row and its ``open`` operation, in one transaction.

    With an ``idempotency_key`` a repeated order returns the first service and starts
    nothing new.
    """
    if idempotency_key:
        existing = session.scalar(select(Service).where(Service.idempotency_key == idempotency_key))
        if existing is not None:
            if existing.client_id != client_id or existing.tariff_id != tariff_id:
                raise Conflict("this Idempotency-Key was already used for a different order")
            return existing
    client = session.get(Client, client_id)
    if client is None:
        raise InvalidInput.one("client_id", f"client {client_id} does not exist")
    tariff = session.get(TariffPlan, tariff_id)
    if tariff is None:
        raise InvalidInput.one("tariff_id", f"tariff plan {tariff_id} does not exist")
    merged = {**(tariff.default_params or {}), **(params or {})}
    stored_params = _validate_params(session, tariff, merged)
    stored_addons = _validate_addons(tariff, addons)
    now = utcnow()
    service = Service(
        client_id=client.id,
        tariff_id=tariff.id,
        status="ordered",
        target_status="active",
        params=stored_params,
        addons=stored_addons,
        expires_at=expires_at,
        idempotency_key=idempotency_key,
        version=1,
        created_at=now,
        updated_at=now,
    )
    session.add(service)
    session.flush()
    history.record(
        session, service_id=service.id, event="service.ordered", message=f"ordered on tariff plan {tariff.name}", staff=staff
    )
    request_operation(session, service=service, kind="open", staff=staff)
    return service


def _transition(session: Session, service: Service, kind: str) -> None:
    """The database decides: only one of two racing requests moves the target."""
    allowed, target = TRANSITIONS[kind]
    values: dict[str, Any] = {"version": Service.version + 1, "updated_at": utcnow()}
    if target:
        values["target_status"] = target
    result = session.execute(
        update(Service)
        .where(Service.id == service.id, Service.target_status.in_(allowed))
        .values(**values)
        .execution_options(synchronize_session=False)
    )
    if result.rowcount != 1:
        session.refresh(service)
        state = service.target_status
        now = "is" if service.status == state else "will be (once queued operations finish)"
        raise Conflict(f"service #{service.id} {now} {state}: it cannot be {VERB[kind]}")
    session.refresh(service)


def edit_service(
    *,
    session: Session,
    service_id: int,
    params: Mapping[str, Any] | None = None,
    addons: Mapping[str, Any] | None = None,
    tariff_id: int | None = None,
    expires_at: datetime | None = None,
    staff: Staff | None = None,
) -> Operation:
    service = get_service(session=session, service_id=service_id, staff=staff)
    payload: dict[str, Any] = {}
    tariff = service.tariff
    if tariff_id is not None and tariff_id != service.tariff_id:
        new_tariff = session.get(TariffPlan, tariff_id)
        if new_tariff is None:
            raise InvalidInput.one("tariff_id", f"tariff plan {tariff_id} does not exist")
        if new_tariff.processing_module_id != tariff.processing_module_id:
            raise InvalidInput.one(
                "tariff_id",
                "that tariff plan uses another processing module: delete the service and order it anew",
            )
        payload["tariff_id"] = new_tariff.id
        tariff = new_tariff
    if params is not None:
        merged = secrets.unmask({**service.params, **params}, service.params)
        validated = _validate_params(session, tariff, merged)
        changed = {k: v for k, v in validated.items() if service.params.get(k) != v}
        if changed:
            payload["params"] = changed
    if addons is not None:
        full = _validate_addons(tariff, addons, base=service.addons)
        changed = {k: v for k, v in full.items() if service.addons.get(k) != v}
        if changed:
            payload["addons"] = changed
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise InvalidInput.one("expires_at", "give a time zone (e.g. 2027-01-01T00:00:00Z)")
        payload["expires_at"] = expires_at.isoformat()
    if not payload:
        raise InvalidInput.one("body", "nothing to change: give params, addons, tariff_id or expires_at that differ")
    _transition(session, service, "edit")
    return request_operation(
        session, service=service, kind="edit", payload=payload, staff=staff,
        message="edit requested: " + ", ".join(sorted(payload)),
    )


def _simple(kind: str, *, session: Session, service_id: int, staff: Staff | None) -> Operation:
    service = get_service(session=session, service_id=service_id, staff=staff)
    _transition(session, service, kind)
    return request_operation(session, service=service, kind=kind, staff=staff)


def suspend_service(*, session: Session, service_id: int, staff: Staff | None = None) -> Operation:
    return _simple("suspend", session=session, service_id=service_id, staff=staff)


def resume_service(*, session: Session, service_id: int, staff: Staff | None = None) -> Operation:
    return _simple("resume", session=session, service_id=service_id, staff=staff)


def delete_service(*, session: Session, service_id: int, staff: Staff | None = None) -> Operation:
    return _simple("close", session=session, service_id=service_id, staff=staff)


def services_of_tariff(*, session: Session, tariff_id: int, status: str | None = None) -> Sequence[int]:
    query = select(Service.id).where(Service.tariff_id == tariff_id).order_by(Service.id)
    if status:
        query = query.where(Service.target_status == status)
    return session.scalars(query).all()
