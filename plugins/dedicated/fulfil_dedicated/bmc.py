"""Talking to one server's BMC over Redfish, through the OpenStack ``sushy`` client.

Every sushy failure leaves this module as a fulfil error staff can act on:
unreachable BMC, timeouts and 5xx answers are transient (the engine retries);
rejected credentials, an unknown system id or a refused request are permanent.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sushy
from sushy import auth as sushy_auth
from sushy import exceptions as sushy_exc

from fulfil import ModuleError, TransientModuleError
from fulfil_dedicated.settings import Server

log = logging.getLogger(__name__)

ON, OFF = sushy.PowerState.ON, sushy.PowerState.OFF


@contextmanager
def bmc_errors(server: Server) -> Iterator[None]:
    """Turn sushy's exceptions into fulfil's, naming the server (never its password)."""
    where = f"the BMC of server {server.label} ({server.base_url})"
    try:
        yield
    except sushy_exc.AccessError as exc:
        raise ModuleError(
            f"{where} rejected the credentials (HTTP {exc.status_code}): "
            "check the user name and password in the processing module's settings",
            details=str(exc),
        ) from exc
    except sushy_exc.ResourceNotFoundError as exc:
        raise ModuleError(
            f"{where} has no system {server.system_id!r}: check the system id in the settings",
            details=str(exc),
        ) from exc
    except sushy_exc.ServerSideError as exc:
        raise TransientModuleError(f"{where} answered with a server error (HTTP {exc.status_code})", details=str(exc)) from exc
    except sushy_exc.ConnectionError as exc:
        reason = "timed out" if "timed out" in str(exc).lower() else "is unreachable"
        raise TransientModuleError(f"{where} {reason}", details=str(exc)) from exc
    except sushy_exc.HTTPError as exc:
        raise ModuleError(f"{where} refused the request (HTTP {exc.status_code}): {exc.message}", details=str(exc)) from exc
    except sushy_exc.SushyError as exc:
        raise ModuleError(f"{where} gave an answer this module does not understand: {exc}", details=str(exc)) from exc


class Bmc:
    """The Redfish system of one server of the pool."""

    def __init__(self, server: Server, *, request_timeout: float, poll_interval: float = 1.0) -> None:
        self.server = server
        self.poll_interval = poll_interval
        with bmc_errors(server):
            # basic auth rather than a Redfish session: BMCs have few session slots,
            # and every operation makes a new client
            root = sushy.Sushy(
                server.base_url,
                auth=sushy_auth.BasicAuth(server.username, server.password.get_secret_value()),
                verify=server.verify_tls,
                read_timeout=request_timeout,
                connect_timeout=request_timeout,
                # one attempt per request: the engine retries with back-off, and
                # sushy's own retries would eat the hook's time
                server_side_retries=1,
                server_side_retries_delay=1,
            )
            self.system = root.get_system(server.system_path)

    def power_state(self) -> sushy.PowerState | None:
        with bmc_errors(self.server):
            self.system.refresh(force=True)
            return self.system.power_state

    def boot_from_network_once(self) -> None:
        with bmc_errors(self.server):
            self.system.set_system_boot_options(
                target=sushy.BootSource.PXE, enabled=sushy.BootSourceOverrideEnabled.ONCE
            )

    def reset(self, reset_type: sushy.ResetType) -> None:
        log.info("server %s: %s", self.server.label, reset_type.value)
        with bmc_errors(self.server):
            self.system.reset_system(reset_type)

    def wait_for(self, wanted: sushy.PowerState, deadline: float) -> sushy.PowerState | None:
        """Poll until the BMC reports ``wanted`` or ``deadline`` seconds pass; return
        the last state seen."""
        until = time.monotonic() + deadline
        while True:
            state = self.power_state()
            if state == wanted or time.monotonic() >= until:
                return state
            time.sleep(min(self.poll_interval, max(0.0, until - time.monotonic())))


def state_name(state: sushy.PowerState | None) -> str:
    return state.value if state is not None else "unknown"
