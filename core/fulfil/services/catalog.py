"""Departments, staff and their tokens, clients, processing modules, tariff plans."""

from __future__ import annotations

import hashlib
import re
import secrets as pysecrets
from collections.abc import Mapping, Sequence
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from sqlalchemy import select
from sqlalchemy.orm import Session

from fulfil import secrets
from fulfil.app import registry_of
from fulfil.db import utcnow
from fulfil.errors import Conflict, InvalidInput, NotFound
from fulfil.models import ApiToken, Client, Department, ProcessingModule, ResourceClaim, Staff, TariffPlan
from fulfil.module import ModuleError

EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
LOGIN = re.compile(r"^[a-zA-Z0-9_.-]{1,100}$")
_hasher = PasswordHasher()


def _require_text(field: str, value: str | None, max_len: int = 200) -> str:
    value = (value or "").strip()
    if not value:
        raise InvalidInput.one(field, "must not be empty")
    if len(value) > max_len:
        raise InvalidInput.one(field, f"must be at most {max_len} characters")
    return value


def _unique(session: Session, model, column, value, field: str, what: str) -> None:
    if session.scalar(select(model.id).where(column == value)) is not None:
        raise InvalidInput.one(field, f"a {what} named {value!r} already exists")


def get(session: Session, model, ident: int, what: str):
    obj = session.get(model, ident)
    if obj is None:
        raise NotFound(what, ident)
    return obj


# -- departments ------------------------------------------------------------------------


def create_department(*, session: Session, name: str, email: str | None = None, notify: bool = True) -> Department:
    name = _require_text("name", name, 100)
    _unique(session, Department, Department.name, name, "name", "department")
    if email and not EMAIL.match(email):
        raise InvalidInput.one("email", "is not an email address")
    dept = Department(name=name, email=email, notify=notify, created_at=utcnow())
    session.add(dept)
    session.flush()
    return dept


_UNSET: Any = object()


def update_department(
    *,
    session: Session,
    department_id: int,
    name: str | None = None,
    email: str | None = _UNSET,
    notify: bool | None = None,
) -> Department:
    """Rename a department or change where (``email``; None clears it) and whether
    (``notify``) its task alerts go."""
    dept = get(session, Department, department_id, "department")
    if name is not None and name != dept.name:
        name = _require_text("name", name, 100)
        _unique(session, Department, Department.name, name, "name", "department")
        dept.name = name
    if email is not _UNSET:
        email = (email or "").strip() or None
        if email and not EMAIL.match(email):
            raise InvalidInput.one("email", "is not an email address")
        dept.email = email
    if notify is not None:
        dept.notify = notify
    session.flush()
    return dept


def list_departments(*, session: Session) -> Sequence[Department]:
    return session.scalars(select(Department).order_by(Department.id)).all()


def department_by_name_or_id(session: Session, ref: str | int) -> Department:
    if isinstance(ref, int) or str(ref).isdigit():
        dept = session.get(Department, int(ref))
    else:
        dept = session.scalar(select(Department).where(Department.name == ref))
    if dept is None:
        raise NotFound("department", ref)
    return dept


# -- staff and tokens -----------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_staff(
    *,
    session: Session,
    login: str,
    name: str = "",
    email: str | None = None,
    department_ids: Sequence[int] = (),
    is_admin: bool = False,
    password: str | None = None,
    token: str | None = None,
) -> tuple[Staff, str]:
    """Create a staff member and their first API token. The token is returned once
    and only its hash is stored."""
    login = (login or "").strip()
    if not LOGIN.match(login):
        raise InvalidInput.one("login", "use 1-100 letters, digits, dots, dashes or underscores")
    _unique(session, Staff, Staff.login, login, "login", "staff member")
    if email and not EMAIL.match(email):
        raise InvalidInput.one("email", "is not an email address")
    departments = []
    for i, dept_id in enumerate(department_ids):
        dept = session.get(Department, dept_id)
        if dept is None:
            raise InvalidInput.one(f"department_ids.{i}", f"department {dept_id} does not exist")
        departments.append(dept)
    staff = Staff(login=login, name=name or login, email=email, is_admin=is_admin, created_at=utcnow())
    staff.departments = departments
    if password is not None:
        set_password(staff, password)
    session.add(staff)
    session.flush()
    return staff, create_token(session=session, staff=staff, token=token)


def set_password(staff: Staff, password: str) -> None:
    if len(password) < 8:
        raise InvalidInput.one("password", "must be at least 8 characters")
    staff.password_hash = _hasher.hash(password)


def check_password(staff: Staff, password: str) -> bool:
    if not staff.password_hash or not staff.active:
        return False
    try:
        return _hasher.verify(staff.password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def create_token(*, session: Session, staff: Staff, name: str = "default", token: str | None = None) -> str:
    """A new API token for ``staff`` (random unless given, e.g. a demo's known token)."""
    token = token or "ful_" + pysecrets.token_urlsafe(32)
    session.add(ApiToken(staff_id=staff.id, token_hash=hash_token(token), name=name, created_at=utcnow()))
    session.flush()
    return token


def authenticate_token(*, session: Session, token: str) -> Staff | None:
    if not token:
        return None
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    if row is None or not row.staff.active:
        return None
    return row.staff


def staff_by_login(session: Session, login: str) -> Staff:
    staff = session.scalar(select(Staff).where(Staff.login == login))
    if staff is None:
        raise NotFound("staff member", login)
    return staff


def list_staff(*, session: Session) -> Sequence[Staff]:
    return session.scalars(select(Staff).order_by(Staff.id)).all()


# -- clients -----------------------------------------------------------------------------------


def create_client(*, session: Session, name: str, email: str, language: str = "en") -> Client:
    name = _require_text("name", name)
    if not EMAIL.match(email or ""):
        raise InvalidInput.one("email", "is not an email address")
    if not re.match(r"^[a-z]{2}(-[A-Z]{2})?$", language or ""):
        raise InvalidInput.one("language", "use a language code such as en or ru")
    client = Client(name=name, email=email, language=language, created_at=utcnow())
    session.add(client)
    session.flush()
    return client


def list_clients(*, session: Session) -> Sequence[Client]:
    return session.scalars(select(Client).order_by(Client.id)).all()


# -- processing modules -------------------------------------------------------------------------


def _validate_module_settings(session: Session, plugin: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    registry = registry_of(session)
    info = registry.info(plugin)
    if info is None:
        raise InvalidInput.one("plugin", registry.missing_reason(plugin))
    return secrets.validate(info.settings_model, settings or {}, field_prefix="settings")


def create_processing_module(
    *,
    session: Session,
    name: str,
    plugin: str,
    department_id: int,
    settings: Mapping[str, Any] | None = None,
    enabled: bool = True,
) -> ProcessingModule:
    name = _require_text("name", name, 100)
    _unique(session, ProcessingModule, ProcessingModule.name, name, "name", "processing module")
    if session.get(Department, department_id) is None:
        raise InvalidInput.one("department_id", f"department {department_id} does not exist")
    stored = _validate_module_settings(session, plugin, settings or {})
    module = ProcessingModule(
        name=name, plugin=plugin, department_id=department_id, settings=stored, enabled=enabled, created_at=utcnow()
    )
    session.add(module)
    session.flush()
    return module


def update_processing_module(
    *,
    session: Session,
    processing_module_id: int,
    name: str | None = None,
    department_id: int | None = None,
    settings: Mapping[str, Any] | None = None,
    enabled: bool | None = None,
) -> ProcessingModule:
    module = get(session, ProcessingModule, processing_module_id, "processing module")
    if name is not None and name != module.name:
        name = _require_text("name", name, 100)
        _unique(session, ProcessingModule, ProcessingModule.name, name, "name", "processing module")
        module.name = name
    if department_id is not None:
        if session.get(Department, department_id) is None:
            raise InvalidInput.one("department_id", f"department {department_id} does not exist")
        module.department_id = department_id
    if settings is not None:
        # a form shows secrets masked and sends the mask back unchanged
        merged = secrets.unmask({**module.settings, **settings}, module.settings)
        module.settings = _validate_module_settings(session, module.plugin, merged)
    if enabled is not None:
        module.enabled = enabled
    session.flush()
    return module


def list_processing_modules(*, session: Session) -> Sequence[ProcessingModule]:
    return session.scalars(select(ProcessingModule).order_by(ProcessingModule.id)).all()


def masked_module_settings(session: Session, module: ProcessingModule) -> dict[str, Any]:
    info = registry_of(session).info(module.plugin)
    model = info.settings_model if info else None
    if model is None:
        # unknown plugin: nothing says which fields are secret, so show only names
        return {k: secrets.MASK for k in module.settings}
    return secrets.mask(module.settings, model)


def check_connection(*, session: Session, processing_module_id: int) -> tuple[bool, str]:
    """Ask the module whether its panel is reachable: (ok, a sentence for staff)."""
    module = get(session, ProcessingModule, processing_module_id, "processing module")
    registry = registry_of(session)
    info = registry.info(module.plugin)
    if info is None:
        return False, registry.missing_reason(module.plugin)
    try:
        settings = info.settings_model.model_validate(module.settings)
    except Exception as exc:  # noqa: BLE001
        return False, f"the settings are invalid: {InvalidInput.from_pydantic(exc).message}"
    try:
        return True, registry.check_connection(module.plugin, settings)
    except ModuleError as exc:
        return False, exc.message


# -- tariff plans ------------------------------------------------------------------------------


def _validate_addon_definitions(addons: Mapping[str, Any] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, spec in (addons or {}).items():
        field = f"addons.{name}"
        if not re.match(r"^[a-z][a-z0-9_]{0,49}$", name):
            raise InvalidInput.one(field, "add-on names are lower-case letters, digits and _")
        if not isinstance(spec, Mapping):
            raise InvalidInput.one(field, "must be an object with unit, min, max, default")
        unknown = set(spec) - {"unit", "min", "max", "default", "title"}
        if unknown:
            raise InvalidInput.one(f"{field}.{sorted(unknown)[0]}", "unknown field")
        lo, hi = spec.get("min", 0), spec.get("max")
        for key, val in (("min", lo), ("max", hi), ("default", spec.get("default"))):
            if val is not None and (not isinstance(val, int) or isinstance(val, bool)):
                raise InvalidInput.one(f"{field}.{key}", "must be a whole number")
        if hi is not None and hi < lo:
            raise InvalidInput.one(f"{field}.max", "must not be less than min")
        default = spec.get("default", lo)
        if default < lo or (hi is not None and default > hi):
            raise InvalidInput.one(f"{field}.default", "must lie between min and max")
        out[name] = {"unit": spec.get("unit", ""), "title": spec.get("title", name), "min": lo, "max": hi, "default": default}
    return out


def _validate_default_params(session: Session, module: ProcessingModule, params: Mapping[str, Any] | None) -> dict[str, Any]:
    params = dict(params or {})
    info = registry_of(session).info(module.plugin)
    if info is not None and info.params_model.model_config.get("extra") == "forbid":
        for key in params:
            if key not in info.params_model.model_fields:
                raise InvalidInput.one(f"default_params.{key}", f"not a main setting of module {module.plugin}")
    return secrets.plain(params)


def create_tariff(
    *,
    session: Session,
    name: str,
    service_type: str,
    processing_module_id: int,
    default_params: Mapping[str, Any] | None = None,
    addons: Mapping[str, Any] | None = None,
) -> TariffPlan:
    name = _require_text("name", name)
    _unique(session, TariffPlan, TariffPlan.name, name, "name", "tariff plan")
    service_type = _require_text("service_type", service_type, 50)
    module = session.get(ProcessingModule, processing_module_id)
    if module is None:
        raise InvalidInput.one("processing_module_id", f"processing module {processing_module_id} does not exist")
    tariff = TariffPlan(
        name=name,
        service_type=service_type,
        processing_module_id=module.id,
        default_params=_validate_default_params(session, module, default_params),
        addons=_validate_addon_definitions(addons),
        created_at=utcnow(),
    )
    session.add(tariff)
    session.flush()
    return tariff


def update_tariff(
    *,
    session: Session,
    tariff_id: int,
    name: str | None = None,
    service_type: str | None = None,
    processing_module_id: int | None = None,
    default_params: Mapping[str, Any] | None = None,
    addons: Mapping[str, Any] | None = None,
) -> TariffPlan:
    tariff = get(session, TariffPlan, tariff_id, "tariff plan")
    if name is not None and name != tariff.name:
        name = _require_text("name", name)
        _unique(session, TariffPlan, TariffPlan.name, name, "name", "tariff plan")
        tariff.name = name
    if service_type is not None:
        tariff.service_type = _require_text("service_type", service_type, 50)
    if processing_module_id is not None:
        module = session.get(ProcessingModule, processing_module_id)
        if module is None:
            raise InvalidInput.one("processing_module_id", f"processing module {processing_module_id} does not exist")
        tariff.processing_module_id = module.id
        session.flush()
        session.refresh(tariff)
    if default_params is not None:
        tariff.default_params = _validate_default_params(session, tariff.processing_module, default_params)
    if addons is not None:
        tariff.addons = _validate_addon_definitions(addons)
    session.flush()
    return tariff


def list_tariffs(*, session: Session) -> Sequence[TariffPlan]:
    return session.scalars(select(TariffPlan).order_by(TariffPlan.id)).all()


# -- pool resources (e.g. physical servers) ---------------------------------------------------


def list_resources(*, session: Session, pool: str | None = None) -> Sequence[ResourceClaim]:
    """Resources that are taken: in use by a service, or waiting for staff (needs_wipe)."""
    query = select(ResourceClaim).order_by(ResourceClaim.pool, ResourceClaim.name)
    if pool:
        query = query.where(ResourceClaim.pool == pool)
    return session.scalars(query).all()


def free_resource(*, session: Session, pool: str, name: str) -> None:
    """Staff say a resource is ready again (e.g. a server was wiped): it returns to
    the pool. One a service still uses is refused."""
    claim = session.scalar(
        select(ResourceClaim).where(ResourceClaim.pool == pool, ResourceClaim.name == name).with_for_update()
    )
    if claim is None:
        raise NotFound("resource", f"{pool}/{name}")
    if claim.state == "in_use" and claim.service_id is not None:
        raise Conflict(f"resource {name} of pool {pool} is in use by service #{claim.service_id}")
    session.delete(claim)
    session.flush()
