"""Manual Setup: the built-in processing module whose every operation is done by staff.

An ordinary plugin (entry point ``manual`` in ``fulfil.modules``): each lifecycle
hook asks for manual work with a description generated from the service, its tariff
plan, main settings and add-ons.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, IPvAnyAddress, SecretStr

from fulfil import (
    OPERATIONS,
    Changes,
    ManualWork,
    ModuleInfo,
    OperationContext,
    RetryPolicy,
    close_actions,
    hookimpl,
    task_description,
)


class ManualParams(BaseModel):
    """Main settings staff fill in when they set a service up by hand."""

    model_config = ConfigDict(extra="forbid")

    domain: str | None = Field(None, max_length=253, description="Domain name of the service")
    hostname: str | None = Field(None, max_length=253, description="Server or account host name")
    ip_address: IPvAnyAddress | None = Field(None, description="IP address given to the client")
    username: str | None = Field(None, max_length=100, description="Login of the client's account")
    password: SecretStr | None = Field(None, description="Password of the client's account")
    control_panel_url: str | None = Field(None, max_length=500, description="Where the client signs in")
    notes: str | None = Field(None, max_length=5000, description="Anything else the client should know")


class ManualSetup:
    @hookimpl
    def fulfil_module_info(self) -> ModuleInfo:
        return ModuleInfo(
            title="Manual Setup",
            description="Every operation becomes a task for the responsible department.",
            operations=frozenset(OPERATIONS),
            params_model=ManualParams,
            retry=RetryPolicy(max_attempts=1),
            timeout=30.0,
        )

    @hookimpl
    def fulfil_check_connection(self, settings) -> str:
        return "Manual Setup needs no connection: staff do the work by hand"

    def _manual(self, ctx: OperationContext, changes: Changes | None = None) -> ManualWork:
        return ManualWork(
            description=task_description(ctx.kind, ctx.service, changes=changes, params_model=ManualParams),
            close_actions=close_actions(ctx.kind),
        )

    @hookimpl
    def fulfil_open(self, ctx):
        return self._manual(ctx)

    @hookimpl
    def fulfil_edit(self, ctx, changes):
        return self._manual(ctx, changes)

    @hookimpl
    def fulfil_close(self, ctx):
        return self._manual(ctx)

    @hookimpl
    def fulfil_suspend(self, ctx):
        return self._manual(ctx)

    @hookimpl
    def fulfil_resume(self, ctx):
        return self._manual(ctx)


plugin = ManualSetup
