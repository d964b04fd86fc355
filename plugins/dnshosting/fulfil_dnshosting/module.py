"""The DNS hosting processing module: one service is one zone on PowerDNS.

Ownership: every zone this module creates carries the account
``<account_prefix>:service:<service id>``. That is how a repeated call (after a
crash between the API call and the commit) recognises its own work as done, and
how a zone of the same name that belongs to someone else is left untouched.

Suspension: the 4.7 API has no "zone disabled" flag, so suspend disables every
record, SOA included (PowerDNS then refuses queries for the zone), after writing
the records that were disabled already into the zone metadata
``X-FULFIL-SUSPENDED``; resume enables everything else and removes the marker.
The marker is written first and removed last, so a repeated suspend or resume
finishes the work of an interrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from fulfil import (
    OPERATIONS,
    AddonSpec,
    Changes,
    Done,
    ModuleError,
    ModuleInfo,
    OperationContext,
    RetryPolicy,
    TransientModuleError,
    hookimpl,
)

from fulfil_dnshosting.models import DnsHostingParams, DnsHostingSettings
from fulfil_dnshosting.powerdns import PowerDNS, ZoneExists

SUSPENDED = "X-FULFIL-SUSPENDED"
RECORDS_ADDON = "records"
#: SOA timers: refresh, retry, expire, negative TTL (the serial is PowerDNS's business)
SOA_TIMERS = "10800 3600 604800 3600"

RRsetKey = tuple[str, str]


class DnsHosting:
    """Entry point ``dnshosting`` of ``fulfil.modules``."""

    @hookimpl
    def fulfil_module_info(self) -> ModuleInfo:
        return ModuleInfo(
            title="DNS hosting (PowerDNS)",
            description="Hosts a client's DNS zone on a PowerDNS Authoritative server through its HTTP API.",
            operations=frozenset(OPERATIONS),
            settings_model=DnsHostingSettings,
            params_model=DnsHostingParams,
            addons=(AddonSpec(RECORDS_ADDON, "DNS records", "records"),),
            retry=RetryPolicy(max_attempts=5, base_delay=5.0, max_delay=300.0),
            # a hook makes at most four requests of at most request_timeout (≤ 60 s) each
            timeout=300.0,
        )

    @hookimpl
    def fulfil_check_connection(self, settings) -> str:
        settings = _settings(settings)
        with PowerDNS(settings) as api:
            server = api.server()
        return (
            f"reachable, PowerDNS {server.get('version', '(version unknown)')} "
            f"(server {settings.server_id} at {settings.shown_url})"
        )

    # -- lifecycle ----------------------------------------------------------------------------

    @hookimpl
    def fulfil_open(self, ctx: OperationContext):
        settings = _settings(ctx.settings)
        params = _params(ctx.service.params)
        _check_record_limit(params, ctx.service.addons)
        account = _account(settings, ctx.service.id)
        assigned = {"nameservers": [ns.rstrip(".") for ns in settings.nameservers]}
        desired = _rrsets(params, settings)
        with PowerDNS(settings) as api:
            zone = _own_zone(api, params.zone, account)
            if zone is None:
                try:
                    zone = api.create_zone(_new_zone(params, settings, account, desired))
                except ZoneExists:
                    # created between our look and our create: by us, or by someone else
                    zone = _own_zone(api, params.zone, account)
                    if zone is None:
                        raise TransientModuleError(
                            f"PowerDNS says zone {params.domain} exists but does not show it; trying again"
                        ) from None
                else:
                    return Done(
                        params=assigned,
                        remote_id=zone["id"],
                        message=f"zone {params.domain} created on PowerDNS with {len(params.records)} records",
                    )
            # this service's zone exists already (an open repeated after a crash):
            # bring its records to what was ordered instead of creating a second one
            api.patch_rrsets(zone["id"], _replace(desired.values()))
        return Done(
            params=assigned,
            remote_id=zone["id"],
            message=f"zone {params.domain} already existed for this service; its records are as ordered",
        )

    @hookimpl
    def fulfil_edit(self, ctx: OperationContext, changes: Changes):
        if changes.params is None and changes.addons is None:
            return Done(message="nothing to change on PowerDNS")
        settings = _settings(ctx.settings)
        old = _params(changes.old_params if changes.old_params is not None else ctx.service.params)
        new = _params(changes.params if changes.params is not None else ctx.service.params)
        if new.domain != old.domain:
            raise ModuleError(
                f"the domain of a DNS hosting service cannot change ({old.domain} → {new.domain}): "
                "order a new service for the new domain and delete this one"
            )
        _check_record_limit(new, changes.addons if changes.addons is not None else ctx.service.addons)
        with PowerDNS(settings) as api:
            zone = _require_own_zone(api, ctx, new, settings, "change its records")
            suspended = bool(api.get_metadata(zone["id"], SUSPENDED))
            desired = _rrsets(new, settings, disabled=suspended)
            removed = set(_rrsets(old, settings)) - set(desired)
            api.patch_rrsets(
                zone["id"],
                [{"name": n, "type": t, "changetype": "DELETE"} for n, t in sorted(removed)]
                + _replace(desired.values()),
            )
        note = " (disabled while the service is suspended)" if suspended else ""
        return Done(
            message=f"zone {new.domain}: {len(desired)} record sets written, {len(removed)} removed{note}"
        )

    @hookimpl
    def fulfil_suspend(self, ctx: OperationContext):
        settings = _settings(ctx.settings)
        params = _params(ctx.service.params)
        with PowerDNS(settings) as api:
            zone = _require_own_zone(api, ctx, params, settings, "suspend it")
            if not api.get_metadata(zone["id"], SUSPENDED):
                already_disabled = [
                    _record_key(rrset, record)
                    for rrset in zone["rrsets"]
                    for record in rrset["records"]
                    if record.get("disabled")
                ]
                marker = {"operation": ctx.operation_id, "disabled": already_disabled}
                api.put_metadata(zone["id"], SUSPENDED, [json.dumps(marker)])
            api.patch_rrsets(zone["id"], _switched(zone, lambda rrset, record: True))
        return Done(message=f"zone {params.domain} suspended: every record disabled, SOA included")

    @hookimpl
    def fulfil_resume(self, ctx: OperationContext):
        settings = _settings(ctx.settings)
        params = _params(ctx.service.params)
        with PowerDNS(settings) as api:
            zone = _require_own_zone(api, ctx, params, settings, "resume it")
            markers = api.get_metadata(zone["id"], SUSPENDED)
            if not markers:
                return Done(message=f"zone {params.domain} was not suspended: nothing to restore")
            try:
                keep_disabled = {tuple(key) for key in json.loads(markers[0])["disabled"]}
            except (ValueError, KeyError, TypeError):
                raise ModuleError(
                    f"the suspension marker {SUSPENDED} of zone {params.domain} is unreadable: "
                    "enable the zone's records in PowerDNS by hand and remove the marker"
                ) from None
            api.patch_rrsets(
                zone["id"], _switched(zone, lambda rrset, record: _record_key(rrset, record) in keep_disabled)
            )
            api.delete_metadata(zone["id"], SUSPENDED)
        return Done(message=f"zone {params.domain} resumed: its records answer again")

    @hookimpl
    def fulfil_close(self, ctx: OperationContext):
        settings = _settings(ctx.settings)
        params = _params(ctx.service.params)
        account = _account(settings, ctx.service.id)
        with PowerDNS(settings) as api:
            zone = _own_zone(api, ctx.service.remote_id or params.zone, account)
            if zone is None or not api.delete_zone(zone["id"]):
                # PowerDNS answers a wrong server id with the same 404 as a missing
                # zone: make sure it is the zone that is gone, not the server
                api.server()
                return Done(message=f"zone {params.domain} was already gone from PowerDNS")
        return Done(message=f"zone {params.domain} deleted from PowerDNS")


plugin = DnsHosting


# -- helpers -------------------------------------------------------------------------------------


def _settings(settings: Any) -> DnsHostingSettings:
    if isinstance(settings, DnsHostingSettings):
        return settings
    try:
        return DnsHostingSettings.model_validate(dict(settings or {}))
    except ValidationError as exc:
        raise ModuleError(f"the settings of the DNS hosting module are invalid: {_first_error(exc)}") from None


def _params(params: Mapping[str, Any]) -> DnsHostingParams:
    try:
        return DnsHostingParams.model_validate(dict(params))
    except ValidationError as exc:
        raise ModuleError(f"the service's main settings are invalid: {_first_error(exc)}") from None


def _first_error(exc: ValidationError) -> str:
    err = exc.errors(include_url=False, include_input=False)[0]
    field = ".".join(str(p) for p in err["loc"])
    return f"{field}: {err['msg']}" if field else err["msg"]


def _check_record_limit(params: DnsHostingParams, addons: Mapping[str, Any]) -> None:
    limit = addons.get(RECORDS_ADDON)
    if limit is not None and len(params.records) > int(limit):
        raise ModuleError(
            f"zone {params.domain} would have {len(params.records)} records, but the tariff allows "
            f"{limit}: remove records or raise the {RECORDS_ADDON} add-on"
        )


def _account(settings: DnsHostingSettings, service_id: int) -> str:
    return f"{settings.account_prefix}:service:{service_id}"


def _own_zone(api: PowerDNS, zone_id: str, account: str) -> dict[str, Any] | None:
    """The zone if it exists and is this service's; None if it does not exist.
    A zone of that name that belongs to someone else is a permanent error."""
    zone = api.get_zone(zone_id)
    if zone is None:
        return None
    if zone.get("account") != account:
        owner = zone.get("account") or "(no account)"
        raise ModuleError(
            f"zone {zone.get('name', zone_id).rstrip('.')} already exists on PowerDNS and belongs to "
            f"{owner}, not to this service ({account}): it was left untouched"
        )
    return zone


def _require_own_zone(
    api: PowerDNS, ctx: OperationContext, params: DnsHostingParams, settings: DnsHostingSettings, doing: str
) -> dict[str, Any]:
    zone = _own_zone(api, ctx.service.remote_id or params.zone, _account(settings, ctx.service.id))
    if zone is None:
        raise ModuleError(f"zone {params.domain} does not exist on PowerDNS: cannot {doing}")
    return zone


def _absolute(name: str, zone: str) -> str:
    return zone if name == "@" else f"{name}.{zone}"


def _pdns_content(rtype: str, content: str) -> str:
    if rtype != "TXT":
        return content
    # TXT data is one or more quoted strings of at most 255 bytes each (the text is ASCII)
    chunks = [content[i : i + 255] for i in range(0, len(content), 255)] or [""]
    return " ".join('"' + c.replace("\\", "\\\\").replace('"', '\\"') + '"' for c in chunks)


def _rrsets(
    params: DnsHostingParams, settings: DnsHostingSettings, *, disabled: bool = False
) -> dict[RRsetKey, dict[str, Any]]:
    """The record sets the service should have: the provider's nameservers at the
    apex and the client's records, grouped by name and type."""
    out: dict[RRsetKey, dict[str, Any]] = {
        (params.zone, "NS"): {
            "name": params.zone,
            "type": "NS",
            "ttl": settings.default_ttl,
            "records": [{"content": ns, "disabled": disabled} for ns in settings.nameservers],
        }
    }
    for record in params.records:
        name = _absolute(record.name, params.zone)
        rrset = out.setdefault(
            (name, record.type), {"name": name, "type": record.type, "ttl": settings.default_ttl, "records": []}
        )
        if record.ttl is not None:
            rrset["ttl"] = record.ttl
        rrset["records"].append({"content": _pdns_content(record.type, record.content), "disabled": disabled})
    return out


def _new_zone(
    params: DnsHostingParams,
    settings: DnsHostingSettings,
    account: str,
    desired: dict[RRsetKey, dict[str, Any]],
) -> dict[str, Any]:
    hostmaster = settings.hostmaster or f"hostmaster@{params.domain}"
    local, _, domain = hostmaster.partition("@")
    soa = f"{settings.nameservers[0]} {local}.{domain}. 1 {SOA_TIMERS}"
    rrsets = [rrset for key, rrset in desired.items() if key != (params.zone, "NS")]
    rrsets.append(
        {"name": params.zone, "type": "SOA", "ttl": settings.default_ttl, "records": [{"content": soa, "disabled": False}]}
    )
    return {
        "name": params.zone,
        "kind": "Native",
        "nameservers": settings.nameservers,
        "account": account,
        "rrsets": rrsets,
    }


def _replace(rrsets: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{**rrset, "changetype": "REPLACE"} for rrset in rrsets]


def _switched(
    zone: Mapping[str, Any], disabled: Callable[[Mapping[str, Any], Mapping[str, Any]], bool]
) -> list[dict[str, Any]]:
    """REPLACE changes for the zone's rrsets whose records' ``disabled`` flags differ
    from what ``disabled(rrset, record)`` says they should be."""
    changes = []
    for rrset in zone["rrsets"]:
        records = [{**r, "disabled": disabled(rrset, r)} for r in rrset["records"]]
        if records != rrset["records"]:
            # comments are left out on purpose: without them PowerDNS keeps the existing ones
            changes.append(
                {"name": rrset["name"], "type": rrset["type"], "ttl": rrset["ttl"], "changetype": "REPLACE", "records": records}
            )
    return changes


def _record_key(rrset: Mapping[str, Any], record: Mapping[str, Any]) -> tuple[str, str, str]:
    # the SOA's serial moves with every change: it is one record whatever its content
    content = "" if rrset["type"] == "SOA" else record["content"]
    return (rrset["name"], rrset["type"], content)
