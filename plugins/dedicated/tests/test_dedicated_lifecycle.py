"""A dedicated server's life through the real engine, against the Redfish emulator."""

from __future__ import annotations

import logging


def _setup_task(h, sid):
    [task] = [t for t in h.tasks(sid) if t["type"] == "setup"]
    return task


def test_open_powers_server_on_for_pxe_install_with_real_bmc_delays(dedicated, redfish_real_delays, caplog):
    """The emulator's real 1–11 s power delay: open waits until the BMC reports On."""
    caplog.set_level(logging.DEBUG)
    [server] = redfish_real_delays.take(1)
    h = dedicated([server])
    sid = h.order(params={"hostname": "web1.client.example"})

    h.run()

    system = server["system_id"]
    assert redfish_real_delays.power_state(system) == "On"
    assert redfish_real_delays.boot_target(system) == "Pxe"
    task = _setup_task(h, sid)
    assert task["status"] == "new" and task["error"] is None
    assert f"Install Debian 12 on dedicated server {server['label']}" in task["description"]
    assert "host name: web1.client.example" in task["description"]
    assert f"IP address: {server['ip_address']}" in task["description"]
    password = task["main_settings"]["root_password"]
    assert len(password) >= 16
    assert task["main_settings"]["ip_address"] == server["ip_address"]
    assert task["main_settings"]["hostname"] == "web1.client.example"
    # the generated root password and the BMC password appear nowhere but main settings
    seen = [task["description"], *(f"{e['message']} {e['detail']}" for e in h.history(sid))]
    seen += [record.getMessage() for record in caplog.records]
    for secret in (password, server["password"]):
        assert not any(secret in text for text in seen)

    h.close_task(task["id"])
    service = h.service(sid)
    assert service["status"] == "active"
    assert service["params"]["root_password"] == password
    assert service["params"]["ip_address"] == server["ip_address"]


def test_service_is_suspended_gracefully_resumed_and_closed_for_a_wipe(dedicated, redfish):
    [server] = redfish.take(1)
    system = server["system_id"]
    h = dedicated([server])
    sid = h.order()
    h.run()
    task = _setup_task(h, sid)
    assert task["main_settings"]["hostname"] == f"srv{sid}.dedicated.example.net"
    h.close_task(task["id"])
    assert redfish.power_state(system) == "On"

    h.suspend(sid)
    h.run()
    assert h.service(sid)["status"] == "suspended"
    assert redfish.power_state(system) == "Off"
    assert redfish.requested_resets(system)[-1] == "GracefulShutdown"
    assert f"server {server['label']} shut down gracefully" in [e["message"] for e in h.history(sid)]

    h.resume(sid)
    h.run()
    assert h.service(sid)["status"] == "active"
    assert redfish.power_state(system) == "On"

    h.delete(sid)
    h.run()
    assert redfish.power_state(system) == "Off"
    assert redfish.requested_resets(system)[-1] == "ForceOff"
    [delete_task] = [t for t in h.tasks(sid) if t["type"] == "delete"]
    assert f"Wipe dedicated server {server['label']}" in delete_task["description"]
    assert "needs wipe" in delete_task["description"]
    h.close_task(delete_task["id"])
    assert h.service(sid)["status"] == "deleted"

    # the server waits for its wipe: the next order finds the pool exhausted
    next_sid = h.order()
    h.run()
    [exhausted] = h.tasks(next_sid)
    assert exhausted["type"] == "setup"
    assert exhausted["error"].startswith("pool exhausted")
    assert redfish.power_state(system) == "Off"


def test_suspend_forces_off_a_server_that_ignores_graceful_shutdown(dedicated, redfish):
    [server] = redfish.take(1, quirky=True)
    system = server["system_id"]
    h = dedicated([server], power_deadline=2)
    sid = h.order()
    h.run()
    h.close_task(_setup_task(h, sid)["id"])

    h.suspend(sid)
    h.run()

    assert h.service(sid)["status"] == "suspended"
    assert redfish.power_state(system) == "Off"
    assert redfish.requested_resets(system)[-2:] == ["GracefulShutdown", "ForceOff"]
    assert (
        f"server {server['label']} forced off: the graceful shutdown did not finish within 2 s"
        in [e["message"] for e in h.history(sid)]
    )


def test_a_server_left_on_reboots_into_the_installer(dedicated, redfish):
    [server] = redfish.take(1)
    system = server["system_id"]
    redfish.reset(system, "On")
    redfish.wait_for_power(system, "On")
    h = dedicated([server])
    sid = h.order()

    h.run()

    assert redfish.requested_resets(system)[-1] == "ForceRestart"
    assert redfish.power_state(system) == "On"
    assert redfish.boot_target(system) == "Pxe"
    assert _setup_task(h, sid)["error"] is None


def test_hostname_change_is_done_at_once(dedicated, redfish):
    h = dedicated(redfish.take(1))
    sid = h.order()
    h.run()
    h.close_task(_setup_task(h, sid)["id"])

    h.edit(sid, params={"hostname": "db2.client.example"})
    h.run()

    assert h.service(sid)["params"]["hostname"] == "db2.client.example"
    assert [t["type"] for t in h.tasks(sid)] == ["setup"]
    assert "host name changed to db2.client.example" in [e["message"] for e in h.history(sid)]


def test_addon_changes_become_a_change_task_describing_the_difference(dedicated, redfish):
    [server] = redfish.take(1)
    h = dedicated([server])
    sid = h.order(addons={"ram_gb": 32, "extra_ips": 0})
    h.run()
    h.close_task(_setup_task(h, sid)["id"])

    h.edit(sid, addons={"ram_gb": 128, "extra_ips": 2}, params={"hostname": "big.client.example"})
    h.run()

    [change] = [t for t in h.tasks(sid) if t["type"] == "change"]
    assert f"Change the hardware of dedicated server {server['label']}" in change["description"]
    assert "RAM: 32 → 128 GB" in change["description"]
    assert "Extra IP addresses: 0 → 2 IPs" in change["description"]
    assert "Disk" not in change["description"].split("Also recorded")[0]
    assert h.service(sid)["addons"]["ram_gb"] == 32  # until staff close the task

    h.close_task(change["id"])
    service = h.service(sid)
    assert service["addons"]["ram_gb"] == 128 and service["addons"]["extra_ips"] == 2
    assert service["params"]["hostname"] == "big.client.example"
