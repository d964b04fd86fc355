"""A small client of the PowerDNS Authoritative HTTP API (v1, as in 4.7).

Every failure becomes a :class:`fulfil.ModuleError` that staff can read: the server
unreachable, a timeout or a 5xx are :class:`fulfil.TransientModuleError` (the engine
retries); a refused key, a 422 and any other refusal are permanent and carry
PowerDNS's own error text. The API key travels only in the request header: no
message here ever contains it.
"""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote

import httpx

from fulfil import ModuleError, TransientModuleError

from fulfil_dnshosting.models import DnsHostingSettings

log = logging.getLogger(__name__)


class ZoneExists(ModuleError):
    """POST /zones answered 409: a zone of that name exists already."""


class PowerDNS:
    def __init__(self, settings: DnsHostingSettings) -> None:
        self.settings = settings
        self.server_url = f"{settings.base_url}/api/v1/servers/{quote(settings.server_id, safe='')}"
        self._http = httpx.Client(
            headers={"X-API-Key": settings.api_key.get_secret_value(), "Accept": "application/json"},
            timeout=settings.request_timeout,
        )

    def __enter__(self) -> PowerDNS:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.close()

    # -- the server -------------------------------------------------------------------------

    def server(self) -> dict[str, Any]:
        return self._request("GET", self.server_url, what="read the server's details")

    # -- zones --------------------------------------------------------------------------------

    def zone_url(self, zone_id: str) -> str:
        return f"{self.server_url}/zones/{quote(zone_id, safe='.=')}"

    def get_zone(self, zone_id: str) -> dict[str, Any] | None:
        """The zone with its rrsets, or None when PowerDNS has no such zone."""
        return self._request("GET", self.zone_url(zone_id), what=f"read zone {zone_id}", missing_ok=True)

    def create_zone(self, body: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", f"{self.server_url}/zones", json=body, what=f"create zone {body['name']}")

    def patch_rrsets(self, zone_id: str, rrsets: list[dict[str, Any]]) -> None:
        if rrsets:
            self._request("PATCH", self.zone_url(zone_id), json={"rrsets": rrsets}, what=f"change records of zone {zone_id}")

    def delete_zone(self, zone_id: str) -> bool:
        """Delete the zone; False when it was already gone."""
        found = self._request("DELETE", self.zone_url(zone_id), what=f"delete zone {zone_id}", missing_ok=True)
        return found is not None

    # -- zone metadata -----------------------------------------------------------------------

    def get_metadata(self, zone_id: str, kind: str) -> list[str]:
        data = self._request(
            "GET", f"{self.zone_url(zone_id)}/metadata/{kind}", what=f"read {kind} of zone {zone_id}", missing_ok=True
        )
        return list((data or {}).get("metadata") or [])

    def put_metadata(self, zone_id: str, kind: str, values: list[str]) -> None:
        self._request(
            "PUT",
            f"{self.zone_url(zone_id)}/metadata/{kind}",
            json={"kind": kind, "metadata": values},
            what=f"write {kind} of zone {zone_id}",
        )

    def delete_metadata(self, zone_id: str, kind: str) -> None:
        self._request(
            "DELETE", f"{self.zone_url(zone_id)}/metadata/{kind}", what=f"remove {kind} of zone {zone_id}", missing_ok=True
        )

    # -- one request -----------------------------------------------------------------------

    def _request(
        self, method: str, url: str, *, what: str, json: Any = None, missing_ok: bool = False
    ) -> Any:
        where = self.settings.shown_url
        try:
            response = self._http.request(method, url, json=json)
        except httpx.TimeoutException:
            raise TransientModuleError(
                f"PowerDNS at {where} did not answer within {self.settings.request_timeout:g} s "
                f"(trying to {what})"
            ) from None
        except httpx.TransportError as exc:
            raise TransientModuleError(f"PowerDNS at {where} is not reachable: {_reason(exc)} (trying to {what})") from None
        status = response.status_code
        if status == 404 and missing_ok:
            return None
        if status < 300:
            return response.json() if response.content and "json" in response.headers.get("content-type", "") else {}
        error = _error_text(response)
        log.info("PowerDNS answered %s to %s %s: %s", status, method, url, error)
        if status >= 500:
            raise TransientModuleError(f"PowerDNS at {where} failed to {what}: {status} {error}")
        if status in (401, 403):
            raise ModuleError(
                f"PowerDNS at {where} refused the API key ({status} {error}): check the api_key "
                "setting of the processing module"
            )
        if status == 409:
            raise ZoneExists(f"PowerDNS could not {what}: {status} {error}")
        if status == 404:
            raise ModuleError(
                f"PowerDNS at {where} could not {what}: {status} {error} "
                f"(is the server id {self.settings.server_id!r} right?)"
            )
        raise ModuleError(f"PowerDNS refused to {what}: {status} {error}")


def _error_text(response: httpx.Response) -> str:
    """PowerDNS's own words: ``{"error": "..."}`` in JSON, or the plain-text body."""
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("error"):
        text = str(data["error"])
        if data.get("errors"):
            text += ": " + "; ".join(str(e) for e in data["errors"])
        return text
    return (response.text or response.reason_phrase or "").strip()[:500]


def _reason(exc: httpx.TransportError) -> str:
    text = str(exc)
    if isinstance(exc, httpx.ConnectError) and "refused" in text.lower():
        return "connection refused"
    return text or type(exc).__name__
