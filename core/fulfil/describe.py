"""Texts generated for staff: what a task asks, what closing it does, what the service is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from fulfil.module import Changes, ServiceInfo
from fulfil.secrets import mask

WHAT_TO_DO = {
    "open": "Set up the service in the control panel and fill in its main settings.",
    "edit": "Apply the requested changes in the control panel.",
    "close": "Remove the service from the control panel.",
    "suspend": "Suspend the service in the control panel, keeping its data.",
    "resume": "Resume the suspended service in the control panel.",
}

CLOSE_ACTIONS = {
    "open": "Closing this task makes the service active, saves its main settings and "
    "sends the client an email with them.",
    "edit": "Closing this task applies the changes shown in the main settings and add-ons "
    "tabs to the service and tells the client.",
    "close": "Closing this task marks the service deleted and tells the client.",
    "suspend": "Closing this task marks the service suspended and tells the client.",
    "resume": "Closing this task makes the service active again and tells the client.",
}


def _lines(data: Mapping[str, Any]) -> list[str]:
    return [f"  {k}: {v}" for k, v in sorted(data.items()) if v not in (None, "")] or ["  (none)"]


def service_description(service: ServiceInfo, params_model: type[BaseModel] | None = None) -> str:
    """The service as staff see it in a task; secrets masked."""
    parts = [
        f"Service #{service.id} ({service.tariff.service_type}), status {service.status}",
        f"Client: {service.client.name} <{service.client.email}> (#{service.client.id})",
        f"Tariff plan: {service.tariff.name} (#{service.tariff.id})",
    ]
    if service.remote_id:
        parts.append(f"Remote id: {service.remote_id}")
    if service.expires_at:
        parts.append(f"Expires: {service.expires_at:%Y-%m-%d}")
    parts.append("Main settings:")
    parts += _lines(mask(service.params, params_model))
    parts.append("Add-ons:")
    parts += _lines(service.addons)
    return "\n".join(parts)


def changes_description(changes: Changes, params_model: type[BaseModel] | None = None) -> str:
    parts: list[str] = []
    if changes.params is not None:
        old = mask(changes.old_params or {}, params_model)
        new = mask(changes.params, params_model)
        for key in sorted(set(new) | set(old)):
            if old.get(key) != new.get(key):
                parts.append(f"  main setting {key}: {old.get(key, '—')} → {new.get(key, '—')}")
    if changes.addons is not None:
        old = changes.old_addons or {}
        for key in sorted(set(changes.addons) | set(old)):
            if old.get(key) != changes.addons.get(key):
                parts.append(f"  add-on {key}: {old.get(key, '—')} → {changes.addons.get(key, '—')}")
    if changes.tariff is not None:
        was = changes.old_tariff.name if changes.old_tariff else "—"
        parts.append(f"  tariff plan: {was} → {changes.tariff.name}")
    if changes.expires_at is not None:
        parts.append(f"  expiry: → {changes.expires_at:%Y-%m-%d}")
    return "Requested changes:\n" + ("\n".join(parts) if parts else "  (none)")


def task_description(
    kind: str,
    service: ServiceInfo,
    *,
    changes: Changes | None = None,
    params_model: type[BaseModel] | None = None,
) -> str:
    """What the staff member has to do, generated from the service, its tariff,
    params and add-ons (the Manual Setup module's text, and the fallback of a
    failed automatic module)."""
    parts = [
        f"{WHAT_TO_DO[kind]}",
        "",
        f"Client: {service.client.name} <{service.client.email}>",
        f"Tariff plan: {service.tariff.name} ({service.tariff.service_type})",
        "Main settings:",
        *_lines(mask(service.params, params_model)),
        "Add-ons:",
        *_lines(service.addons),
    ]
    if kind == "edit" and changes is not None:
        parts += ["", changes_description(changes, params_model)]
    return "\n".join(parts)


def close_actions(kind: str) -> str:
    return CLOSE_ACTIONS[kind]
