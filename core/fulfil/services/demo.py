"""Demo data for a first look (``fulfil demo``): departments, staff with known demo
logins and tokens, processing modules and tariff plans for the module plugins that
are installed, clients, and a few ordered services.

The panels of the automatic modules point at local addresses where nothing runs,
so their orders show the error-wrapping layer at work: the failures become tasks.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, SecretStr
from sqlalchemy.orm import Session

from fulfil.app import registry_of
from fulfil.errors import InvalidInput
from fulfil.services import catalog, lifecycle

ADMIN_TOKEN = "demo-admin-token"

DEPARTMENTS = ("Support", "Operations", "Network")

#: login, name, departments, admin, token; the web UI password is "<login>-demo"
STAFF = (
    ("admin", "Demo Admin", DEPARTMENTS, True, ADMIN_TOKEN),
    ("support", "Sam Support", ("Support",), False, "demo-support-token"),
    ("ops", "Olga Operations", ("Operations",), False, "demo-ops-token"),
    ("noc", "Nick Network", ("Network",), False, "demo-noc-token"),
)

CLIENTS = (
    ("Acme Ltd", "it@acme.example"),
    ("Globex Corporation", "admin@globex.example"),
    ("Initech", "ops@initech.example"),
)


@dataclass(frozen=True)
class Blueprint:
    """A processing module and tariff plan for one module plugin, with what to order."""

    plugin: str
    module_name: str
    department: str
    tariff_name: str
    service_type: str
    #: connection settings: local addresses where no panel runs
    settings: Mapping[str, Any]
    orders: tuple[tuple[int, Mapping[str, Any]], ...]  # (client index, params)
    addons: Mapping[str, Any] = field(default_factory=dict)


BLUEPRINTS = (
    Blueprint(
        plugin="manual",
        module_name="Manual Setup",
        department="Support",
        tariff_name="Web Hosting Basic",
        service_type="hosting",
        settings={},
        addons={"disk_gb": {"unit": "GB", "title": "Disk", "min": 1, "max": 100, "default": 10}},
        orders=((0, {"domain": "acme.example"}), (1, {"domain": "globex.example"})),
    ),
    Blueprint(
        plugin="dnshosting",
        module_name="PowerDNS",
        department="Network",
        tariff_name="DNS Hosting",
        service_type="dns",
        settings={
            "api_url": "http://127.0.0.1:8081",
            "api_key": "demo-powerdns-key",
            "server_id": "localhost",
            "nameservers": ["ns1.demo.example.", "ns2.demo.example."],
        },
        orders=((0, {"domain": "acme.example"}),),
    ),
    Blueprint(
        plugin="dedicated",
        module_name="Redfish servers",
        department="Operations",
        tariff_name="Dedicated Server",
        service_type="dedicated",
        settings={
            "servers": [
                {
                    "label": "demo rack 1 U1",
                    "redfish_url": "https://127.0.0.1:8443",
                    "system_id": "1",
                    "username": "demo",
                    "password": "demo-bmc-password",
                    "ip_address": "192.0.2.10",
                    "verify_tls": False,
                }
            ],
            "request_timeout": 3.0,
            "power_deadline": 10.0,
        },
        orders=((2, {"hostname": "db1.initech.example", "os": "debian-12"}),),
    ),
)


@dataclass
class DemoLogin:
    login: str
    name: str
    password: str
    token: str
    is_admin: bool
    departments: tuple[str, ...]


@dataclass
class DemoData:
    logins: list[DemoLogin]
    tariffs: list[str] = field(default_factory=list)
    service_ids: list[int] = field(default_factory=list)
    #: why a part of the demo was left out (a plugin not installed, settings it refused)
    skipped: list[str] = field(default_factory=list)


def demo_logins() -> list[DemoLogin]:
    return [
        DemoLogin(login=login, name=name, password=f"{login}-demo", token=token, is_admin=admin, departments=depts)
        for login, name, depts, admin, token in STAFF
    ]


def demo_exists(*, session: Session) -> bool:
    return catalog.authenticate_token(session=session, token=ADMIN_TOKEN) is not None


def _guess(name: str, annotation: Any) -> Any:
    """A harmless value for a required field the blueprint did not foresee."""
    lowered = name.lower()
    if any(w in lowered for w in ("url", "endpoint")):
        return "http://127.0.0.1:9"
    if any(w in lowered for w in ("key", "token", "secret", "password")):
        return "demo-secret"
    if "host" in lowered or lowered.endswith("ip") or "address" in lowered:
        return "127.0.0.1"
    if "domain" in lowered or "zone" in lowered:
        return "demo.example"
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) else ()
    base = next((a for a in args if a is not type(None)), annotation)
    origin = typing.get_origin(base) or base
    if base is SecretStr:
        return "demo-secret"
    for kind, value in ((bool, False), (int, 1), (float, 1.0), (list, []), (dict, {}), (tuple, [])):
        if isinstance(origin, type) and issubclass(origin, kind):
            return value
    return "demo"


def fill(model: type[BaseModel] | None, hints: Mapping[str, Any]) -> dict[str, Any]:
    """The hints the model knows, plus a guess for each required field left over."""
    if model is None:
        return dict(hints)
    fields = model.model_fields
    names = {f.alias or n: n for n, f in fields.items()}
    data = {k: v for k, v in hints.items() if k in names}
    for key, name in names.items():
        if key not in data and fields[name].is_required():
            data[key] = _guess(key, fields[name].annotation)
    return data


def create_demo(*, session: Session) -> DemoData:
    """Create the demo data in ``session``'s transaction (the caller commits)."""
    registry = registry_of(session)
    depts = {name: catalog.create_department(session=session, name=name) for name in DEPARTMENTS}
    logins = demo_logins()
    for who in logins:
        catalog.create_staff(
            session=session, login=who.login, name=who.name, email=f"{who.login}@fulfil.example",
            department_ids=[depts[d].id for d in who.departments], is_admin=who.is_admin,
            password=who.password, token=who.token,
        )
    clients = [catalog.create_client(session=session, name=n, email=e) for n, e in CLIENTS]
    data = DemoData(logins=logins)
    for bp in BLUEPRINTS:
        info = registry.info(bp.plugin)
        if info is None:
            data.skipped.append(f"{bp.tariff_name}: {registry.missing_reason(bp.plugin)}")
            continue
        try:
            module = catalog.create_processing_module(
                session=session, name=bp.module_name, plugin=bp.plugin, department_id=depts[bp.department].id,
                settings=fill(info.settings_model, bp.settings),
            )
            tariff = catalog.create_tariff(
                session=session, name=bp.tariff_name, service_type=bp.service_type,
                processing_module_id=module.id, addons=bp.addons,
            )
        except InvalidInput as exc:
            data.skipped.append(f"{bp.tariff_name}: module {bp.plugin} refused the demo settings: {exc.message}")
            continue
        data.tariffs.append(bp.tariff_name)
        for client_index, params in bp.orders:
            try:
                service = lifecycle.order_service(
                    session=session, client_id=clients[client_index].id, tariff_id=tariff.id,
                    params=fill(info.params_model, params),
                )
            except InvalidInput as exc:
                data.skipped.append(f"an order on {bp.tariff_name}: {exc.message}")
                continue
            data.service_ids.append(service.id)
    return data
