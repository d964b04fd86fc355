"""The dedicated-server processing module: hooks of the ``dedicated`` plugin."""

from __future__ import annotations

import logging
import secrets
import string
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import sushy

from fulfil import (
    AddonSpec,
    Changes,
    Done,
    ManualWork,
    ModuleError,
    ModuleInfo,
    OperationContext,
    ResourceTaken,
    RetryPolicy,
    TransientModuleError,
    close_actions,
    hookimpl,
    service_description,
)
from fulfil_dedicated.bmc import OFF, ON, Bmc, state_name
from fulfil_dedicated.settings import (
    MAX_POWER_DEADLINE,
    MAX_REQUEST_TIMEOUT,
    POOL,
    DedicatedParams,
    DedicatedSettings,
    Server,
)

log = logging.getLogger(__name__)

ADDONS = (
    AddonSpec("extra_ips", "Extra IP addresses", "IPs"),
    AddonSpec("ram_gb", "RAM", "GB"),
    AddonSpec("disk_gb", "Disk", "GB"),
)

_PASSWORD_ALPHABET = string.ascii_letters + string.digits
PASSWORD_LENGTH = 20


def generate_root_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


class DedicatedServers:
    """Allocates physical servers from a pool and drives their power over Redfish;
    the OS install, hardware changes and disk wipes are tasks for staff."""

    @hookimpl
    def fulfil_module_info(self) -> ModuleInfo:
        return ModuleInfo(
            title="Dedicated servers (Redfish)",
            description="Allocates a server of the pool, powers it through its BMC; "
            "OS installs, hardware changes and wipes are tasks for staff.",
            settings_model=DedicatedSettings,
            params_model=DedicatedParams,
            addons=ADDONS,
            retry=RetryPolicy(max_attempts=5, base_delay=10.0, max_delay=300.0),
            # a suspend may wait for a graceful shutdown and then a forced one
            timeout=2 * MAX_POWER_DEADLINE + 6 * MAX_REQUEST_TIMEOUT,
        )

    # -- check connection ---------------------------------------------------------------

    @hookimpl
    def fulfil_check_connection(self, settings: DedicatedSettings) -> str:
        def probe(server: Server) -> tuple[Server, str | None, str]:
            try:
                return server, None, state_name(_bmc(settings, server).power_state())
            except ModuleError as exc:
                return server, exc.message, ""

        with ThreadPoolExecutor(max_workers=min(8, len(settings.servers))) as pool:
            results = list(pool.map(probe, settings.servers))
        failed = [(server, reason) for server, reason, _ in results if reason]
        if failed:
            lines = "\n".join(f"  {server.label}: {reason}" for server, reason in failed)
            raise ModuleError(f"{len(failed)} of {len(results)} BMCs are not usable:\n{lines}")
        states = ", ".join(f"{server.label} ({state})" for server, _, state in results)
        return f"all {len(results)} BMCs reachable: {states}"

    # -- lifecycle -------------------------------------------------------------------------

    @hookimpl
    def fulfil_open(self, ctx: OperationContext) -> ManualWork:
        settings: DedicatedSettings = ctx.settings
        claimed_before = ctx.service.remote_id
        server = _claim_server(ctx)
        params = _main_settings(ctx, server)
        # saved before the server is touched: a retry finds the same password, and a
        # close after a failed open knows which server to give back
        ctx.save_progress(remote_id=server.resource_name, params=params)

        bmc = _bmc(settings, server)
        state = bmc.power_state()
        # a retry of an open that already powered the server on leaves the PXE boot
        # alone (one that failed between claiming and powering on a server that was
        # left on cannot tell them apart, and leaves that one running)
        powered_on_before = claimed_before == server.resource_name and state in (ON, sushy.PowerState.POWERING_ON)
        if not powered_on_before:
            bmc.boot_from_network_once()
            # a server left on (e.g. after a wipe) must reboot to reach the installer
            bmc.reset(sushy.ResetType.FORCE_RESTART if state == ON else sushy.ResetType.ON)
        _wait_for(bmc, ON, settings.power_deadline, "power on")
        log.info("service %s: server %s powered on for the OS install", ctx.service.id, server.label)
        return ManualWork(
            description=_setup_description(ctx, server, params),
            close_actions=close_actions("open"),
            params=params,
            remote_id=server.resource_name,
        )

    @hookimpl
    def fulfil_suspend(self, ctx: OperationContext) -> Done:
        deadline = ctx.settings.power_deadline
        bmc = _bmc(ctx.settings, _server_of(ctx))
        server = bmc.server
        state = bmc.power_state()
        if state == OFF:
            return Done(message=f"server {server.label} was already off")
        if state != sushy.PowerState.POWERING_OFF:
            bmc.reset(sushy.ResetType.GRACEFUL_SHUTDOWN)
        if bmc.wait_for(OFF, deadline) == OFF:
            return Done(message=f"server {server.label} shut down gracefully")
        bmc.reset(sushy.ResetType.FORCE_OFF)
        _wait_for(bmc, OFF, deadline, "forced power off")
        return Done(
            message=f"server {server.label} forced off: the graceful shutdown did not finish within {deadline:g} s"
        )

    @hookimpl
    def fulfil_resume(self, ctx: OperationContext) -> Done:
        bmc = _bmc(ctx.settings, _server_of(ctx))
        state = bmc.power_state()
        if state == ON:
            return Done(message=f"server {bmc.server.label} was already on")
        if state != sushy.PowerState.POWERING_ON:
            bmc.reset(sushy.ResetType.ON)
        _wait_for(bmc, ON, ctx.settings.power_deadline, "power on")
        return Done(message=f"server {bmc.server.label} powered on")

    @hookimpl
    def fulfil_edit(self, ctx: OperationContext, changes: Changes) -> Done | ManualWork:
        hardware = _addon_changes(changes)
        if not hardware:
            # host name and the other main settings live in the billing system only
            return Done(message=_params_summary(changes) or "edit recorded")
        server = _server_of(ctx, required=False)
        where = f"dedicated server {server.label}" if server else "the dedicated server of this service"
        lines = [f"Change the hardware of {where} as requested:"]
        lines += [f"  {line}" for line in hardware]
        params_summary = _params_summary(changes)
        if params_summary:
            lines += ["", f"Also recorded: {params_summary}."]
        if server:
            lines += ["", f"Server: {server.label}, public IP {server.ip_address}, BMC {server.base_url}"]
        lines += ["", service_description(ctx.service, DedicatedParams)]
        return ManualWork(description="\n".join(lines), close_actions=close_actions("edit"))

    @hookimpl
    def fulfil_close(self, ctx: OperationContext) -> Done | ManualWork:
        settings: DedicatedSettings = ctx.settings
        name = ctx.service.remote_id
        if not name:
            return Done(message="no server was allocated to this service: nothing to switch off or wipe")
        server = _server_of(ctx, required=False)
        if server is not None:
            bmc = _bmc(settings, server)
            if bmc.power_state() != OFF:
                bmc.reset(sushy.ResetType.FORCE_OFF)
                _wait_for(bmc, OFF, settings.power_deadline, "forced power off")
            where = f"{server.label}, public IP {server.ip_address}, BMC {server.base_url} (system {server.system_id})"
            state = "It is switched off and marked"
        else:
            # taken out of the settings while in use: still keep it from the next client
            where = f"{name} (no longer in the pool settings)"
            state = "Switch it off by hand. It is marked"
        ctx.release_resource(POOL, name, state="needs_wipe")
        log.info("service %s: server %s waiting for a wipe", ctx.service.id, name)
        return ManualWork(
            description="\n".join(
                [
                    f"Wipe dedicated server {server.label if server else name} before it is given to anyone else.",
                    "",
                    f"Server: {where}",
                    f'{state} "needs wipe" in the pool: it will not be allocated again until '
                    "it is freed after the wipe.",
                    "Erase all its disks (e.g. boot a wipe image over the network) and reset "
                    "its hardware to the tariff plan's configuration.",
                    "",
                    service_description(ctx.service, DedicatedParams),
                ]
            ),
            close_actions=close_actions("close"),
        )


# -- helpers ----------------------------------------------------------------------------


def _bmc(settings: DedicatedSettings, server: Server) -> Bmc:
    poll = max(0.1, min(1.0, settings.power_deadline / 20))
    return Bmc(server, request_timeout=settings.request_timeout, poll_interval=poll)


def _wait_for(bmc: Bmc, wanted: sushy.PowerState, deadline: float, what: str) -> None:
    state = bmc.wait_for(wanted, deadline)
    if state != wanted:
        raise TransientModuleError(
            f"server {bmc.server.label}: {what} did not finish within {deadline:g} s "
            f"(the BMC reports {state_name(state)})"
        )


def _claim_server(ctx: OperationContext) -> Server:
    settings: DedicatedSettings = ctx.settings
    candidates = [server.resource_name for server in settings.servers]
    try:
        name = ctx.claim_resource(POOL, candidates)
    except ResourceTaken as exc:
        count = len(candidates)
        raise ModuleError(
            f"pool exhausted: all {count} server{'s' if count != 1 else ''} of the pool are "
            "in use or waiting for a wipe; add a server to the processing module's settings "
            "or free a wiped one, then press Retry",
            details=exc.message,
        ) from exc
    server = settings.server_named(name)
    if server is None:
        raise ModuleError(f"this service holds server {name}, which is no longer in the pool settings")
    return server


def _server_of(ctx: OperationContext, *, required: bool = True) -> Server | None:
    settings: DedicatedSettings = ctx.settings
    name = ctx.service.remote_id
    server = settings.server_named(name) if name else None
    if server is None and required:
        if not name:
            raise ModuleError("no server of the pool is allocated to this service")
        raise ModuleError(f"this service's server {name} is no longer in the pool settings")
    return server


def _main_settings(ctx: OperationContext, server: Server) -> dict[str, Any]:
    settings: DedicatedSettings = ctx.settings
    params = ctx.service.params
    hostname = params.get("hostname")
    if not hostname:
        hostname = f"srv{ctx.service.id}" + (f".{settings.hostname_domain}" if settings.hostname_domain else "")
    return {
        "hostname": hostname,
        "ip_address": str(server.ip_address),
        "root_password": params.get("root_password") or generate_root_password(),
    }


def _setup_description(ctx: OperationContext, server: Server, params: Mapping[str, Any]) -> str:
    os_name = ctx.service.params.get("os") or "the operating system the client ordered"
    return "\n".join(
        [
            f"Install {os_name} on dedicated server {server.label}.",
            "",
            f"Server: {server.label}, public IP {server.ip_address}, BMC {server.base_url} "
            f"(system {server.system_id})",
            "It is allocated to this service, set to boot from the network (PXE) once, "
            "and powered on.",
            "",
            "Configure the installed system with:",
            f"  host name: {params['hostname']}",
            f"  IP address: {params['ip_address']}",
            "  root password: see the main settings tab",
            "",
            service_description(ctx.service, DedicatedParams),
        ]
    )


def _addon_changes(changes: Changes) -> list[str]:
    if changes.addons is None:
        return []
    specs = {spec.name: spec for spec in ADDONS}
    old = changes.old_addons or {}
    lines = []
    for name in sorted(set(changes.addons) | set(old)):
        before, after = old.get(name), changes.addons.get(name)
        if before == after:
            continue
        spec = specs.get(name)
        title = spec.title if spec else name
        unit = f" {spec.unit}" if spec and spec.unit else ""
        lines.append(f"{title}: {before if before is not None else '—'} → {after if after is not None else '—'}{unit}")
    return lines


def _params_summary(changes: Changes) -> str:
    if changes.params is None:
        return ""
    old = changes.old_params or {}
    secret = {"root_password"}
    parts = []
    for key in sorted(set(changes.params) | set(old)):
        before, after = old.get(key), changes.params.get(key)
        if before == after:
            continue
        if key in secret:
            parts.append(f"{key} changed")
        elif key == "hostname":
            parts.append(f"host name changed to {after}")
        else:
            parts.append(f"{key} changed to {after}")
    return ", ".join(parts)
