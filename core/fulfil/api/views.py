"""Rows of the service layer as the API's read schemas (secrets masked here)."""

from __future__ import annotations

from sqlalchemy.orm import Session

from fulfil.api import schemas as s
from fulfil.app import registry_of
from fulfil.models import HistoryEntry, ProcessingModule, Service, Staff, TariffPlan, Task
from fulfil.plugins import LoadedModule
from fulfil.secrets import mask
from fulfil.services import catalog, lifecycle
from fulfil.services.tasks import TaskForm


def staff(member: Staff) -> s.StaffRead:
    return s.StaffRead(
        id=member.id, login=member.login, name=member.name, email=member.email, is_admin=member.is_admin,
        active=member.active, department_ids=sorted(member.department_ids), created_at=member.created_at,
    )


def module(loaded: LoadedModule) -> s.ModuleRead:
    info = loaded.info
    return s.ModuleRead(
        name=loaded.name,
        title=info.title,
        description=info.description,
        operations=sorted(info.operations),
        settings_schema=info.settings_model.model_json_schema(),
        params_schema=info.params_model.model_json_schema(),
        addons=[s.AddonSpecRead(name=a.name, title=a.title or a.name, unit=a.unit) for a in info.addons],
        retry=s.RetryRead(
            max_attempts=info.retry.max_attempts, base_delay=info.retry.base_delay, max_delay=info.retry.max_delay
        ),
        timeout=info.timeout,
        origin=loaded.origin,
    )


def processing_module(session: Session, pm: ProcessingModule) -> s.ProcessingModuleRead:
    return s.ProcessingModuleRead(
        id=pm.id,
        name=pm.name,
        module=pm.plugin,
        installed=registry_of(session).info(pm.plugin) is not None,
        department=s.Ref(id=pm.department.id, name=pm.department.name),
        settings=catalog.masked_module_settings(session, pm),
        enabled=pm.enabled,
        created_at=pm.created_at,
    )


def tariff(session: Session, plan: TariffPlan) -> s.TariffRead:
    return s.TariffRead(
        id=plan.id,
        name=plan.name,
        service_type=plan.service_type,
        processing_module_id=plan.processing_module_id,
        default_params=mask(plan.default_params, lifecycle.params_model_of(session, plan)),
        addons=dict(plan.addons or {}),
        created_at=plan.created_at,
    )


def history(entry: HistoryEntry) -> s.HistoryRead:
    return s.HistoryRead.model_validate(entry)


def service(session: Session, svc: Service, *, detail: bool = False) -> s.ServiceRead | s.ServiceDetail:
    pending = lifecycle.pending_operation(session, svc.id)
    fields = dict(
        id=svc.id,
        client=s.Ref(id=svc.client.id, name=svc.client.name),
        tariff=s.TariffRef(id=svc.tariff.id, name=svc.tariff.name, service_type=svc.tariff.service_type),
        status=svc.status,
        target_status=svc.target_status,
        params=lifecycle.masked_params(session, svc),
        addons=dict(svc.addons or {}),
        remote_id=svc.remote_id,
        expires_at=svc.expires_at,
        created_at=svc.created_at,
        updated_at=svc.updated_at,
        version=svc.version,
        pending_operation=s.OperationRead.model_validate(pending) if pending else None,
    )
    if detail:
        return s.ServiceDetail(**fields, history=[history(h) for h in lifecycle.service_history(session, svc.id)])
    return s.ServiceRead(**fields)


def _staff_ref(member: Staff | None) -> s.StaffRef | None:
    return s.StaffRef(id=member.id, login=member.login, name=member.name) if member else None


def task(t: Task) -> s.TaskRead:
    return s.TaskRead(
        id=t.id,
        type=t.type,
        status=t.status,
        title=t.title,
        department=s.Ref(id=t.department.id, name=t.department.name),
        assignee=_staff_ref(t.assignee),
        service_id=t.service_id,
        created_at=t.created_at,
        assigned_at=t.assigned_at,
        closed_at=t.closed_at,
        error=t.error,
        retryable=t.retryable and t.status != "closed",
        version=t.version,
    )


def task_detail(form: TaskForm) -> s.TaskDetail:
    general = dict(form.general)
    general["history"] = [history(h) for h in form.history]
    return s.TaskDetail(
        general=s.TaskGeneral.model_validate(general),
        main_settings=form.main_settings,
        main_settings_schema=form.main_settings_schema,
        addons=form.addons,
        addons_editable=form.addons_editable,
        addons_reason=form.addons_reason,
    )
