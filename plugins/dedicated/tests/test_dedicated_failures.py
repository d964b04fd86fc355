"""What goes wrong with pools and BMCs, and what staff then see."""

from __future__ import annotations

import socket
import threading

import pytest

from fulfil import ModuleError
from fulfil_dedicated import DedicatedServers, DedicatedSettings


def test_rejected_bmc_credentials_make_a_setup_task_at_once(dedicated, redfish):
    [server] = redfish.take(1)
    server["password"] = "not-the-password"
    h = dedicated([server])
    sid = h.order()

    h.run()

    [task] = h.tasks(sid)
    assert task["type"] == "setup" and task["retryable"]
    assert "rejected the credentials (HTTP 401)" in task["error"]
    assert server["label"] in task["error"]
    assert [op["attempts"] for op in h.operations(sid)] == [1]  # permanent: no retries
    assert redfish.power_state(server["system_id"]) == "Off"


def test_bmc_stopped_mid_run_retries_then_task_and_a_retry_after_restart_finishes(dedicated, own_redfish, wait_until):
    """The BMC dies while open waits for the server to come on (power changes take
    3 s here); the retries fail, a setup task says why; once the BMC is back, Retry
    finishes the open on the same server with the same root password."""
    [server] = own_redfish.take(1)
    system = server["system_id"]
    h = dedicated([server])
    sid = h.order()

    def stop_once_powering_on():
        wait_until(lambda: "On" in own_redfish.requested_resets(system), timeout=30, what="the power-on request")
        own_redfish.stop()

    stopper = threading.Thread(target=stop_once_powering_on)
    stopper.start()
    h.run()
    stopper.join()

    [task] = h.tasks(sid)
    assert task["type"] == "setup" and task["retryable"]
    assert "is unreachable" in task["error"] and "gave up after 5 attempts" in task["error"]
    assert [e["event"] for e in h.history(sid)].count("operation.retry") == 4
    password = h.service(sid)["params"]["root_password"]

    own_redfish.start()
    h.retry_task(task["id"])
    h.run()

    assert own_redfish.power_state(system) == "On"
    assert own_redfish.boot_target(system) == "Pxe"
    assert "ForceRestart" not in own_redfish.requested_resets(system)  # never rebooted under the installer
    [task] = h.tasks(sid)
    assert task["error"] is None
    assert task["main_settings"]["root_password"] == password
    h.close_task(task["id"])
    assert h.service(sid)["status"] == "active"
    assert h.service(sid)["params"]["root_password"] == password


def test_check_connection_names_each_bmc_that_is_not_usable(redfish):
    good, wrong_password, unknown_system = redfish.take(3)
    wrong_password["password"] = "guess"
    unknown_system["system_id"] = "no-such-system"
    unreachable = dict(good, label="rack9-u1", redfish_url=redfish.unreachable_url(), ip_address="192.0.2.91")
    with socket.socket() as hung_bmc:  # accepts connections, never answers
        hung_bmc.bind(("127.0.0.1", 0))
        hung_bmc.listen(8)
        hung = dict(good, label="rack9-u2", redfish_url=f"http://127.0.0.1:{hung_bmc.getsockname()[1]}", ip_address="192.0.2.92")
        settings = DedicatedSettings.model_validate(
            {"servers": [good, wrong_password, unknown_system, unreachable, hung], "request_timeout": 1}
        )
        with pytest.raises(ModuleError) as failure:
            DedicatedServers().fulfil_check_connection(settings=settings)

    lines = failure.value.message.splitlines()
    assert lines[0] == "4 of 5 BMCs are not usable:"
    reasons = dict(line.strip().split(": ", 1) for line in lines[1:])
    assert set(reasons) == {wrong_password["label"], unknown_system["label"], "rack9-u1", "rack9-u2"}
    assert "rejected the credentials (HTTP 401)" in reasons[wrong_password["label"]]
    assert "has no system 'no-such-system'" in reasons[unknown_system["label"]]
    assert reasons["rack9-u1"].endswith("is unreachable")
    assert reasons["rack9-u2"].endswith("timed out")
    assert redfish.password not in failure.value.message and "guess" not in failure.value.message

    ok = DedicatedServers().fulfil_check_connection(settings=DedicatedSettings.model_validate({"servers": [good]}))
    assert ok == f"all 1 BMCs reachable: {good['label']} (Off)"


def test_settings_are_validated_and_reject_unknown_fields(dedicated, redfish):
    [server] = redfish.take(1)
    with pytest.raises(Exception, match=r"settings\.colour: unknown field"):
        dedicated([server], colour="red")
    with pytest.raises(Exception, match="unknown field"):
        dedicated([dict(server, rack="3")])
    with pytest.raises(Exception, match="two servers of the pool have the same"):
        dedicated([server, dict(server, label="another")])
    with pytest.raises(Exception, match="power_deadline"):
        dedicated([server], power_deadline=0)


def test_setup_task_says_what_to_install_once_a_retry_reaches_the_bmc(dedicated, own_redfish):
    [server] = own_redfish.take(1)
    h = dedicated([server])
    sid = h.order()
    own_redfish.stop()
    h.run()
    [task] = h.tasks(sid)
    assert "is unreachable" in task["error"]

    own_redfish.start()
    h.retry_task(task["id"])
    h.run()

    [task] = h.tasks(sid)
    assert task["error"] is None
    assert task["description"].startswith(f"Install Debian 12 on dedicated server {server['label']}")
