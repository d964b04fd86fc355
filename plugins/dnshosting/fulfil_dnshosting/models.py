"""Settings of the processing module (the PowerDNS connection) and main settings
of a DNS hosting service (the domain and its records)."""

from __future__ import annotations

import ipaddress
import re
from collections import defaultdict
from typing import Literal

from pydantic import (
    AnyHttpUrl,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
# owner names of records may also carry service labels (_dmarc, _sip._tcp) and a
# leading wildcard
_OWNER_LABEL = re.compile(r"^(\*|_?(?!-)[a-z0-9_-]{1,63}(?<!-))$")

RECORD_TYPES = ("A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS")


def domain_name(value: str) -> str:
    """A registrable DNS name in lower case, IDNA-encoded, without the trailing dot.

    Raises ValueError with a reason a person understands.
    """
    name = value.strip().lower()
    if name.endswith("."):
        name = name[:-1]
    if not name:
        raise ValueError("must not be empty")
    labels = name.split(".")
    if len(labels) < 2:
        raise ValueError(f"{value!r} is not a domain name of its own (e.g. example.com)")
    for i, label in enumerate(labels):
        if not label.isascii():
            try:  # an internationalised label, stored as its xn-- form
                labels[i] = label.encode("idna").decode("ascii")
            except UnicodeError:
                raise ValueError(f"{label!r} in {value!r} is not a valid label") from None
        if not _LABEL.match(labels[i]):
            raise ValueError(
                f"{label!r} in {value!r} is not a valid label: use 1-63 letters, digits or "
                "hyphens, not starting or ending with a hyphen"
            )
    if labels[-1].isdigit():
        raise ValueError(f"{value!r} is an address, not a domain name")
    name = ".".join(labels)
    if len(name) > 253:
        raise ValueError("a domain name has at most 253 characters")
    return name


def host_name(value: str) -> str:
    """A fully qualified host name (a record's target), with the trailing dot."""
    name = value.strip().lower().rstrip(".")
    labels = name.split(".")
    if not name or len(name) > 253 or not all(_OWNER_LABEL.match(label) and label != "*" for label in labels):
        raise ValueError(f"{value!r} is not a valid host name")
    return name + "."


# -- settings of the processing module ---------------------------------------------------


class DnsHostingSettings(BaseModel):
    """How to reach the PowerDNS Authoritative server and what every zone gets."""

    model_config = ConfigDict(extra="forbid")

    api_url: AnyHttpUrl = Field(
        description="PowerDNS webserver URL, e.g. http://127.0.0.1:8081 (with or without /api/v1)"
    )
    api_key: SecretStr = Field(description="The server's api-key")
    server_id: str = Field("localhost", min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    nameservers: list[str] = Field(
        min_length=1, max_length=13, description="The provider's nameservers every zone is delegated to"
    )
    hostmaster: str | None = Field(
        None, description="Email of the zones' SOA contact (default: hostmaster@<the zone>)"
    )
    default_ttl: int = Field(3600, ge=60, le=604800, description="TTL of records that give none, in seconds")
    request_timeout: float = Field(10.0, gt=0, le=60, description="Seconds one API request may take")
    account_prefix: str = Field(
        "fulfil",
        min_length=1,
        max_length=40,
        pattern=r"^[A-Za-z0-9_.-]+$",
        description="Zones of this billing system are marked with the account <prefix>:service:<id>",
    )

    @field_validator("nameservers")
    @classmethod
    def _nameservers(cls, value: list[str]) -> list[str]:
        names = [host_name(v) for v in value]
        if len(set(names)) != len(names):
            raise ValueError("a nameserver is listed twice")
        return names

    @field_validator("hostmaster")
    @classmethod
    def _hostmaster(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        local, at, domain = value.strip().partition("@")
        if not at or not local or "." in local or not re.match(r"^[A-Za-z0-9_+-]+$", local):
            raise ValueError("give an email address such as hostmaster@example.net (no dots before the @)")
        return f"{local}@{domain_name(domain)}"

    @property
    def base_url(self) -> str:
        url = str(self.api_url).rstrip("/")
        return url[: -len("/api/v1")] if url.endswith("/api/v1") else url

    @property
    def shown_url(self) -> str:
        """The server's URL as messages show it: never with credentials in it."""
        url = self.api_url
        port = f":{url.port}" if url.port else ""
        path = (url.path or "").rstrip("/")
        path = path[: -len("/api/v1")] if path.endswith("/api/v1") else path
        return f"{url.scheme}://{url.host}{port}{path}"


# -- main settings of a service ---------------------------------------------------------------


class DnsRecord(BaseModel):
    """One record of the zone. ``name`` is relative to the domain (``@`` for the domain
    itself, ``www``); a name ending in the domain is made relative."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field("@", max_length=253)
    type: Literal["A", "AAAA", "CNAME", "MX", "TXT", "SRV", "CAA", "NS"]
    content: str = Field(min_length=1, max_length=4000)
    ttl: int | None = Field(None, ge=60, le=604800)

    @field_validator("type", mode="before")
    @classmethod
    def _upper(cls, value):
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _content(self) -> DnsRecord:
        self.content = normalised_content(self.type, self.content)
        return self


def normalised_content(rtype: str, content: str) -> str:
    """The record's content in one canonical form; ValueError when it is not valid
    for its type."""
    text = content.strip()
    parts = text.split()
    try:
        if rtype == "A":
            return str(ipaddress.IPv4Address(text))
        if rtype == "AAAA":
            return str(ipaddress.IPv6Address(text))
        if rtype in ("CNAME", "NS"):
            return host_name(text)
        if rtype == "MX":
            if len(parts) != 2 or not parts[0].isdigit() or int(parts[0]) > 65535:
                raise ValueError
            return f"{int(parts[0])} {host_name(parts[1])}"
        if rtype == "SRV":
            if len(parts) != 4 or not all(p.isdigit() and int(p) <= 65535 for p in parts[:3]):
                raise ValueError
            return f"{int(parts[0])} {int(parts[1])} {int(parts[2])} {host_name(parts[3])}"
        if rtype == "CAA":
            match = re.match(r'^(\d{1,3})\s+([a-zA-Z0-9]+)\s+"?([^"]*)"?$', text)
            if not match or int(match[1]) > 255:
                raise ValueError
            return f'{int(match[1])} {match[2].lower()} "{match[3]}"'
        if rtype == "TXT":
            if not (text.isascii() and text.isprintable()):
                raise ValueError
            return text
    except ValueError:
        pass
    examples = {
        "A": "192.0.2.10",
        "AAAA": "2001:db8::10",
        "CNAME": "target.example.net",
        "NS": "ns1.example.net",
        "MX": "10 mail.example.net",
        "SRV": "10 5 5060 sip.example.net",
        "CAA": '0 issue "letsencrypt.org"',
        "TXT": "v=spf1 -all (printable ASCII)",
    }
    article = "an" if rtype[0] in "AMNS" else "a"
    raise ValueError(f"{content!r} is not valid content for {article} {rtype} record (e.g. {examples[rtype]})")


class DnsHostingParams(BaseModel):
    """Main settings of a DNS hosting service."""

    model_config = ConfigDict(extra="forbid")

    domain: str = Field(description="The zone's domain, e.g. example.com")
    records: list[DnsRecord] = Field(
        default_factory=list, description="Records of the zone (the nameservers and SOA are added by the module)"
    )
    nameservers: list[str] | None = Field(
        None, description="Set by the module: the nameservers the client delegates the domain to"
    )

    @field_validator("domain")
    @classmethod
    def _domain(cls, value: str) -> str:
        return domain_name(value)

    @model_validator(mode="after")
    def _records_inside_zone(self) -> DnsHostingParams:
        for record in self.records:
            record.name = relative_name(record.name, self.domain)
        groups: dict[tuple[str, str], list[DnsRecord]] = defaultdict(list)
        for record in self.records:
            groups[(record.name, record.type)].append(record)
        types_at: dict[str, set[str]] = defaultdict(set)
        for (name, rtype), group in groups.items():
            types_at[name].add(rtype)
            if len({r.ttl for r in group if r.ttl is not None}) > 1:
                raise ValueError(f"the {rtype} records of {name} have different TTLs: give them one TTL")
            if len({r.content for r in group}) != len(group):
                raise ValueError(f"a {rtype} record of {name} is listed twice")
        for name, types in types_at.items():
            if "CNAME" in types and (len(types) > 1 or len(groups[(name, "CNAME")]) > 1):
                raise ValueError(f"{name} has a CNAME record: it can have no other record")
        if "CNAME" in types_at.get("@", ()):
            raise ValueError("the domain itself (@) cannot have a CNAME record")
        if "NS" in types_at.get("@", ()):
            raise ValueError("the domain's own NS records are the provider's nameservers: give NS only for subdomains")
        return self

    @property
    def zone(self) -> str:
        return self.domain + "."


def relative_name(name: str, domain: str) -> str:
    """``name`` relative to ``domain``: ``@``, ``www``, ``_dmarc``, ``*.dev``."""
    value = name.strip().lower()
    if value in ("", "@", domain, domain + "."):
        return "@"
    absolute = value.rstrip(".")
    if value.endswith(".") or absolute.endswith("." + domain):
        if not absolute.endswith("." + domain):
            raise ValueError(f"record name {name!r} is outside the zone {domain}")
        value = absolute[: -len(domain) - 1]
    labels = value.split(".")
    if not all(_OWNER_LABEL.match(label) for label in labels) or "*" in labels[1:]:
        raise ValueError(f"record name {name!r} is not a valid name (e.g. @, www, _dmarc, *.dev)")
    if len(value) + len(domain) + 1 > 253:
        raise ValueError(f"record name {name!r} makes a name longer than 253 characters")
    return value
