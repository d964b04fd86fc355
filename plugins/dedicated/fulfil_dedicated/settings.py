"""Connection settings of a dedicated-server processing module, and the main settings
of a dedicated-server service."""

from __future__ import annotations

import re
from typing import Annotated

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    IPvAnyAddress,
    SecretStr,
    field_validator,
    model_validator,
)

#: every processing module of this plugin shares one pool namespace: a resource is
#: named after the physical machine (BMC URL + system), so the same server entered
#: in two processing modules can still be given to only one service
POOL = "dedicated"

#: seconds; the hook timeout (ModuleInfo.timeout) must fit a suspend: graceful
#: shutdown + forced off, each up to the deadline, plus a few requests
MAX_POWER_DEADLINE = 300.0
MAX_REQUEST_TIMEOUT = 60.0

_HOSTNAME = re.compile(r"^(?=.{1,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$")


def _hostname(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.strip().lower().rstrip(".")
    if not _HOSTNAME.match(value):
        raise ValueError("not a valid host name (letters, digits, hyphens and dots)")
    return value


class Server(BaseModel):
    """One physical server of the pool, reached through its BMC's Redfish API."""

    model_config = ConfigDict(extra="forbid")

    label: Annotated[str, Field(min_length=1, max_length=100, description="Hardware label, e.g. rack 3 U12, E-2388G/64GB/2x1TB")]
    redfish_url: Annotated[AnyHttpUrl, Field(description="Base URL of the BMC, e.g. https://10.0.0.5")]
    system_id: Annotated[str, Field(min_length=1, max_length=100, description="Redfish system Id (or its /redfish/v1/Systems/… path)")]
    username: Annotated[str, Field(min_length=1, max_length=100, description="BMC user")]
    password: Annotated[SecretStr, Field(description="BMC password")]
    ip_address: Annotated[IPvAnyAddress, Field(description="Public IP address the server carries")]
    verify_tls: Annotated[bool, Field(description="Check the BMC's TLS certificate (turn off for self-signed BMCs)")] = True

    @property
    def base_url(self) -> str:
        return str(self.redfish_url).rstrip("/")

    @property
    def system_path(self) -> str:
        if self.system_id.startswith("/"):
            return self.system_id
        return f"/redfish/v1/Systems/{self.system_id}"

    @property
    def resource_name(self) -> str:
        """The server's name in the pool of claimable resources (and the service's
        remote id): the physical machine, not its label, which staff may edit."""
        return f"{self.system_path}@{self.base_url}"

    def __str__(self) -> str:
        return f"{self.label} ({self.ip_address})"


class DedicatedSettings(BaseModel):
    """The pool of servers and how patient to be with their BMCs."""

    model_config = ConfigDict(extra="forbid")

    servers: Annotated[list[Server], Field(min_length=1, description="The pool of servers")]
    power_deadline: Annotated[
        float,
        Field(gt=0, le=MAX_POWER_DEADLINE, description="Seconds a power transition may take (and a graceful shutdown before it is forced)"),
    ] = 120.0
    request_timeout: Annotated[
        float, Field(gt=0, le=MAX_REQUEST_TIMEOUT, description="Seconds one Redfish request may take")
    ] = 10.0
    hostname_domain: Annotated[
        str | None, Field(description="Domain of generated host names (srv<service id>.<domain>)")
    ] = None

    @field_validator("hostname_domain")
    @classmethod
    def _domain_is_a_hostname(cls, value: str | None) -> str | None:
        return _hostname(value)

    @model_validator(mode="after")
    def _servers_are_distinct(self) -> DedicatedSettings:
        for what, key in (
            ("label", lambda s: s.label),
            ("BMC system", lambda s: s.resource_name),
            ("IP address", lambda s: s.ip_address),
        ):
            seen: set = set()
            for server in self.servers:
                value = key(server)
                if value in seen:
                    raise ValueError(f"two servers of the pool have the same {what}: {value}")
                seen.add(value)
        return self

    def server_named(self, resource_name: str) -> Server | None:
        return next((s for s in self.servers if s.resource_name == resource_name), None)


class DedicatedParams(BaseModel):
    """Main settings of a dedicated server: what the client chooses and what the
    module assigns (the IP address, the root password)."""

    model_config = ConfigDict(extra="forbid")

    hostname: Annotated[str | None, Field(description="Host name of the server")] = None
    os: Annotated[str | None, Field(max_length=100, description="Operating system to install")] = None
    ip_address: Annotated[IPvAnyAddress | None, Field(description="Public IP address of the server")] = None
    root_password: Annotated[SecretStr | None, Field(description="Root password of the installed system")] = None

    @field_validator("hostname")
    @classmethod
    def _is_a_hostname(cls, value: str | None) -> str | None:
        return _hostname(value)
