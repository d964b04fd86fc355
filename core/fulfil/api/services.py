"""Services: order, look, change, suspend, resume, delete. Each change is queued as
an operation and answered with 202: the worker (or a task) carries it out."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, Path, Query
from sqlalchemy.exc import IntegrityError

from fulfil.api import schemas as s
from fulfil.api import views
from fulfil.api.deps import StaffCaller
from fulfil.api.errors import ERROR_RESPONSES
from fulfil.api.pagination import Cursor, Limit, decode, encode
from fulfil.errors import Forbidden
from fulfil.models import TariffPlan
from fulfil.services import lifecycle

router = APIRouter(responses=ERROR_RESPONSES, tags=["services"])

ServiceId = Annotated[int, Path(ge=1, le=s.MAX_ID)]
ServiceStatus = Literal["ordered", "processing", "active", "suspended", "deleted"]


def _may_order_on(staff, tariff: TariffPlan | None) -> None:
    # a missing tariff is the service layer's to report (422 naming tariff_id)
    if tariff is None or staff.is_admin:
        return
    if tariff.processing_module.department_id not in staff.department_ids:
        raise Forbidden(f"you may order only on tariff plans of your departments; {tariff.name} is not one")


@router.post("/services", response_model=s.ServiceRead, status_code=202)
def order_service(
    body: s.ServiceCreate,
    caller: StaffCaller,
    idempotency_key: Annotated[
        str | None,
        Header(max_length=200, description="repeat a request with the same key: the same service, nothing new"),
    ] = None,
):
    for attempt in (1, 2):
        try:
            with caller.session() as (session, staff):
                _may_order_on(staff, session.get(TariffPlan, body.tariff_id))
                svc = lifecycle.order_service(
                    session=session, client_id=body.client_id, tariff_id=body.tariff_id, params=body.params,
                    addons=body.addons, expires_at=body.expires_at, idempotency_key=idempotency_key or None,
                    staff=staff,
                )
                return views.service(session, svc)
        except IntegrityError:
            # two requests with one Idempotency-Key raced: the loser finds the winner's service
            if attempt == 2 or not idempotency_key:
                raise
    raise AssertionError("unreachable")


@router.get("/services", response_model=s.Page[s.ServiceRead])
def list_services(
    caller: StaffCaller,
    status: ServiceStatus | None = None,
    client_id: Annotated[int | None, Query(ge=1, le=s.MAX_ID)] = None,
    tariff_id: Annotated[int | None, Query(ge=1, le=s.MAX_ID)] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
):
    with caller.session(read_only=True) as (session, staff):
        rows = lifecycle.list_services(
            session=session, staff=staff, status=status, client_id=client_id, tariff_id=tariff_id,
            limit=limit + 1, after_id=decode("v", cursor),
        )
        nxt = encode("v", rows[limit - 1].id) if len(rows) > limit else None
        return s.Page[s.ServiceRead](items=[views.service(session, v) for v in rows[:limit]], next_cursor=nxt)


@router.get("/services/{service_id}", response_model=s.ServiceDetail)
def get_service(service_id: ServiceId, caller: StaffCaller):
    with caller.session(read_only=True) as (session, staff):
        svc = lifecycle.get_service(session=session, service_id=service_id, staff=staff)
        return views.service(session, svc, detail=True)


def _after(session, staff, service_id: int) -> s.ServiceRead:
    return views.service(session, lifecycle.get_service(session=session, service_id=service_id, staff=staff))


@router.patch("/services/{service_id}", response_model=s.ServiceRead, status_code=202)
def edit_service(service_id: ServiceId, body: s.ServiceUpdate, caller: StaffCaller):
    with caller.session() as (session, staff):
        lifecycle.edit_service(session=session, service_id=service_id, staff=staff, **body.model_dump(exclude_none=True))
        return _after(session, staff, service_id)


@router.post("/services/{service_id}/suspend", response_model=s.ServiceRead, status_code=202)
def suspend_service(service_id: ServiceId, caller: StaffCaller):
    with caller.session() as (session, staff):
        lifecycle.suspend_service(session=session, service_id=service_id, staff=staff)
        return _after(session, staff, service_id)


@router.post("/services/{service_id}/resume", response_model=s.ServiceRead, status_code=202)
def resume_service(service_id: ServiceId, caller: StaffCaller):
    with caller.session() as (session, staff):
        lifecycle.resume_service(session=session, service_id=service_id, staff=staff)
        return _after(session, staff, service_id)


@router.delete("/services/{service_id}", response_model=s.ServiceRead, status_code=202)
def delete_service(service_id: ServiceId, caller: StaffCaller):
    with caller.session() as (session, staff):
        lifecycle.delete_service(session=session, service_id=service_id, staff=staff)
        return _after(session, staff, service_id)
