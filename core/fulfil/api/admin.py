"""Admin endpoints: departments, staff, installed modules, processing modules,
tariff plans, clients."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from fulfil.api import schemas as s
from fulfil.api import views
from fulfil.api.deps import AdminCaller
from fulfil.api.errors import ERROR_RESPONSES, fields_renamed
from fulfil.api.pagination import Cursor, Limit, decode, encode, keyset
from fulfil.models import Client, Department, ProcessingModule, Staff, TariffPlan
from fulfil.services import catalog

router = APIRouter(responses=ERROR_RESPONSES)

IdPath = Annotated[int, Path(ge=1, le=s.MAX_ID)]


# -- departments ------------------------------------------------------------------------


@router.get("/departments", response_model=s.Page[s.DepartmentRead], tags=["admin"])
def list_departments(caller: AdminCaller, limit: Limit = 50, cursor: Cursor = None):
    with caller.session(read_only=True) as (session, _):
        rows, nxt = keyset(session, Department, kind="d", limit=limit, cursor=cursor)
        return s.Page[s.DepartmentRead](items=[s.DepartmentRead.model_validate(d) for d in rows], next_cursor=nxt)


@router.post("/departments", response_model=s.DepartmentRead, status_code=201, tags=["admin"])
def create_department(body: s.DepartmentCreate, caller: AdminCaller):
    with caller.session() as (session, _):
        dept = catalog.create_department(session=session, **body.model_dump())
        return s.DepartmentRead.model_validate(dept)


@router.patch("/departments/{department_id}", response_model=s.DepartmentRead, tags=["admin"], responses=ERROR_RESPONSES)
def update_department(department_id: Annotated[int, Path(ge=1, le=2**31 - 1)], body: s.DepartmentUpdate, caller: AdminCaller):
    """Rename a department, or change where and whether its task alerts go."""
    with caller.session() as (session, _):
        dept = catalog.update_department(session=session, department_id=department_id, **body.model_dump(exclude_unset=True))
        return s.DepartmentRead.model_validate(dept)


# -- staff ----------------------------------------------------------------------------------


@router.get("/staff", response_model=s.Page[s.StaffRead], tags=["admin"])
def list_staff(caller: AdminCaller, limit: Limit = 50, cursor: Cursor = None):
    with caller.session(read_only=True) as (session, _):
        rows, nxt = keyset(session, Staff, kind="s", limit=limit, cursor=cursor)
        return s.Page[s.StaffRead](items=[views.staff(m) for m in rows], next_cursor=nxt)


@router.post("/staff", response_model=s.StaffCreated, status_code=201, tags=["admin"])
def create_staff(body: s.StaffCreate, caller: AdminCaller):
    with caller.session() as (session, _):
        member, token = catalog.create_staff(session=session, **body.model_dump())
        return s.StaffCreated(**views.staff(member).model_dump(), token=token)


# -- installed module plugins ---------------------------------------------------------------


@router.get("/modules", response_model=s.ModulesPage, tags=["admin"])
def list_modules(caller: AdminCaller, limit: Limit = 50, cursor: Cursor = None):
    registry = caller.fulfil.registry
    loaded = [m for _, m in sorted(registry.modules.items())]
    # a handful of plugins, read from memory: the cursor is a position in the sorted list
    start = decode("m", cursor) or 0
    page = loaded[start:start + limit]
    return s.ModulesPage(
        items=[views.module(m) for m in page],
        load_errors=[s.LoadError(name=n, reason=r) for n, r in sorted(registry.load_errors.items())],
        next_cursor=encode("m", start + limit) if start + limit < len(loaded) else None,
    )


# -- processing modules -------------------------------------------------------------------


@router.get("/processing-modules", response_model=s.Page[s.ProcessingModuleRead], tags=["admin"])
def list_processing_modules(caller: AdminCaller, limit: Limit = 50, cursor: Cursor = None):
    with caller.session(read_only=True) as (session, _):
        rows, nxt = keyset(session, ProcessingModule, kind="p", limit=limit, cursor=cursor)
        return s.Page[s.ProcessingModuleRead](
            items=[views.processing_module(session, m) for m in rows], next_cursor=nxt
        )


@router.post("/processing-modules", response_model=s.ProcessingModuleRead, status_code=201, tags=["admin"])
def create_processing_module(body: s.ProcessingModuleCreate, caller: AdminCaller):
    with caller.session() as (session, _), fields_renamed({"plugin": "module"}):
        pm = catalog.create_processing_module(
            session=session, name=body.name, plugin=body.module, department_id=body.department_id,
            settings=body.settings, enabled=body.enabled,
        )
        return views.processing_module(session, pm)


@router.get("/processing-modules/{processing_module_id}", response_model=s.ProcessingModuleRead, tags=["admin"])
def get_processing_module(processing_module_id: IdPath, caller: AdminCaller):
    with caller.session(read_only=True) as (session, _):
        pm = catalog.get(session, ProcessingModule, processing_module_id, "processing module")
        return views.processing_module(session, pm)


@router.patch("/processing-modules/{processing_module_id}", response_model=s.ProcessingModuleRead, tags=["admin"])
def update_processing_module(processing_module_id: IdPath, body: s.ProcessingModuleUpdate, caller: AdminCaller):
    with caller.session() as (session, _):
        pm = catalog.update_processing_module(
            session=session, processing_module_id=processing_module_id, **body.model_dump(exclude_unset=True)
        )
        session.refresh(pm)
        return views.processing_module(session, pm)


@router.post(
    "/processing-modules/{processing_module_id}/check-connection",
    response_model=s.CheckConnectionRead,
    tags=["admin"],
)
def check_connection(processing_module_id: IdPath, caller: AdminCaller):
    # a read-only transaction: on SQLite it holds no write lock while the panel answers
    with caller.session(read_only=True) as (session, _):
        ok, message = catalog.check_connection(session=session, processing_module_id=processing_module_id)
    return s.CheckConnectionRead(ok=ok, message=message)


# -- tariff plans -------------------------------------------------------------------------------


@router.get("/tariffs", response_model=s.Page[s.TariffRead], tags=["admin"])
def list_tariffs(caller: AdminCaller, limit: Limit = 50, cursor: Cursor = None):
    with caller.session(read_only=True) as (session, _):
        rows, nxt = keyset(session, TariffPlan, kind="t", limit=limit, cursor=cursor)
        return s.Page[s.TariffRead](items=[views.tariff(session, t) for t in rows], next_cursor=nxt)


def _addons(body) -> dict | None:
    if body.addons is None:
        return None
    return {name: spec.model_dump(exclude_none=True) for name, spec in body.addons.items()}


@router.post("/tariffs", response_model=s.TariffRead, status_code=201, tags=["admin"])
def create_tariff(body: s.TariffCreate, caller: AdminCaller):
    with caller.session() as (session, _):
        plan = catalog.create_tariff(
            session=session, name=body.name, service_type=body.service_type,
            processing_module_id=body.processing_module_id, default_params=body.default_params, addons=_addons(body),
        )
        return views.tariff(session, plan)


@router.get("/tariffs/{tariff_id}", response_model=s.TariffRead, tags=["admin"])
def get_tariff(tariff_id: IdPath, caller: AdminCaller):
    with caller.session(read_only=True) as (session, _):
        return views.tariff(session, catalog.get(session, TariffPlan, tariff_id, "tariff plan"))


@router.patch("/tariffs/{tariff_id}", response_model=s.TariffRead, tags=["admin"])
def update_tariff(tariff_id: IdPath, body: s.TariffUpdate, caller: AdminCaller):
    with caller.session() as (session, _):
        changes = body.model_dump(exclude_unset=True)
        if "addons" in changes:
            changes["addons"] = _addons(body)
        plan = catalog.update_tariff(session=session, tariff_id=tariff_id, **changes)
        return views.tariff(session, plan)


# -- clients -----------------------------------------------------------------------------------


@router.get("/clients", response_model=s.Page[s.ClientRead], tags=["admin"])
def list_clients(caller: AdminCaller, limit: Limit = 50, cursor: Cursor = None):
    with caller.session(read_only=True) as (session, _):
        rows, nxt = keyset(session, Client, kind="c", limit=limit, cursor=cursor)
        return s.Page[s.ClientRead](items=[s.ClientRead.model_validate(c) for c in rows], next_cursor=nxt)


@router.post("/clients", response_model=s.ClientRead, status_code=201, tags=["admin"])
def create_client(body: s.ClientCreate, caller: AdminCaller):
    with caller.session() as (session, _):
        return s.ClientRead.model_validate(catalog.create_client(session=session, **body.model_dump()))



# -- pool resources (physical servers of the dedicated-server module) -----------------------------


@router.get("/resources", response_model=s.Page[s.ResourceRead], tags=["admin"])
def list_resources(caller: AdminCaller, pool: str | None = None):
    """Taken resources; what is not listed is free."""
    with caller.session(read_only=True) as (session, _):
        rows = catalog.list_resources(session=session, pool=pool)
        return s.Page[s.ResourceRead](items=[s.ResourceRead.model_validate(r) for r in rows], next_cursor=None)


@router.post("/resources/free", status_code=204, tags=["admin"], responses=ERROR_RESPONSES)
def free_resource(body: s.ResourceFree, caller: AdminCaller) -> None:
    """Staff wiped the server (or the resource is otherwise ready): back to the pool."""
    with caller.session() as (session, _):
        catalog.free_resource(session=session, pool=body.pool, name=body.name)
